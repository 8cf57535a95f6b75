"""Learning to infer (Dasgupta, Schulz, Tenenbaum & Gershman 2020): base-rate neglect and conservatism.

A population of simulated participants (one :class:`AmortizedPosterior` per seed, trained by plain
SGD on its own stream of queries) answers two-urn test queries; the analyses regress its posterior
log-odds on the two sources of evidence.

**EU experiment.** Single draws. ID training (weak priors {.4, .5, .5, .6}, diagnostic likelihoods
{.1, .2, .2, .3, .7, .8, .8, .9}) or UD training (the lists swapped); test on 200 UD-type + 200
ID-type queries. Per participant, least squares

    model log-odds = b_prior * logit(p) + b_lik * n logit(l) + b_0        (Bayes: b_prior = b_lik = 1)

Coefficients are averaged over participants. The paper: ID-trained b_prior -0.004, b_lik 0.628
(base-rate neglect); UD-trained b_prior 0.797, b_lik -0.008 (conservatism).

**Sample-size experiment.** Training alternates noise blocks (p on {.001, ..., .999}, l on
{.100, ..., .900}, N uniform on 1..10) with classic-style queries (p = .5, l in {.6, .7}, N on a ladder
1..48: ``cogmeta.tasks.urn.SIZE_LADDER``); test on ladder queries at p = .5. alpha_L is the slope
without intercept of model log-odds on the true log likelihood ratio, per participant, per N bin;
the table reports the median over participants (a diverging participant cannot dominate it). The
paper (hidden 1): N=1 0.96, 2-4 0.84, 5-10 0.64, 11-20 0.58, 21-48 0.14, overall 0.59; hidden 8
overall 0.77.

Backends are imported only when an experiment runs (``torch_impl.amortized_training`` or
``jax_impl.amortized_training``, same function names).
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from cogmeta._validation import require_int, require_positive
from cogmeta.tasks.urn import (EU_ID, EU_UD, NOISE_BLOCKS, SIZE_LADDER, UrnQueries, concatenate, likelihood_log_odds,
                               prior_log_odds)

EXPERIMENTS = ("eu", "sample-size")
BACKENDS = ("torch", "jax")

#: The paper's EU coefficients (repo JSONs, 20 simulated participants x 400 queries, hidden 1).
PAPER_EU = {"ID": {"b_prior": -0.004, "b_lik": 0.628}, "UD": {"b_prior": 0.797, "b_lik": -0.008}}
#: Sample-size bins (inclusive N ranges) and the paper's alpha_L (hidden 1; hidden 8 overall only).
SIZE_BINS = ((1, 1), (2, 4), (5, 10), (11, 20), (21, 48))
BIN_LABELS = tuple(f"{a}" if a == b else f"{a}-{b}" for a, b in SIZE_BINS) + ("all",)
PAPER_ALPHA = {1: {"1": 0.96, "2-4": 0.84, "5-10": 0.64, "11-20": 0.58, "21-48": 0.14, "all": 0.59}, 8: {"all": 0.77}}

_TEST_SEED = 20_200


@dataclass(frozen=True)
class EUConfig:
    """EU experiment: ``participants`` seeds per training condition, plain SGD one query per step."""

    participants: int = 20
    hidden: int = 1
    learning_rate: float = 0.05
    epochs: int = 50
    queries_per_epoch: int = 100
    test_per_type: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        _validate(self, ("participants", "hidden", "epochs", "queries_per_epoch", "test_per_type"))

    @property
    def steps(self) -> int:
        return self.epochs * self.queries_per_epoch


@dataclass(frozen=True)
class SampleSizeConfig:
    """Sample-size experiment: one population per hidden size; lr .01, 50 epochs x 300 queries."""

    participants: int = 20
    hidden: tuple[int, ...] = (1, 8)
    learning_rate: float = 0.01
    epochs: int = 50
    queries_per_epoch: int = 300
    test_queries: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        hidden = (self.hidden,) if isinstance(self.hidden, int) else tuple(self.hidden)
        if not hidden:
            raise ValueError("SampleSizeConfig.hidden needs at least one hidden size, got ()")
        object.__setattr__(self, "hidden", tuple(require_int("SampleSizeConfig", "hidden", h, 1, 100_000) for h in hidden))
        _validate(self, ("participants", "epochs", "queries_per_epoch", "test_queries"))

    @property
    def steps(self) -> int:
        return self.epochs * self.queries_per_epoch


def _validate(config, integers: Sequence[str]) -> None:
    owner = type(config).__name__
    for name in integers:
        require_int(owner, name, getattr(config, name), 1, 10_000_000)
    require_int(owner, "seed", config.seed, 0, 2**31 - 1)
    require_positive(owner, "learning_rate", config.learning_rate)


# --------------------------------------------------------------------------------- analyses
def regress_eu(prior_lo: np.ndarray, lik_lo: np.ndarray, model_lo: np.ndarray) -> np.ndarray:
    """Least squares ``model = b_prior prior_lo + b_lik lik_lo + b_0``; returns ``[..., 3]`` (b_prior, b_lik, b_0).

    ``model_lo`` may be ``[S, Q]`` (one fit per participant) or ``[Q]``.
    """
    design = np.stack([prior_lo, lik_lo, np.ones_like(prior_lo)], axis=1)
    targets = np.atleast_2d(np.asarray(model_lo, np.float64))
    coefs = np.linalg.lstsq(design, targets.T, rcond=None)[0].T
    return coefs if np.ndim(model_lo) == 2 else coefs[0]


def alpha_l(llr: np.ndarray, model_lo: np.ndarray) -> np.ndarray:
    """Slope without intercept of ``model_lo [..., Q]`` on ``llr [Q]``: sum(y x) / sum(x^2)."""
    llr = np.asarray(llr, np.float64)
    denominator = np.sum(llr * llr)
    if denominator == 0:
        raise ValueError("alpha_L needs at least one query with a nonzero log likelihood ratio")
    return np.sum(np.asarray(model_lo, np.float64) * llr, axis=-1) / denominator


def size_bin_alphas(queries: UrnQueries, model_lo: np.ndarray) -> np.ndarray:
    """alpha_L per participant and N bin (:data:`SIZE_BINS`, then all queries): ``[S, 6]``."""
    llr, draws = likelihood_log_odds(queries), np.asarray(queries.draws)
    masks = [(draws >= a) & (draws <= b) for a, b in SIZE_BINS] + [np.ones_like(draws, bool)]
    return np.stack([alpha_l(llr[m], model_lo[..., m]) if np.any(llr[m] != 0) else np.full(model_lo.shape[:-1], np.nan)
                     for m in masks], axis=-1)


# --------------------------------------------------------------------------------- results
@dataclass
class EUResult:
    """Per-participant coefficients ``[S, 3]`` (b_prior, b_lik, b_0) per training condition ("ID", "UD")."""

    backend: str
    config: EUConfig
    coefficients: dict[str, np.ndarray]
    seconds: float

    def summary(self) -> dict[str, dict[str, float]]:
        return {cond: {"b_prior": float(np.mean(c[:, 0])), "b_lik": float(np.mean(c[:, 1])), "b_0": float(np.mean(c[:, 2])),
                       "sem_prior": _sem(c[:, 0]), "sem_lik": _sem(c[:, 1])} for cond, c in self.coefficients.items()}

    def table(self) -> str:
        lines = [f"EU experiment, {self.backend}, hidden {self.config.hidden}, {self.config.participants} participants "
                 f"({self.seconds:.1f} s)",
                 f"{'trained on':<11}{'b_prior':>10}{'paper':>9}{'b_lik':>10}{'paper':>9}   (Bayes: 1, 1)"]
        for cond, s in self.summary().items():
            lines.append(f"{cond:<11}{s['b_prior']:>10.3f}{PAPER_EU[cond]['b_prior']:>9.3f}"
                         f"{s['b_lik']:>10.3f}{PAPER_EU[cond]['b_lik']:>9.3f}")
        return "\n".join(lines)

    def to_csv(self) -> str:
        rows = ["backend,condition,statistic,value,paper"]
        for cond, s in self.summary().items():
            for stat in ("b_prior", "b_lik", "b_0", "sem_prior", "sem_lik"):
                rows.append(f"{self.backend},{cond},{stat},{s[stat]:.6g},{PAPER_EU[cond].get(stat, '')}")
        return "\n".join(rows) + "\n"


@dataclass
class SampleSizeResult:
    """alpha_L per hidden size: ``[S, 6]`` (participants x (bins, all))."""

    backend: str
    config: SampleSizeConfig
    alphas: dict[int, np.ndarray]
    seconds: float
    diverged: dict[int, int] = field(default_factory=dict)

    def summary(self) -> dict[int, dict[str, float]]:
        return {h: {label: float(np.nanmedian(a[:, i])) for i, label in enumerate(BIN_LABELS)} for h, a in self.alphas.items()}

    def table(self) -> str:
        lines = [f"sample-size experiment, {self.backend}, {self.config.participants} participants ({self.seconds:.1f} s); "
                 "alpha_L = median over participants (paper in brackets; Bayes: 1)",
                 f"{'hidden':<8}" + "".join(f"{'N=' + label if label != 'all' else 'all':>15}" for label in BIN_LABELS)]
        for h, s in self.summary().items():
            cells = []
            for label in BIN_LABELS:
                paper = PAPER_ALPHA.get(h, {}).get(label)
                cells.append(f"{s[label]:>7.2f}" + (f" [{paper:.2f}]" if paper is not None else " " * 7))
            lines.append(f"{h:<8}" + "".join(f"{c:>15}" for c in cells)
                         + (f"   ({self.diverged[h]} diverged)" if self.diverged.get(h) else ""))
        return "\n".join(lines)

    def to_csv(self) -> str:
        rows = ["backend,hidden,bin,alpha_L,paper"]
        for h, s in self.summary().items():
            for label in BIN_LABELS:
                rows.append(f"{self.backend},{h},{label},{s[label]:.6g},{PAPER_ALPHA.get(h, {}).get(label, '')}")
        return "\n".join(rows) + "\n"


def _sem(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


# --------------------------------------------------------------------------------- running
def load_training(backend: str):
    """The backend's ``amortized_training`` module (imports the framework; torch pinned to 1 thread)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    from cogmeta.backends import load_backend

    load_backend(backend)
    if backend == "torch":
        from torch_impl.numerics import configure

        configure(1)
    return importlib.import_module(f"{backend}_impl.amortized_training")


