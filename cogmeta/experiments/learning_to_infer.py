"""Learning to infer (Dasgupta, Schulz, Tenenbaum & Gershman 2020): base-rate neglect and conservatism.

A population of simulated participants (one :class:`AmortizedPosterior` per seed, trained by plain
SGD on its own stream of queries) answers two-urn test queries; the analyses regress its posterior
log-odds on the two sources of evidence.

**EU experiment.** Single draws (balls drawn from the generative process, or as the paper's code draws them
with ``draws="paper"``, see :data:`DRAWS`). ID training (weak priors {.4, .5, .5, .6}, diagnostic likelihoods
{.1, .2, .2, .3, .7, .8, .8, .9}) or UD training (the lists swapped); test on 200 UD-type + 200
ID-type queries. Per participant, least squares

    model log-odds = b_prior * logit(p) + b_lik * n logit(l) + b_0        (Bayes: b_prior = b_lik = 1)

Coefficients are averaged over participants. The paper: ID-trained b_prior -0.004, b_lik 0.628
(base-rate neglect); UD-trained b_prior 0.797, b_lik -0.008 (conservatism).

**Sample-size experiment.** The classic urn studies pooled by Benjamin (2019)
(``cogmeta.tasks.urn_studies``): participant s is assigned study s mod 13 and trains (plain SGD, lr .01,
50 epochs in a fixed order) on 100 noise queries plus its study's 100 queries shown at prior .5; it is
tested on those study queries. alpha_L is the slope without intercept of model log-odds on the true log
likelihood ratio, fitted per participant on its queries in each N bin (and per study, and overall); the
table reports the median over participants (a diverging participant cannot dominate it). The paper
(hidden 1): N=1 0.96, 2-4 0.84, 5-10 0.64, 11-20 0.58, 21-48 0.14, overall 0.59; by study PSM65 0.03,
GT92 0.24, PM65 0.42, BH80 0.90; hidden 8 overall 0.77.

Training is the one trainer's: ``AmortizedObjective`` of ``torch_impl.amortized`` or ``jax_impl.amortized``
(member = participant, step k = its query k) and that module's ``train_population``. The backend is
imported only when an experiment runs (:func:`load_backend`, the study's one dispatch). A participant whose
loss or gradient becomes non-finite stops (``PopulationRun.stopped``); it counts as diverged and its
predictions are left out (NaN), as are non-finite predictions of any other.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from cogmeta._validation import require_int
from cogmeta.config import RunConfig
from cogmeta.experiments.seeds import Spread, spread
from cogmeta.tasks.urn import (
    UrnQueries,
    UrnQueryDistribution,
    concatenate,
    likelihood_log_odds,
    logit,
    prior_log_odds,
)
from cogmeta.tasks.urn_studies import STUDY_KEYS, study_of
from cogmeta.tasks.urn_tasks import DRAWS, UrnQueryTask, check_draws  # noqa: F401 - DRAWS, check_draws re-exported

EXPERIMENTS = ("eu", "sample-size")
# DRAWS (imported above): how the balls of sampled queries are drawn, "generative" as the generative process
# states (the default) or "paper" as the paper's code draws them (the prior-p urn with the other urn's
# heads-probability, ``UrnQueryDistribution.swapped_draws``). The query shown and its exact posterior are the
# same; how often each query occurs differs, which moves the coefficients (docs/tasks/learning-to-infer.md).

#: The paper's EU coefficients (repo JSONs, 20 simulated participants x 400 queries, hidden 1).
PAPER_EU = {"ID": {"b_prior": -0.004, "b_lik": 0.628}, "UD": {"b_prior": 0.797, "b_lik": -0.008}}
#: Sample-size bins (inclusive N ranges) and the paper's alpha_L (hidden 1; hidden 8 overall only).
SIZE_BINS = ((1, 1), (2, 4), (5, 10), (11, 20), (21, 48))
BIN_LABELS = tuple(f"{a}" if a == b else f"{a}-{b}" for a, b in SIZE_BINS) + ("all",)
PAPER_ALPHA = {1: {"1": 0.96, "2-4": 0.84, "5-10": 0.64, "11-20": 0.58, "21-48": 0.14, "all": 0.59}, 8: {"all": 0.77}}
#: The paper's alpha_L by study (hidden 1).
PAPER_STUDY_ALPHA = {1: {"PSM65": 0.03, "GT92": 0.24, "PM65": 0.42, "BH80": 0.90}}

_TEST_SEED = 20_200


#: Participants of a population by default: EU 400 (the paper simulated 20: the mean coefficient of 20 scatters
#: with sd ~0.05 from batch to batch, more than the UD-trained b_prior lies below Bayes and more than the effect of
#: the draws; 400 estimate it to ~0.01, in ~10 s per backend); sample-size 260 = 20 per study.
PARTICIPANTS = {"eu": 400, "sample-size": 260}
#: RBF units of the sample-size experiment's populations by default (the paper's hidden 1 and 8).
SAMPLE_SIZE_HIDDEN = (1, 8)
#: Test queries per type (UD, then ID) of the EU experiment.
TEST_PER_TYPE = 200
#: The participant run (preset) of each experiment: one simulated participant of the one pipeline.
PRESETS = {"eu": "l2i-eu-id", "sample-size": "l2i-sample-size"}


def base_config(experiment: str, *, hidden: int | None = None, seed: int = 0, optimizer: str = "sgd",
                learning_rate: float | None = None, draws: str = "generative") -> RunConfig:
    """The participant run of ``experiment`` ("eu" or "sample-size"): preset ``l2i-eu-id`` or
    ``l2i-sample-size`` with the values given (None keeps the preset's); ValueError naming the field."""
    from cogmeta.presets import preset

    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown learning-to-infer experiment {experiment!r}; choose one of {', '.join(EXPERIMENTS)}")
    config = preset(PRESETS[experiment])
    train = {"seed": seed, "optimizer": optimizer, **({} if learning_rate is None else {"learning_rate": learning_rate})}
    model = {} if hidden is None else {"hidden_size": hidden}
    return dataclasses.replace(config, task=dataclasses.replace(config.task, draws=draws),
                               model=dataclasses.replace(config.model, **model),
                               train=dataclasses.replace(config.train, **train))


def _check_base(base: RunConfig, task: str) -> RunConfig:
    if base.model.family != "amortized" or base.task.name != task:
        raise ValueError(f"this experiment trains participants of the amortized family on task {task!r}, got a "
                         f"{base.model.family!r} config of task {base.task.name!r}")
    return base


def study_setup(experiment: str, *, participants: int | None = None, hidden: Sequence[int] | None = None,
                seed: int = 0, optimizer: str = "sgd", learning_rate: float | None = None,
                draws: str = "generative") -> tuple[RunConfig, int, tuple[int, ...]]:
    """What ``cogmeta experiment learning-to-infer EXPERIMENT`` trains, from its options (None: the experiment's
    default): ``(participant run config, participants per population, RBF sizes)``; the EU experiment takes one
    hidden size, the sample-size experiment one population per size. ValueError naming the field."""
    if experiment == "eu" and hidden is not None and len(hidden) != 1:
        raise ValueError(f"the EU experiment takes one hidden size, got {list(hidden)}")
    base = base_config(experiment, hidden=hidden[0] if experiment == "eu" and hidden else None, seed=seed,
                       optimizer=optimizer, learning_rate=learning_rate, draws=draws)
    participants = check_participants(PARTICIPANTS[experiment] if participants is None else participants)
    units = (base.model.hidden_size,) if experiment == "eu" else check_hidden_sizes(hidden or SAMPLE_SIZE_HIDDEN)
    return base, participants, units


def check_participants(participants: int) -> int:
    """A population size in [1, 10^7]."""
    return require_int("learning-to-infer", "participants", participants, 1, 10_000_000)


def eu_distributions(draws: str = "generative") -> dict[str, UrnQueryDistribution]:
    """The EU training distributions {"ID": ..., "UD": ...} with balls drawn per :data:`DRAWS` ``draws`` (the
    ``urn_queries`` task's ID and UD sets)."""
    return {name: UrnQueryTask(name, draws).distribution() for name in ("ID", "UD")}


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


def participant_alphas(llr: np.ndarray, model_lo: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """alpha_L per participant and N bin (:data:`SIZE_BINS`, then all queries): ``[S, 6]``.

    ``llr``, ``model_lo``, ``draws``: ``[S, Q]`` (each participant has its own queries). A bin in which
    a participant has no query with a nonzero LLR is NaN for that participant.
    """
    llr, model_lo, draws = (np.asarray(a, np.float64) for a in (llr, model_lo, draws))
    out = np.full((llr.shape[0], len(SIZE_BINS) + 1), np.nan)
    masks = [(draws >= a) & (draws <= b) for a, b in SIZE_BINS] + [np.ones_like(draws, bool)]
    for j, mask in enumerate(masks):
        for s in range(llr.shape[0]):
            keep = mask[s] & (llr[s] != 0)
            if np.any(keep):
                out[s, j] = alpha_l(llr[s, keep], model_lo[s, keep])
    return out


# --------------------------------------------------------------------------------- results
@dataclass
class EUResult:
    """Per-participant coefficients ``[S, 3]`` (b_prior, b_lik, b_0) per training condition ("ID", "UD")."""

    backend: str
    base: RunConfig
    participants: int
    coefficients: dict[str, np.ndarray]
    seconds: float

    def summary(self) -> dict[str, dict[str, float]]:
        return {cond: {"b_prior": float(np.mean(c[:, 0])), "b_lik": float(np.mean(c[:, 1])), "b_0": float(np.mean(c[:, 2])),
                       "sem_prior": _sem(c[:, 0]), "sem_lik": _sem(c[:, 1])} for cond, c in self.coefficients.items()}

    def table(self) -> str:
        b = self.base
        lines = [f"EU experiment, {self.backend}, hidden {b.model.hidden_size}, {self.participants} participants, "
                 f"{b.train.optimizer} lr {b.train.learning_rate:g}, {b.task.draws} draws ({self.seconds:.1f} s)",
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
    """Per hidden size: alpha_L ``[S, 6]`` (participants x (bins, all)); ``studies[s]`` is participant s's study."""

    backend: str
    base: RunConfig
    participants: int
    hidden: tuple[int, ...]
    alphas: dict[int, np.ndarray]
    studies: tuple[str, ...]
    seconds: float
    diverged: dict[int, int] = field(default_factory=dict)

    def summary(self) -> dict[int, dict[str, float]]:
        """Median over participants of alpha_L per N bin and overall."""
        return {h: {label: _nanmedian(a[:, i]) for i, label in enumerate(BIN_LABELS)} for h, a in self.alphas.items()}

    def study_summary(self) -> dict[int, dict[str, float]]:
        """Median over a study's participants of their overall alpha_L."""
        keys = np.asarray(self.studies)
        return {h: {k: _nanmedian(a[keys == k, -1]) for k in STUDY_KEYS if np.any(keys == k)} for h, a in self.alphas.items()}

    def table(self) -> str:
        b = self.base
        lines = [f"sample-size experiment, {self.backend}, {self.participants} participants, {b.train.optimizer} "
                 f"lr {b.train.learning_rate:g}, {b.task.draws} draws ({self.seconds:.1f} s); "
                 "alpha_L = median over participants (paper in brackets; Bayes: 1)",
                 f"{'hidden':<8}" + "".join(f"{'N=' + label if label != 'all' else 'all':>15}" for label in BIN_LABELS)]
        for h, s in self.summary().items():
            cells = [f"{s[label]:>7.2f}" + _paper(PAPER_ALPHA.get(h, {}).get(label)) for label in BIN_LABELS]
            lines.append(f"{h:<8}" + "".join(f"{c:>15}" for c in cells)
                         + (f"   ({self.diverged[h]} diverged)" if self.diverged.get(h) else ""))
        lines.append("by study (overall alpha_L of the study's participants):")
        for h, s in self.study_summary().items():
            cells = [f"{k} {v:.2f}" + _paper(PAPER_STUDY_ALPHA.get(h, {}).get(k)).rstrip() for k, v in s.items()]
            lines.append(f"{h:<8}" + ", ".join(cells))
        return "\n".join(lines)

    def to_csv(self) -> str:
        rows = ["backend,hidden,group,alpha_L,paper"]
        for h, s in self.summary().items():
            for label in BIN_LABELS:
                rows.append(f"{self.backend},{h},N={label},{s[label]:.6g},{PAPER_ALPHA.get(h, {}).get(label, '')}")
        for h, s in self.study_summary().items():
            for k, v in s.items():
                rows.append(f"{self.backend},{h},{k},{v:.6g},{PAPER_STUDY_ALPHA.get(h, {}).get(k, '')}")
        return "\n".join(rows) + "\n"


@dataclass
class EURepeats:
    """EU results of K repeats (disjoint participant seeds, :func:`repeat_bases`): each entry of the table
    as mean ± sem over the repeats' population means (:mod:`cogmeta.experiments.seeds`)."""

    results: list[EUResult]
    seconds: float

    @property
    def backend(self) -> str:
        return self.results[0].backend

    @property
    def base(self) -> RunConfig:
        return self.results[0].base

    def spreads(self) -> dict[str, dict[str, Spread]]:
        """``{condition: {statistic: Spread over repeats}}`` of b_prior, b_lik, b_0."""
        summaries = [r.summary() for r in self.results]
        return {cond: {stat: spread(s[cond][stat] for s in summaries) for stat in ("b_prior", "b_lik", "b_0")}
                for cond in summaries[0]}

    def summary(self) -> dict[str, dict[str, float]]:
        """:meth:`EUResult.summary`'s shape: repeat means, and sem over repeats as ``sem_prior``/``sem_lik``."""
        return {cond: {"b_prior": v["b_prior"].mean, "b_lik": v["b_lik"].mean, "b_0": v["b_0"].mean,
                       "sem_prior": v["b_prior"].sem, "sem_lik": v["b_lik"].sem} for cond, v in self.spreads().items()}

    def table(self) -> str:
        b = self.base
        lines = [f"EU experiment, {self.backend}, hidden {b.model.hidden_size}, {len(self.results)} repeats x "
                 f"{self.results[0].participants} participants (first seeds "
                 f"{', '.join(str(r.base.train.seed) for r in self.results)}), {b.train.optimizer} "
                 f"lr {b.train.learning_rate:g}, {b.task.draws} draws ({self.seconds:.1f} s); mean ± sem over repeats",
                 f"{'trained on':<11}{'b_prior':>18}{'paper':>9}{'b_lik':>18}{'paper':>9}   (Bayes: 1, 1)"]
        for cond, v in self.spreads().items():
            lines.append(f"{cond:<11}{v['b_prior'].format(3):>18}{PAPER_EU[cond]['b_prior']:>9.3f}"
                         f"{v['b_lik'].format(3):>18}{PAPER_EU[cond]['b_lik']:>9.3f}")
        return "\n".join(lines)

    def to_csv(self) -> str:
        rows = ["backend,condition,statistic,mean,sem,min,max,n,paper"]
        for cond, stats in self.spreads().items():
            for stat, v in stats.items():
                rows.append(f"{self.backend},{cond},{stat},{v.mean:.6g},{v.sem:.6g},{v.low:.6g},{v.high:.6g},{v.n},"
                            f"{PAPER_EU[cond].get(stat, '')}")
        return "\n".join(rows) + "\n"


@dataclass
class SampleSizeRepeats:
    """Sample-size results of K repeats (disjoint participant seeds): each table entry (a median over a
    repeat's participants) as mean ± sem over the repeats."""

    results: list[SampleSizeResult]
    seconds: float

    @property
    def backend(self) -> str:
        return self.results[0].backend

    @property
    def base(self) -> RunConfig:
        return self.results[0].base

    def spreads(self) -> dict[int, dict[str, Spread]]:
        """``{hidden: {N bin or "all": Spread over repeats}}``."""
        summaries = [r.summary() for r in self.results]
        return {h: {label: spread(s[h][label] for s in summaries) for label in BIN_LABELS} for h in summaries[0]}

    def study_spreads(self) -> dict[int, dict[str, Spread]]:
        """``{hidden: {study: Spread over repeats}}``."""
        summaries = [r.study_summary() for r in self.results]
        return {h: {k: spread(s[h].get(k, np.nan) for s in summaries) for k in summaries[0][h]} for h in summaries[0]}

    def summary(self) -> dict[int, dict[str, float]]:
        """:meth:`SampleSizeResult.summary`'s shape: the repeat means."""
        return {h: {label: v.mean for label, v in cells.items()} for h, cells in self.spreads().items()}

    @property
    def diverged(self) -> dict[int, int]:
        """Diverged participants per hidden size, summed over repeats."""
        return {h: sum(r.diverged.get(h, 0) for r in self.results) for h in self.results[0].hidden}

    def table(self) -> str:
        b = self.base
        lines = [f"sample-size experiment, {self.backend}, {len(self.results)} repeats x {self.results[0].participants} "
                 f"participants (first seeds {', '.join(str(r.base.train.seed) for r in self.results)}), "
                 f"{b.train.optimizer} lr {b.train.learning_rate:g}, {b.task.draws} draws ({self.seconds:.1f} s); "
                 "alpha_L = median over a repeat's "
                 "participants, mean ± sem over repeats (paper in brackets; Bayes: 1)",
                 f"{'hidden':<8}" + "".join(f"{'N=' + label if label != 'all' else 'all':>20}" for label in BIN_LABELS)]
        for h, cells in self.spreads().items():
            entries = [cells[label].format(2) + _paper(PAPER_ALPHA.get(h, {}).get(label)) for label in BIN_LABELS]
            lines.append(f"{h:<8}" + "".join(f"{e:>20}" for e in entries)
                         + (f"   ({self.diverged[h]} diverged in all)" if self.diverged.get(h) else ""))
        lines.append("by study (overall alpha_L of the study's participants, mean ± sem over repeats):")
        for h, cells in self.study_spreads().items():
            lines.append(f"{h:<8}" + ", ".join(f"{k} {v.format(2)}" + _paper(PAPER_STUDY_ALPHA.get(h, {}).get(k)).rstrip()
                                               for k, v in cells.items()))
        return "\n".join(lines)

    def to_csv(self) -> str:
        rows = ["backend,hidden,group,mean,sem,min,max,n,paper"]
        for groups, paper, prefix in ((self.spreads(), PAPER_ALPHA, "N="), (self.study_spreads(), PAPER_STUDY_ALPHA, "")):
            for h, cells in groups.items():
                for label, v in cells.items():
                    rows.append(f"{self.backend},{h},{prefix}{label},{v.mean:.6g},{v.sem:.6g},{v.low:.6g},{v.high:.6g},"
                                f"{v.n},{paper.get(h, {}).get(label, '')}")
        return "\n".join(rows) + "\n"


def _paper(value: float | None) -> str:
    return f" [{value:.2f}]" if value is not None else " " * 7


def _nanmedian(values: np.ndarray) -> float:
    values = np.asarray(values, np.float64)
    return float(np.median(values[np.isfinite(values)])) if np.any(np.isfinite(values)) else float("nan")


def _sem(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


# --------------------------------------------------------------------------------- running
def load_backend(backend: str):
    """The backend's ``amortized`` module (imports the framework; torch pinned to 1 thread)."""
    from cogmeta.backends import load_module

    load_module(backend, "numerics").configure(threads=1 if backend == "torch" else 0)  # torch: 1 thread, TF32 off; JAX: its own threads, 32-bit
    return load_module(backend, "amortized")


def train_and_predict(amortized, train: UrnQueries, test_inputs: np.ndarray, seeds: Sequence[int], base: RunConfig,
                      hidden: int | None = None, write=None) -> np.ndarray:
    """Train participant ``seeds[s]`` on ``train.inputs[s]`` (one query per step) with backend module
    ``amortized`` (:func:`load_backend`) at ``base``'s recipe (RBF units ``hidden``, default ``base``'s); return
    its model log-odds ``[S, Q]`` on ``test_inputs`` (``[Q, 6]`` shared or ``[S, Q, 6]``), NaN for a
    participant that stopped on a non-finite loss or gradient. ``write(weights [S, ...], stopped [S])``, if
    given, receives the trained population (:func:`write_participants`)."""
    train_config = base.train
    objective = amortized.AmortizedObjective(train.inputs, train.log_odds,
                                             hidden=base.model.hidden_size if hidden is None else hidden,
                                             learning_rate=train_config.learning_rate,
                                             optimizer=train_config.optimizer, dtype=train_config.dtype, seeds=seeds)
    run = amortized.train_population(objective)
    if write is not None:
        write(run.weights, run.stopped)
    model = amortized.predict_log_odds(run.weights, test_inputs, train_config.dtype)
    return np.where(run.stopped[:, None], np.nan, model)


def write_participants(folder: Path | None, configs, backend: str):
    """A ``write`` for :func:`train_and_predict`: participant s as the run folder ``FOLDER/<name>`` of its run
    ``configs()[s]`` (family ``amortized``; built only when written): ``config.json`` and
    ``weights.safetensors`` (canonical, loadable by either framework; ``cogmeta evaluate`` reads it). A diverged
    participant gets no weights. ``folder`` None: no folders (returns None)."""
    if folder is None:
        return None

    def write(weights: dict[str, np.ndarray], stopped: np.ndarray) -> None:
        from cogmeta.runs import RunDir
        from cogmeta.weights import save_weights

        for s, config in enumerate(configs()):
            task = config.task
            name = (f"{task.queries}-seed{config.train.seed}" if task.name == "urn_queries"
                    else f"hidden{config.model.hidden_size}-seed{config.train.seed}-participant{task.participant:03d}")
            run = RunDir.at(Path(folder) / name)
            with run.writing():
                if run.config.exists():
                    raise FileExistsError(f"{run.root} already holds a run; choose a new output folder")
                config.save(run.config)
                if not stopped[s]:
                    save_weights(run.weights, {n: np.asarray(w[s]) for n, w in weights.items()}, config,
                                 framework=backend)

    return write


def eu_test_queries(base: RunConfig, test_per_type: int = TEST_PER_TYPE) -> UrnQueries:
    """``test_per_type`` UD-type then as many ID-type test queries (numpy float64, seed (fixed, ``base``'s seed)),
    their balls drawn as ``base.task.draws`` says."""
    rng = np.random.default_rng([_TEST_SEED, base.train.seed])
    specs = eu_distributions(base.task.draws)
    return concatenate([specs["UD"].sample(rng, test_per_type), specs["ID"].sample(rng, test_per_type)])


def repeat_bases(base: RunConfig, participants: int, repeats: int) -> list[RunConfig]:
    """``repeats`` copies of ``base`` with disjoint participant seeds: repeat r starts at
    ``seed + r * participants`` (so repeat 0 is ``base`` itself, and participant seeds and query streams never
    overlap between repeats)."""
    repeats = require_int("learning-to-infer", "repeats", repeats, 1)
    first = base.train.seed
    last = first + repeats * participants - 1
    if last > 2**31 - 1:
        raise ValueError(f"learning-to-infer.repeats = {repeats} needs participant seeds up to {last} > 2^31 - 1; "
                         "lower --repeats, --participants or --seed")
    return [dataclasses.replace(base, train=dataclasses.replace(base.train, seed=first + r * participants))
            for r in range(repeats)]


def run_eu(backend: str, base: RunConfig | None = None, participants: int = PARTICIPANTS["eu"],
           test_per_type: int = TEST_PER_TYPE, runs: Path | None = None) -> EUResult:
    """Train an ID and a UD population of ``participants`` runs of ``base`` (default :func:`base_config` "eu";
    participant s: seed + s, task queries "ID" or "UD") and regress their test log-odds on prior and likelihood
    log-odds. ``runs``: write every participant's run folder there (:func:`write_participants`)."""
    base = _check_base(base_config("eu") if base is None else base, "urn_queries")
    participants = check_participants(participants)
    test_per_type = require_int("learning-to-infer", "test_per_type", test_per_type, 1, 10_000_000)
    amortized = load_backend(backend)
    test = eu_test_queries(base, test_per_type)
    seeds = list(range(base.train.seed, base.train.seed + participants))
    start, coefficients = time.perf_counter(), {}
    for cond, spec in eu_distributions(base.task.draws).items():
        train = amortized.sample_training_queries([spec], seeds, base.train.steps, base.train.dtype)
        def configs(cond=cond):
            """The participants' runs (built only if they are written)."""
            return [dataclasses.replace(base, task=dataclasses.replace(base.task, queries=cond),
                                        train=dataclasses.replace(base.train, seed=seed)) for seed in seeds]

        model = train_and_predict(amortized, train, test.inputs, seeds, base,
                                  write=write_participants(runs, configs, backend))
        coefficients[cond] = regress_eu(prior_log_odds(test), likelihood_log_odds(test), model)
    return EUResult(backend, base, participants, coefficients, time.perf_counter() - start)


def run_eu_repeats(backend: str, base: RunConfig | None = None, participants: int = PARTICIPANTS["eu"],
                   repeats: int = 1, runs: Path | None = None) -> "EURepeats":
    """:func:`run_eu` for each of :func:`repeat_bases` (disjoint participant seeds), one after another.

    Each repeat is exactly the run ``--seed seed + r * participants`` would give: a population's hidden-1
    participants can train chaotically, so training all repeats as one larger population (a different
    vectorised program) would move them by rounding."""
    base = base_config("eu") if base is None else base
    start = time.perf_counter()
    results = [run_eu(backend, b, participants, runs=runs) for b in repeat_bases(base, participants, repeats)]
    return EURepeats(results, time.perf_counter() - start)


def sample_size_queries(base: RunConfig, participants: int) -> tuple[UrnQueries, UrnQueries]:
    """Training queries ``[S, steps, ...]`` (the block repeated ``epochs`` times) and test queries ``[S, Q, ...]``:
    participant s is the ``urn_study`` task of ``base`` with ``participant = s`` (``UrnStudyTask.queries``)."""
    blocks = [dataclasses.replace(base.task, participant=s).queries(base.train.seed) for s in range(participants)]
    train, test = (UrnQueries(*(np.stack([np.asarray(getattr(b[i], f)) for b in blocks]) for f in UrnQueries._fields))
                   for i in (0, 1))
    return train, test


def run_sample_size(backend: str, base: RunConfig | None = None, participants: int = PARTICIPANTS["sample-size"],
                    hidden: Sequence[int] = SAMPLE_SIZE_HIDDEN, runs: Path | None = None) -> SampleSizeResult:
    """Train one population of ``participants`` runs of ``base`` (default :func:`base_config` "sample-size";
    participant s: ``urn_study`` with ``participant = s``) per RBF size in ``hidden``; alpha_L per N bin and study.
    ``runs``: write every participant's run folder there (:func:`write_participants`)."""
    base = _check_base(base_config("sample-size") if base is None else base, "urn_study")
    participants = check_participants(participants)
    hidden = check_hidden_sizes(hidden)
    amortized = load_backend(backend)
    train, test = sample_size_queries(base, participants)
    seeds = list(range(base.train.seed, base.train.seed + participants))
    llr = (2 * test.heads - test.draws) * logit(test.likelihood)
    start, alphas, diverged = time.perf_counter(), {}, {}
    for units in hidden:
        def configs(units=units):
            """The participants' runs (built only if they are written)."""
            return [dataclasses.replace(base, task=dataclasses.replace(base.task, participant=s),
                                        model=dataclasses.replace(base.model, hidden_size=units))
                    for s in range(participants)]

        model = train_and_predict(amortized, train, test.inputs, seeds, base, units,
                                  write=write_participants(runs, configs, backend))
        finite = np.all(np.isfinite(model), axis=1)
        diverged[units] = int(np.sum(~finite))
        alphas[units] = participant_alphas(llr, np.where(finite[:, None], model, np.nan), test.draws)
    studies = tuple(study_of(s).key for s in range(participants))
    return SampleSizeResult(backend, base, participants, hidden, alphas, studies, time.perf_counter() - start, diverged)


def run_sample_size_repeats(backend: str, base: RunConfig | None = None,
                            participants: int = PARTICIPANTS["sample-size"], hidden: Sequence[int] = SAMPLE_SIZE_HIDDEN,
                            repeats: int = 1, runs: Path | None = None) -> "SampleSizeRepeats":
    """:func:`run_sample_size` for each of :func:`repeat_bases` (disjoint participant seeds), one after
    another, so that repeat r equals the run at ``--seed seed + r * participants`` (see :func:`run_eu_repeats`)."""
    base = base_config("sample-size") if base is None else base
    start = time.perf_counter()
    results = [run_sample_size(backend, b, participants, hidden, runs)
               for b in repeat_bases(base, participants, repeats)]
    return SampleSizeRepeats(results, time.perf_counter() - start)


def check_hidden_sizes(hidden: Sequence[int]) -> tuple[int, ...]:
    """The RBF sizes of the sample-size experiment's populations (one or more, each in [1, 10^5])."""
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if not hidden:
        raise ValueError("learning-to-infer.hidden needs at least one hidden size, got ()")
    return tuple(require_int("learning-to-infer", "hidden", h, 1, 100_000) for h in hidden)


def participant_evaluation(config: RunConfig, weights, backend: str) -> dict[str, float]:
    """The study's measure of one participant run (``cogmeta evaluate``): for ``urn_queries``, its EU regression
    coefficients b_prior, b_lik, b_0 on the EU test queries (:func:`eu_test_queries` of its seed and draws); for
    ``urn_study``, alpha_L per sample-size bin and overall on its study's queries."""
    from cogmeta.experiments.amortized_runs import model_log_odds

    if config.task.name == "urn_study":
        test = config.task.queries(config.train.seed)[1]
        model = model_log_odds(config, weights, backend, np.asarray(test.inputs))
        llr = (2 * np.asarray(test.heads) - np.asarray(test.draws)) * logit(test.likelihood)
        alphas = participant_alphas(llr[None], model[None], np.asarray(test.draws)[None])[0]
        return {f"alpha_L N={label}": float(value) for label, value in zip(BIN_LABELS, alphas)}
    test = eu_test_queries(config)
    model = model_log_odds(config, weights, backend, np.asarray(test.inputs))
    b_prior, b_lik, b_0 = regress_eu(prior_log_odds(test), likelihood_log_odds(test), model)
    return {"b_prior": float(b_prior), "b_lik": float(b_lik), "b_0": float(b_0)}


# --------------------------------------------------------------------------------- figures
def _pyplot():
    from cogmeta.figures import _pyplot as pyplot

    return pyplot()


def plot_eu(result: EUResult | EURepeats, ax=None):
    """Bar chart of b_prior and b_lik per training condition, model vs paper (error bars: the sem over
    participants, or over repeats for :class:`EURepeats`); returns the Figure."""
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


def plot_sample_size(result: SampleSizeResult | SampleSizeRepeats, ax=None):
    """alpha_L per N bin, one line per hidden size (repeats: their mean, error bars the sem over repeats),
    with the paper's hidden-1 values; returns the Figure."""
    plt = _pyplot()
    fig = ax.figure if ax is not None else plt.figure(figsize=(5, 3.5))
    ax = ax if ax is not None else fig.add_subplot()
    labels = BIN_LABELS[:-1]
    spreads = result.spreads() if isinstance(result, SampleSizeRepeats) else None
    for hidden, summary in result.summary().items():
        values = [summary[label] for label in labels]
        name = f"hidden {hidden} ({result.backend}" + (f", mean ± sem of {len(result.results)} repeats)" if spreads else ")")
        if spreads:  # error bars: the standard error over repeats
            ax.errorbar(labels, values, yerr=[spreads[hidden][label].sem for label in labels], marker="o", capsize=3,
                        label=name)
        else:
            ax.plot(labels, values, marker="o", label=name)
    ax.plot(labels, [PAPER_ALPHA[1][label] for label in labels], marker="x", color="k", linestyle="--",
            label="paper, hidden 1")
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1, label="Bayes")
    ax.set_xlabel("sample size N")
    ax.set_ylabel("alpha_L (median over participants)")
    ax.set_title("Conservatism grows with sample size")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def run_experiment(name: str, backend: str, out: Path | None = None, *, participants: int | None = None,
                   hidden: Sequence[int] | None = None, seed: int = 0, figures: bool = True, optimizer: str = "sgd",
                   learning_rate: float | None = None, draws: str = "generative", repeats: int = 1):
    """Run experiment ``name`` ("eu" or "sample-size") with ``backend``; print the table; write CSV and figure to ``out``.

    ``repeats`` K > 1: K populations with disjoint participant seeds (:func:`repeat_bases`), one after
    another; the table and ``<stem>.csv`` give each entry as mean ± sem over the repeats (plus min, max,
    n), and ``<stem>-repeats.csv`` each repeat's own table. Returns the result (K > 1: the repeats')."""
    from cogmeta.backends import BACKENDS

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(sorted(BACKENDS))}")
    repeats = require_int("learning-to-infer", "repeats", repeats, 1)
    base, participants, units = study_setup(name, participants=participants, hidden=hidden, seed=seed,
                                            optimizer=optimizer, learning_rate=learning_rate, draws=draws)
    runs = None if out is None else Path(out) / "runs" / f"{name}-{backend}"
    if name == "eu":
        result, plot = run_eu_repeats(backend, base, participants, repeats, runs), plot_eu
    else:
        result, plot = run_sample_size_repeats(backend, base, participants, units, repeats, runs), plot_sample_size
    if repeats == 1:
        result = result.results[0]
    print(result.table())
    if out is not None:
        from cogmeta.io import atomic_write_json, atomic_write_text

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"learning-to-infer-{name}-{backend}"
        atomic_write_text(out / f"{stem}.csv", result.to_csv())
        if repeats > 1:
            atomic_write_text(out / f"{stem}-repeats.csv", repeats_csv(result))
        atomic_write_json(out / f"{stem}-config.json", {
            "experiment": name, "backend": backend, "repeats": repeats, "seconds": result.seconds,
            "participants": participants, **({} if name == "eu" else {"hidden": list(units)}), "run": base.to_dict()})
        if figures:
            from cogmeta.figures import save_figure

            save_figure(plot(result), out / f"{stem}.png")
        print(f"wrote {out / stem}.csv" + (f" and {stem}.png" if figures else ""))
    return result


def repeats_csv(repeated: EURepeats | SampleSizeRepeats) -> str:
    """Every repeat's own CSV table (its ``to_csv``), with a leading ``repeat,first_seed`` pair of columns."""
    lines = []
    for r, result in enumerate(repeated.results):
        header, *rows = result.to_csv().splitlines()
        if r == 0:
            lines.append(f"repeat,first_seed,{header}")
        lines += [f"{r},{result.base.train.seed},{row}" for row in rows]
    return "\n".join(lines) + "\n"
