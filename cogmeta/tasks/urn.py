"""Two-urn inference queries (Dasgupta, Schulz, Tenenbaum & Gershman 2020, "A theory of learning to infer").

Generative process of one query. There are two urns (hypotheses), A (index 0) and B (index 1):

    h ~ Bernoulli(p)                      prior P(h = B) = p
    x_1..x_N | h  iid Bernoulli(theta_h)  theta_B = l,  theta_A = 1 - l   ("heads" = a ball of colour 1)

The likelihoods are symmetric: a heads draw has probability l under B and 1 - l under A. The data are
summarised as ``heads`` and ``N``; with ``n = heads - tails = 2 heads - N``:

    log p(B, d) = log p       + heads log l       + tails log(1 - l)
    log p(A, d) = log(1 - p)  + heads log(1 - l)  + tails log l

    posterior log-odds  L = log p(B | d) - log p(A | d) = logit(p) + (heads - tails) logit(l)
                          = logit(p) + n logit(l),            logit(x) = log(x / (1 - x)).

Only |n| draws of the majority colour matter (the rest cancel in pairs), which is the form quoted in the
paper's code: log p(h, d) = log prior_h + |n| log(l_h or 1 - l_h) up to a term shared by both hypotheses.
``prior log-odds`` = logit(p) and ``likelihood log-odds`` (the log likelihood ratio, LLR) = n logit(l):
a Bayesian puts weight 1 on each; the regressions of the experiments estimate those weights.

The paper's code draws the balls of the urn it picks with the *other* urn's heads-probability; with
``swapped_draws=True`` a distribution does the same (the queries' log-odds stay the exact posterior of the
process above; only how often each query occurs changes).

Sign convention: positive log-odds favour urn B, the urn with prior p and heads-probability l; a heads
draw (``draw = 1``) is evidence for B iff l > 1/2.

The model sees a 6-vector per query (the paper's layout):

    [draw, lik1, lik2, prior, strength, weight]
    draw     = the single draw (0 or 1) if N = 1, else -1 (only the summary is shown)
    lik1     = P(heads | A) = 1 - l,   lik2 = P(heads | B) = l,   prior = p = P(B)
    strength = (heads - tails) / N in [-1, 1],   weight = N / max_draws in (0, 1]

Sampling is split into base noise and a deterministic transform, as for the sequence tasks
(``cogmeta.tasks.base``). Every query distribution here is one :class:`UrnQueryDistribution`: p, l and N
are drawn uniformly from finite lists (repeat an entry to weight it), then h and the draws from the
generative process. Noise per query: uniforms ``prior``, ``likelihood``, ``size``, ``hypothesis`` ``[B]``
and ``draws`` ``[max_draws, B]``; a list entry is picked as ``min(floor(u K), K - 1)``. All quantities
of the transform are small integers or table look-ups except the log-odds, so the torch and JAX
transforms reproduce the numpy one bit for bit (the log-odds ``lp + n ll`` is one multiply-add; under
``jax.jit`` XLA may fuse it, a difference of at most one rounding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from cogmeta._validation import require_int
from cogmeta.tasks.base import NoiseSpec

#: Width of the query vector.
QUERY_FEATURES = 6
#: Column names of the query vector, in order.
FEATURE_NAMES = ("draw", "lik1", "lik2", "prior", "strength", "weight")


def logit(x) -> np.ndarray:
    """log(x / (1 - x)), float64, for x in (0, 1)."""
    x = np.asarray(x, dtype=np.float64)
    return np.log(x) - np.log1p(-x)


def posterior_log_odds(prior, likelihood, heads_minus_tails) -> np.ndarray:
    """Exact log p(B | d) - log p(A | d) = logit(p) + n logit(l), float64, broadcast over the inputs."""
    return logit(prior) + np.asarray(heads_minus_tails, dtype=np.float64) * logit(likelihood)


def log_joint(prior, likelihood, heads, draws) -> np.ndarray:
    """Unnormalised log p(h, d) for h = (A, B) from the generative process, ``[..., 2]`` float64.

    Independent of :func:`posterior_log_odds` (it is the definition), so tests can check one against the other.
    """
    p, l = np.asarray(prior, np.float64), np.asarray(likelihood, np.float64)
    heads = np.asarray(heads, np.float64)
    tails = np.asarray(draws, np.float64) - heads
    log_a = np.log1p(-p) + heads * np.log1p(-l) + tails * np.log(l)
    log_b = np.log(p) + heads * np.log(l) + tails * np.log1p(-l)
    return np.stack(np.broadcast_arrays(log_a, log_b), axis=-1)


class UrnQueries(NamedTuple):
    """A batch of B queries (arrays of the sampler's framework; ``[S, B, ...]`` when stacked over seeds).

    Attributes:
        inputs: ``[B, 6]`` model inputs ``[draw, lik1, lik2, prior, strength, weight]``.
        log_odds: ``[B]`` exact posterior log-odds of B, logit(p) + n logit(l).
        prior: ``[B]`` p = P(B).
        likelihood: ``[B]`` l = P(heads | B).
        heads: ``[B]`` number of heads (float, integer-valued).
        draws: ``[B]`` N (float, integer-valued).
    """

    inputs: object
    log_odds: object
    prior: object
    likelihood: object
    heads: object
    draws: object


def prior_log_odds(queries: UrnQueries) -> np.ndarray:
    """logit(p) per query, float64 (regressor of the experiments)."""
    return logit(np.asarray(queries.prior))


def likelihood_log_odds(queries: UrnQueries) -> np.ndarray:
    """n logit(l) per query (the log likelihood ratio), float64."""
    heads, draws = np.asarray(queries.heads, np.float64), np.asarray(queries.draws, np.float64)
    return (2 * heads - draws) * logit(np.asarray(queries.likelihood))


def _probabilities(owner: str, field: str, values: Sequence[float]) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"{owner}.{field} must be a non-empty sequence of probabilities, got {values!r}")
    result = []
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not np.isfinite(value):
            raise ValueError(f"{owner}.{field}[{i}] must be a real number in (0, 1), got {value!r}")
        if not 0.0 < float(value) < 1.0:
            raise ValueError(f"{owner}.{field}[{i}] must lie in (0, 1) (open interval), got {value!r}")
        result.append(float(value))
    return tuple(result)


@dataclass(frozen=True)
class UrnQueryDistribution:
    """A distribution of two-urn queries: p, l, N uniform over lists, then h and the draws.

    Attributes:
        priors: values of p = P(B), each in (0, 1); drawn uniformly (repeats weight an entry).
        likelihoods: values of l = P(heads | B), each in (0, 1); drawn uniformly.
        sizes: values of N (draws per query), each an integer in [1, max_draws]; drawn uniformly.
        max_draws: normaliser of the ``weight`` feature and width of the ``draws`` noise, >= max(sizes).
        name: a label for tables and figures.
        summary_only: encode every query as a summary (draw = -1, strength = n / N), as the paper's
            sample-size studies do; otherwise a single draw is shown as the draw itself with strength 0
            (the paper's EU encoding), and larger samples as summaries.
        swapped_draws: draw the balls with the *other* urn's heads-probability (theta_B = 1 - l,
            theta_A = l), as the paper's code does (``Urn.data_gen`` in ``generative.py`` picks urn B with
            probability p but draws its balls with the likelihood its rational model assigns to A). The
            query shown and its exact log-odds keep the convention above; only how often each query
            occurs changes: the draws tend to favour the urn the prior disfavours.
    """

    priors: tuple[float, ...]
    likelihoods: tuple[float, ...]
    sizes: tuple[int, ...] = (1,)
    max_draws: int = 1
    name: str = "urn"
    summary_only: bool = False
    swapped_draws: bool = False

    def __post_init__(self) -> None:
        owner = type(self).__name__
        object.__setattr__(self, "priors", _probabilities(owner, "priors", self.priors))
        object.__setattr__(self, "likelihoods", _probabilities(owner, "likelihoods", self.likelihoods))
        object.__setattr__(self, "max_draws", require_int(owner, "max_draws", self.max_draws, 1, 10_000))
        for flag in ("summary_only", "swapped_draws"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{owner}.{flag} must be True or False, got {getattr(self, flag)!r}")
        if isinstance(self.sizes, (str, bytes)) or not isinstance(self.sizes, Sequence) or len(self.sizes) == 0:
            raise ValueError(f"{owner}.sizes must be a non-empty sequence of integers, got {self.sizes!r}")
        sizes = tuple(require_int(owner, f"sizes[{i}]", n, 1, self.max_draws) for i, n in enumerate(self.sizes))
        object.__setattr__(self, "sizes", sizes)

    # ------------------------------------------------------------------ sampling
    def noise_spec(self, batch_size: int) -> dict[str, NoiseSpec]:
        """Base noise: uniforms ``prior``, ``likelihood``, ``size``, ``hypothesis`` ``[B]``, ``draws`` ``[max_draws, B]``."""
        batch_size = require_int(type(self).__name__, "batch_size", batch_size, 1)
        noise = {name: NoiseSpec("uniform", (batch_size,)) for name in ("prior", "likelihood", "size", "hypothesis")}
        noise["draws"] = NoiseSpec("uniform", (self.max_draws, batch_size))
        return noise

    def tables(self, dtype) -> dict[str, np.ndarray]:
        """The look-up tables of the transform in ``dtype``: values and their log-odds (computed in float64)."""
        return {
            "prior": np.asarray(self.priors, np.float64).astype(dtype),
            "likelihood": np.asarray(self.likelihoods, np.float64).astype(dtype),
            "size": np.asarray(self.sizes, np.float64).astype(dtype),
            "weight": (np.asarray(self.sizes, np.float64) / self.max_draws).astype(dtype),
            "prior_log_odds": logit(self.priors).astype(dtype),
            "likelihood_log_odds": logit(self.likelihoods).astype(dtype),
        }

    def transform(self, noise: Mapping[str, np.ndarray]) -> UrnQueries:
        """Noise -> queries, in the dtype of the noise (see the module docstring for the formulas).

        Steps (the torch and JAX samplers repeat them operation for operation):
            i = min(floor(u K), K - 1) for p, l and N;   is_b = u_h < p;   theta = l if is_b else 1 - l
            (swapped: theta = 1 - l if is_b else l);
            heads = sum_k 1[u_k < theta] 1[k < N];   n = 2 heads - N;
            log_odds = logit(p) + n logit(l)   (logit values looked up from float64 tables);
            weight = N / max_draws is looked up too (XLA turns a division by a constant into a multiplication).
        """
        u_prior, u_lik, u_size = (np.asarray(noise[k]) for k in ("prior", "likelihood", "size"))
        u_hyp, u_draws = np.asarray(noise["hypothesis"]), np.asarray(noise["draws"])
        dtype = u_prior.dtype
        tables = self.tables(dtype)

        def pick(u, table):
            return np.minimum(np.floor(u * len(table)).astype(np.int64), len(table) - 1)

        i_prior, i_lik, i_size = pick(u_prior, self.priors), pick(u_lik, self.likelihoods), pick(u_size, self.sizes)
        prior, likelihood, size = tables["prior"][i_prior], tables["likelihood"][i_lik], tables["size"][i_size]
        is_b = u_hyp < prior
        theta = np.where(is_b != self.swapped_draws, likelihood, 1 - likelihood)
        position = np.arange(self.max_draws, dtype=dtype)[:, None]
        hits = (u_draws < theta[None, :]) & (position < size[None, :])
        heads = np.sum(hits.astype(dtype), axis=0)
        n = 2 * heads - size
        log_odds = tables["prior_log_odds"][i_prior] + n * tables["likelihood_log_odds"][i_lik]
        if self.summary_only:
            draw, strength = -np.ones_like(heads), n / size
        else:  # a single draw is shown as itself, with no summary (strength 0)
            shown = size == 1
            draw = np.where(shown, heads, -np.ones_like(heads))
            strength = np.where(shown, np.zeros_like(n), n / size)
        inputs = np.stack([draw, 1 - likelihood, likelihood, prior, strength, tables["weight"][i_size]], axis=-1)
        return UrnQueries(inputs, log_odds, prior, likelihood, heads, size)

    def sample(self, rng: np.random.Generator, batch_size: int, dtype=np.float64) -> UrnQueries:
        """Reference sampler: draw the base noise with ``rng`` and transform it."""
        from cogmeta.tasks.noise import draw_noise

        return self.transform(draw_noise(self.noise_spec(batch_size), rng, dtype))


def concatenate(parts: Sequence[UrnQueries]) -> UrnQueries:
    """Join numpy query batches along the query axis."""
    return UrnQueries(*(np.concatenate([np.asarray(getattr(q, f)) for q in parts], axis=0) for f in UrnQueries._fields))


def interleave(parts: Sequence[UrnQueries]) -> UrnQueries:
    """Training order of a mixture: query k comes from part k mod len(parts) (parts of equal length)."""
    lengths = {np.asarray(q.log_odds).shape[0] for q in parts}
    if len(lengths) != 1:
        raise ValueError(f"interleave needs parts of equal length, got lengths {sorted(lengths)}")
    return UrnQueries(*(np.stack([np.asarray(getattr(q, f)) for q in parts], axis=1).reshape(
        (-1,) + np.asarray(getattr(parts[0], f)).shape[1:]) for f in UrnQueries._fields))


# ---------------------------------------------------------------------- the paper's query distributions
_FLAT = (0.4, 0.5, 0.5, 0.6)
_STEEP = (0.1, 0.2, 0.2, 0.3, 0.7, 0.8, 0.8, 0.9)

#: EU, "informative data" training: weak priors, diagnostic single draws (-> base-rate neglect).
EU_ID = UrnQueryDistribution(priors=_FLAT, likelihoods=_STEEP, name="ID")
#: EU, "uninformative data" training: strong priors, weak single draws (-> conservatism).
EU_UD = UrnQueryDistribution(priors=_STEEP, likelihoods=_FLAT, name="UD")

#: Noise-query grids of the sample-size experiment: p on {.001, ..., .999} and l on {.100, ..., .900} (the
#: paper draws l from the whole grid; with l near 0 or 1 the exact log-odds reach +-70 and single-query
#: SGD at lr .01 diverges for some participants).
NOISE_PRIORS = tuple(k / 1000 for k in range(1, 1000))
NOISE_LIKELIHOODS = tuple(k / 1000 for k in range(100, 901))
#: Sample-size experiment, noise queries of k = 1..10 balls (weight k / 10). A participant whose study has
#: maxN > 10 reads them as N = k maxN / 10 draws: ``cogmeta.tasks.urn_studies.ClassicStudy.sample_noise``.
NOISE_BLOCKS = UrnQueryDistribution(priors=NOISE_PRIORS, likelihoods=NOISE_LIKELIHOODS, sizes=tuple(range(1, 11)),
                                    max_draws=10, name="noise", summary_only=True)
#: A study-style ladder (cogmeta's own, used by the sampler tests): p = .5, l in {.6, .7}, N from 1 to 48.
SIZE_LADDER = UrnQueryDistribution(priors=(0.5,), likelihoods=(0.6, 0.7),
                                   sizes=(1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 18, 20, 24, 30, 36, 42, 48),
                                   max_draws=48, name="ladder", summary_only=True)