def eu_test_queries(config: EUConfig) -> UrnQueries:
    """200 UD-type then 200 ID-type test queries (numpy float64, fixed seed)."""
    rng = np.random.default_rng([_TEST_SEED, config.seed])
    return concatenate([EU_UD.sample(rng, config.test_per_type), EU_ID.sample(rng, config.test_per_type)])


def run_eu(backend: str, config: EUConfig = EUConfig()) -> EUResult:
    """Train an ID and a UD population and regress their test log-odds on prior and likelihood log-odds."""
    training = load_training(backend)
    test = eu_test_queries(config)
    seeds = list(range(config.seed, config.seed + config.participants))
    start, coefficients = time.perf_counter(), {}
    for cond, spec in (("ID", EU_ID), ("UD", EU_UD)):
        weights = training.train_population([spec], seeds, hidden=config.hidden, learning_rate=config.learning_rate,
                                            steps=config.steps)
        model = training.predict_log_odds(weights, test.inputs)
        coefficients[cond] = regress_eu(prior_log_odds(test), likelihood_log_odds(test), model)
    return EUResult(backend, config, coefficients, time.perf_counter() - start)


def run_sample_size(backend: str, config: SampleSizeConfig = SampleSizeConfig()) -> SampleSizeResult:
    """Train one population per hidden size on noise + ladder queries; alpha_L per N bin on ladder tests."""
    training = load_training(backend)
    test = SIZE_LADDER.sample(np.random.default_rng([_TEST_SEED + 1, config.seed]), config.test_queries)
    seeds = list(range(config.seed, config.seed + config.participants))
    start, alphas, diverged = time.perf_counter(), {}, {}
    for hidden in config.hidden:
        weights = training.train_population([NOISE_BLOCKS, SIZE_LADDER], seeds, hidden=hidden,
                                            learning_rate=config.learning_rate, steps=config.steps)
        model = training.predict_log_odds(weights, test.inputs)
        finite = np.all(np.isfinite(model), axis=1)
        diverged[hidden] = int(np.sum(~finite))
        alphas[hidden] = size_bin_alphas(test, np.where(finite[:, None], model, np.nan))
    return SampleSizeResult(backend, config, alphas, time.perf_counter() - start, diverged)


