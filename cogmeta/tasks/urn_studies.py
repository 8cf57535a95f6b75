"""The classic book-bag-and-poker-chip studies of the sample-size experiment (Dasgupta et al. 2020).

Benjamin (2019) pooled the classic urn studies of belief updating; Dasgupta, Schulz, Tenenbaum &
Gershman (2020) simulated them with their learning-to-infer model (``run_Benj.py`` of
ishita-dg/LearningToInfer). Each simulated participant is assigned one study; its training set is

    100 noise queries  (p on {.001, ..., .999}, l on :data:`NOISE_LIKELIHOODS`, k uniform on 1..min(10, maxN)
                        balls standing for N = k maxN / min(10, maxN) draws: :meth:`ClassicStudy.sample_noise`)
  + 100 study queries  (the study's designs, shown with prior p = .5),

repeated for 50 epochs in that fixed order (plain SGD, one query per step, lr .01), and it is tested on
its 100 study queries. The ``weight`` feature N / maxN is normalised by the study's largest sample, so a
single-draw study shows weight 1 and PSM65's N = 48 shows weight 1 too.

The designs below are taken from the paper's code (``generative.py``, ``data_gen_Benj``), converted to
cogmeta's convention (l = P(heads | B), the hypothesis with prior p; positive n favours B when l > .5):

==========  =======================================  ============================  =============  =====
study       reference                                p (generation)                l              N
==========  =======================================  ============================  =============  =====
PM65        Peterson & Miller (1965)                 .1, .2, ..., .9               .167 ... .833  1
PSM65       Peterson, Schneider & Miller (1965)      .5                            .4             1, 4, 12, 48
GT92        Griffin & Tversky (1992)                 .5                            .6             12 fixed (heads, N), N <= 33
BH80        Bar-Hillel (1980)                        .15, .85                      .8             1 (always heads)
DD74        Donnell & Du Charme (1974)               .5                            .55, .88       4 or 2, unanimous
BWB70       Beach, Wise & Barclay (1970)             .5                            .3, .2         4 ... 10
GHR65       Green, Halbert & Robinson (1965)         .5                            .4, .2         1, 3, 6, 9
Gr92        Grether (1992)                           .5, .66                       .4286          6
HS09        Holt & Smith (2009)                      .5, .66                       .34            1 ... 4
KW04        Kraemer & Weber (2004)                   .5                            .4286 .5 .5357  1
MC72        Marks & Clarkson (1972)                  .5                            .6             10, n = +-2 ... +-8
Ne01        Nelson et al. (2001)                     .5                            .4             17 or 3, fixed n
SK07        Sasaki & Kawagoe (2007)                  .5                            .4             1 ... 4
==========  =======================================  ============================  =============  =====

Where cogmeta departs from the paper's code (each on purpose, each small):

- Queries are drawn from the generative process as stated (the paper's ``data_gen`` draws the balls of
  the prior-p urn with the *other* urn's likelihood; at p = .5, where every test query sits, the two
  agree in distribution).
- The paper's code shows a noise query's k balls with weight k / max k but computes its target from
  weight x maxN draws: for a study with maxN > 10 a noise query stands for N = k maxN / 10 draws (4.8 k
  for PSM65). cogmeta keeps that encoding and states it (``sample_noise``): the noise then spans the
  study's whole range of N. Measured: it is what produces the paper's fall of alpha_L with N (with
  noise of k plain draws, alpha_L is nearly flat from N = 2 to 48; docs/tasks/learning-to-infer.md).
- HS09's N = 0 designs are left out (they carry no likelihood information and no weight in alpha_L).
- Noise likelihoods stop at .1 / .9 (``cogmeta.tasks.urn.NOISE_LIKELIHOODS``): with l near 0 or 1 the
  exact log-odds reach hundreds and single-query SGD at lr .01 diverges for more participants (measured:
  the paper's full grid makes alpha_L at N = 1 rise to 1.2 and the overall alpha_L to 0.8-1.0).
- GT92, DD74, MC72 and Ne01 use the design rows the paper's code draws from (for GT92 only the twelve
  rows favouring B: the mirrored rows it builds are never selected).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cogmeta._validation import require_int
from cogmeta.tasks.urn import (
    NOISE_BLOCKS,
    NOISE_LIKELIHOODS,
    NOISE_PRIORS,
    QUERY_FEATURES,
    UrnQueries,
    UrnQueryDistribution,
    concatenate,
    logit,
)

#: The prior every study query is shown with (training and test).
STUDY_PRIOR = 0.5


def summary_queries(prior, likelihood, heads, draws, max_draws: int) -> UrnQueries:
    """Encode queries as summaries: ``[-1, 1 - l, l, p, n / N, N / max_draws]``, exact log-odds (float64).

    Args:
        prior, likelihood, heads, draws: ``[Q]`` arrays (heads and draws integer-valued, 1 <= draws <= max_draws).
    """
    p, l = np.asarray(prior, np.float64), np.asarray(likelihood, np.float64)
    heads, draws = np.asarray(heads, np.float64), np.asarray(draws, np.float64)
    if np.any(draws < 1) or np.any(draws > max_draws) or np.any(heads < 0) or np.any(heads > draws):
        raise ValueError(f"summary queries need 0 <= heads <= N and 1 <= N <= max_draws = {max_draws}")
    n = 2 * heads - draws
    inputs = np.stack([-np.ones_like(p), 1 - l, l, p, n / draws, draws / max_draws], axis=-1)
    return UrnQueries(inputs, logit(p) + n * logit(l), p, l, heads, draws)


def with_prior(queries: UrnQueries, prior: float) -> UrnQueries:
    """The same data shown with another prior p: the prior feature and the exact log-odds change."""
    p = np.full_like(np.asarray(queries.prior, np.float64), prior)
    inputs = np.array(queries.inputs, np.float64, copy=True)
    inputs[:, 3] = p
    n = 2 * np.asarray(queries.heads, np.float64) - np.asarray(queries.draws, np.float64)
    return UrnQueries(inputs, logit(p) + n * logit(queries.likelihood), p, np.asarray(queries.likelihood),
                      np.asarray(queries.heads), np.asarray(queries.draws))


@dataclass(frozen=True)
class ClassicStudy:
    """One classic study: either sampled designs (``priors`` x ``likelihoods`` x ``sizes``, heads drawn
    from the generative process) or fixed designs (``designs`` rows ``(p, l, heads, N)`` drawn uniformly).

    Attributes:
        key: short name used in tables ("PSM65").
        reference: authors and year.
        max_draws: the study's largest N (normaliser of the weight feature).
    """

    key: str
    reference: str
    max_draws: int
    priors: tuple[float, ...] = ()
    likelihoods: tuple[float, ...] = ()
    sizes: tuple[int, ...] = ()
    designs: tuple[tuple[float, float, float, int], ...] = ()

    def __post_init__(self) -> None:
        require_int(f"ClassicStudy {self.key}", "max_draws", self.max_draws, 1, 10_000)
        if bool(self.designs) == bool(self.priors):
            raise ValueError(f"ClassicStudy {self.key} needs either designs or priors/likelihoods/sizes, not both")
        if self.priors:  # validates probabilities and sizes
            self.distribution
        for p, l, heads, n in self.designs:
            summary_queries([p], [l], [heads], [n], self.max_draws)

    @property
    def distribution(self) -> UrnQueryDistribution:
        """The sampled designs as a query distribution (summary encoding, weight N / max_draws)."""
        return UrnQueryDistribution(self.priors, self.likelihoods, self.sizes, self.max_draws, self.key, summary_only=True)

    @property
    def noise_sizes(self) -> int:
        """K = min(10, max_draws): noise queries draw k ~ U{1..K} balls."""
        return min(10, self.max_draws)

    def sample_noise(self, rng: np.random.Generator, count: int, swapped_draws: bool = False) -> UrnQueries:
        """``count`` noise queries of a participant assigned to this study (float64).

        k ~ U{1..K} balls are drawn (K = :attr:`noise_sizes`; p and l on the grids of
        ``cogmeta.tasks.urn.NOISE_BLOCKS``) and the query stands for N = k maxN / K draws with the same strength
        n / N = (heads - tails) / k: weight k / K, exact log-odds logit(p) + (k maxN / K)(n / N) logit(l).
        So the noise spans the study's range of sample sizes (N = 4.8, 9.6, ..., 48 for PSM65); for
        maxN <= 10 it is plain k-ball queries. This is the encoding of the paper's code (noise weight
        k / max k, targets from weight x maxN); it is what makes the simulated conservatism grow with N.
        ``swapped_draws``: draw the balls as the paper's code does (see ``UrnQueryDistribution``).
        """
        k_max = self.noise_sizes
        base = dataclasses.replace(NOISE_BLOCKS, sizes=tuple(range(1, k_max + 1)), max_draws=k_max,
                                   name=f"noise-{self.key}", swapped_draws=swapped_draws).sample(rng, count)
        scale = self.max_draws / k_max
        draws, heads = np.asarray(base.draws) * scale, np.asarray(base.heads) * scale
        n = 2 * heads - draws
        return UrnQueries(base.inputs, logit(base.prior) + n * logit(base.likelihood), base.prior, base.likelihood,
                          heads, draws)

    def sample(self, rng: np.random.Generator, count: int, swapped_draws: bool = False) -> UrnQueries:
        """``count`` study queries (float64), shown with prior :data:`STUDY_PRIOR`.

        ``swapped_draws`` changes how sampled designs draw their balls (fixed designs have no draws to swap).
        """
        count = require_int(f"ClassicStudy {self.key}", "count", count, 1)
        if self.priors:
            queries = dataclasses.replace(self.distribution, swapped_draws=swapped_draws).sample(rng, count)
        else:
            rows = np.asarray(self.designs, np.float64)[rng.integers(0, len(self.designs), count)]
            queries = summary_queries(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], self.max_draws)
        return with_prior(queries, STUDY_PRIOR)


def _counts(rows: Sequence[tuple[int, int]], likelihood: float) -> tuple[tuple[float, float, float, int], ...]:
    """Design rows ``(0.5, l, heads, N)`` from ``(heads, N)`` pairs."""
    return tuple((STUDY_PRIOR, likelihood, heads, n) for heads, n in rows)


def _signed(strengths_and_sizes: Sequence[tuple[int, int]], likelihood: float) -> tuple[tuple[float, float, float, int], ...]:
    """Design rows from ``(n, N)`` pairs, n = heads - tails.

    MC72's odd n at N = 10 give half-integer heads: the paper's code specifies n / N directly and its
    targets use n, so the design is kept as an evidence strength rather than a ball count.
    """
    return tuple((STUDY_PRIOR, likelihood, (size + n) / 2, size) for n, size in strengths_and_sizes)


_PM_RATIOS = ((3, 2), (4, 2), (5, 2), (5, 1))  # ball counts of the two colours (Peterson & Miller 1965)
_PM_LIKELIHOODS = tuple(sorted({round(a / (a + b), 10) for a, b in _PM_RATIOS} | {round(b / (a + b), 10) for a, b in _PM_RATIOS}))
_KW_LIKELIHOODS = tuple(round(1 - x / (x + 0.6), 10) for x in (0.80, 0.60, 0.52))  # 1 - L1 of the paper's code

#: The thirteen studies, in the paper's order (participant s is assigned ``STUDIES[s % 13]``).
STUDIES: tuple[ClassicStudy, ...] = (
    ClassicStudy("PM65", "Peterson & Miller (1965)", 1, priors=tuple(k / 10 for k in range(1, 10)),
                 likelihoods=_PM_LIKELIHOODS, sizes=(1,)),
    ClassicStudy("PSM65", "Peterson, Schneider & Miller (1965)", 48, priors=(0.5,), likelihoods=(0.4,), sizes=(1, 4, 12, 48)),
    ClassicStudy("GT92", "Griffin & Tversky (1992)", 33, designs=_counts(
        ((2, 3), (3, 3), (3, 5), (4, 5), (5, 5), (5, 9), (6, 9), (7, 9), (9, 17), (10, 17), (11, 17), (19, 33)), 0.6)),
    ClassicStudy("BH80", "Bar-Hillel (1980)", 1, designs=((0.15, 0.8, 1, 1), (0.85, 0.8, 1, 1))),
    ClassicStudy("DD74", "Donnell & Du Charme (1974)", 4, designs=_signed(((-4, 4), (4, 4)), 0.55) + _signed(((-2, 2), (2, 2)), 0.88)),
    ClassicStudy("BWB70", "Beach, Wise & Barclay (1970)", 10, priors=(0.5,), likelihoods=(0.3, 0.2), sizes=tuple(range(4, 11))),
    ClassicStudy("GHR65", "Green, Halbert & Robinson (1965)", 9, priors=(0.5,), likelihoods=(0.4, 0.2), sizes=(1, 3, 6, 9)),
    ClassicStudy("Gr92", "Grether (1992)", 6, priors=(0.5, 0.66), likelihoods=(1 - 0.5714286,), sizes=(6,)),
    ClassicStudy("HS09", "Holt & Smith (2009)", 4, priors=(0.5, 0.66), likelihoods=(0.34,), sizes=(1, 2, 3, 4)),
    ClassicStudy("KW04", "Kraemer & Weber (2004)", 1, priors=(0.5,), likelihoods=_KW_LIKELIHOODS, sizes=(1,)),
    ClassicStudy("MC72", "Marks & Clarkson (1972)", 10, designs=_signed(tuple((s * n, 10) for n in range(2, 9) for s in (1, -1)), 0.6)),
    ClassicStudy("Ne01", "Nelson et al. (2001)", 17, designs=_signed(
        tuple((s * n, size) for n, size in ((5, 17), (3, 17), (1, 17), (3, 3), (1, 3)) for s in (1, -1)), 0.4)),
    ClassicStudy("SK07", "Sasaki & Kawagoe (2007)", 4, priors=(0.5,), likelihoods=(0.4,), sizes=(1, 2, 3, 4)),
)
STUDY_KEYS = tuple(study.key for study in STUDIES)


def study_of(participant: int) -> ClassicStudy:
    """The study participant ``participant`` is assigned (round robin over :data:`STUDIES`)."""
    return STUDIES[int(participant) % len(STUDIES)]


def participant_queries(participant: int, seed: int, noise_queries: int = 100,
                        study_queries: int = 100, swapped_draws: bool = False) -> tuple[UrnQueries, UrnQueries]:
    """One participant's (training block, test queries), numpy float64.

    The training block is ``noise_queries`` noise queries then the ``study_queries`` test queries (the
    paper trains on its test queries); an experiment repeats the block once per epoch. ``swapped_draws``:
    the balls are drawn as in the paper's code (``UrnQueryDistribution.swapped_draws``).
    """
    study = study_of(participant)
    rng = np.random.default_rng([int(seed), int(participant)])
    noise = study.sample_noise(rng, noise_queries, swapped_draws)
    test = study.sample(rng, study_queries, swapped_draws)
    return concatenate([noise, test]), test


__all__ = ["ClassicStudy", "NOISE_LIKELIHOODS", "NOISE_PRIORS", "QUERY_FEATURES", "STUDIES", "STUDY_KEYS", "STUDY_PRIOR",
           "participant_queries", "study_of", "summary_queries", "with_prior"]