# --------------------------------------------------------------------------------- figures
def _pyplot():
    from cogmeta.figures import _pyplot as pyplot

    return pyplot()


def plot_eu(result: EUResult, ax=None):
    """Bar chart of b_prior and b_lik per training condition, model vs paper; returns the Figure."""
    plt = _pyplot()
    fig = ax.figure if ax is not None else plt.figure(figsize=(5, 3.5))
    ax = ax if ax is not None else fig.add_subplot()
    summary = result.summary()
    positions = np.arange(2)
    for offset, (cond, colour) in zip((-0.2, 0.2), (("ID", "tab:blue"), ("UD", "tab:orange"))):
        values = [summary[cond]["b_prior"], summary[cond]["b_lik"]]
        errors = [summary[cond]["sem_prior"], summary[cond]["sem_lik"]]
        ax.bar(positions + offset, values, width=0.38, yerr=errors, color=colour, label=f"{cond}-trained ({result.backend})")
        ax.scatter(positions + offset, [PAPER_EU[cond]["b_prior"], PAPER_EU[cond]["b_lik"]], marker="x", color="k",
                   zorder=3, label="paper" if cond == "ID" else None)
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1, label="Bayes")
    ax.set_xticks(positions, ["prior log-odds", "likelihood log-odds"])
    ax.set_ylabel("regression weight")
    ax.set_title("EU: base-rate neglect (ID) and conservatism (UD)")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.45)  # headroom so the legend sits above the bars
    ax.legend(fontsize=7, loc="upper center", ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def plot_sample_size(result: SampleSizeResult, ax=None):
    """alpha_L per N bin, one line per hidden size, with the paper's hidden-1 values; returns the Figure."""
    plt = _pyplot()
    fig = ax.figure if ax is not None else plt.figure(figsize=(5, 3.5))
    ax = ax if ax is not None else fig.add_subplot()
    labels = BIN_LABELS[:-1]
    for hidden, summary in result.summary().items():
        ax.plot(labels, [summary[label] for label in labels], marker="o", label=f"hidden {hidden} ({result.backend})")
    ax.plot(labels, [PAPER_ALPHA[1][label] for label in labels], marker="x", color="k", linestyle="--",
            label="paper, hidden 1")
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1, label="Bayes")
    ax.set_xlabel("sample size N")
    ax.set_ylabel("alpha_L (median over participants)")
    ax.set_title("Conservatism grows with sample size")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def run_experiment(name: str, backend: str, out: Path | None = None, *, participants: int = 20,
                   hidden: Sequence[int] | None = None, seed: int = 0, figures: bool = True):
    """Run experiment ``name`` ("eu" or "sample-size") with ``backend``; print the table; write CSV and figure to ``out``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown learning-to-infer experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if name == "eu":
        if hidden is not None and len(hidden) != 1:
            raise ValueError(f"the EU experiment takes one hidden size, got {list(hidden)}")
        config = EUConfig(participants=participants, seed=seed, **({"hidden": hidden[0]} if hidden else {}))
        result, plot = run_eu(backend, config), plot_eu
    else:
        config = SampleSizeConfig(participants=participants, seed=seed, **({"hidden": tuple(hidden)} if hidden else {}))
        result, plot = run_sample_size(backend, config), plot_sample_size
    print(result.table())
    if out is not None:
        from cogmeta.io import atomic_write_json, atomic_write_text

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"learning-to-infer-{name}-{backend}"
        atomic_write_text(out / f"{stem}.csv", result.to_csv())
        atomic_write_json(out / f"{stem}-config.json", {"experiment": name, "backend": backend,
                                                        "seconds": result.seconds, **dataclasses.asdict(config)})
        if figures:
            from cogmeta.figures import save_figure

            save_figure(plot(result), out / f"{stem}.png")
        print(f"wrote {out / stem}.csv" + (f" and {stem}.png" if figures else ""))
    return result
