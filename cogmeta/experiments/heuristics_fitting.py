"""Fitting people: which model of the paired-comparison task (Binz et al. 2022) explains each participant's
choices best, the meta-learned model at which bound beta, and how the models are distributed over people.

Candidate models (each gives p(choice_t = 1) from the cues of trial t and the feedback of trials < t):

    guess             p = 1/2                                              k = 0
    take_the_best     probit learner on cue 1 alone (``baselines.single_cue``: the ranking is known)
    equal_weighting   probit learner on sum_k dx_k (tallying)
    best_cue          the single cue that explained the past feedback best
    ideal_observer    probit learner on all cues, prior N(0, I)
    exact_bayes       the exact Bayes predictive under the condition's prior (``baselines.exact_bayes``)
    bmli              the bounded meta-learned model (``*_impl/bounded_gru.py``, pruned weights: deterministic)
                      at each beta of a grid; the best beta per participant is its fitted parameter

Each model except ``guess`` gets a fitted lapse rate eps (``cogmeta.fitting.selection``): k = 1 for the
heuristics and references, k = 2 for ``bmli`` (beta and eps); without the lapse (``lapse=False``)
k = 0 and 1, and a choice the model gave probability 0 makes its log-likelihood -inf. Then BIC, BIC
weights per participant, the assignment (lowest BIC) and random-effects model frequencies over participants.

Framework-free: the backend is imported only to run the meta-learned model (:func:`bmli_probabilities`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from cogmeta.fitting.participants import ParticipantData
from cogmeta.fitting.selection import (
    bic,
    bic_weights,
    chosen_probability,
    fit_lapse,
    log_likelihood,
    random_effects_bms,
)

HEURISTIC_MODELS = ("guess", "take_the_best", "equal_weighting", "best_cue", "ideal_observer", "exact_bayes")
MODELS = (*HEURISTIC_MODELS, "bmli")
#: The beta grid of the meta-learned model fitted by default (the study's CPU recipe: H = 64).
DEFAULT_BETAS = (0.0, 0.01, 0.03)
#: Prior samples of the exact Bayes reference when fitting (2^16: a mean MC error of a few 1e-3 per
#: prediction, ``baselines/exact_bayes.py``; 1 s per participant of 300 trials).
EXACT_SAMPLES = 2**16
#: How the meta-learned model is run: pruned weights (log alpha < 3), as the study evaluates it; no sampling.
BMLI_MODE = "pruned"


def check_models(models: Sequence[str]) -> tuple[str, ...]:
    """Distinct known model names, in the given order (ValueError naming the bad one)."""
    models = tuple(models)
    for name in models:
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    if len(set(models)) != len(models) or not models:
        raise ValueError(f"models must be distinct and at least one, got {', '.join(models) or 'none'}")
    return models


def check_betas(betas: Sequence[float]) -> tuple[float, ...]:
    """A non-empty grid of distinct betas >= 0, sorted."""
    from cogmeta.experiments.heuristics import check_beta

    values = tuple(sorted(check_beta(beta, "betas") for beta in betas))
    if not values or len(set(values)) != len(values):
        raise ValueError(f"betas must be distinct and at least one, got {list(betas)}")
    return values


# ---------------------------------------------------------------------------------------- model predictions
def heuristic_probability(name: str, cues: np.ndarray, targets: np.ndarray, condition: str = "ranking",
                          noise_std: float = 0.1, exact_samples: int = EXACT_SAMPLES, seed: int = 0) -> np.ndarray:
    """p(choice_t = 1) ``[T, B]`` of a model of :data:`HEURISTIC_MODELS` on ``cues [T, B, K]``, ``targets [T, B]``."""
    from cogmeta.baselines import best_cue, equal_weighting, ideal_observer, single_cue
    from cogmeta.baselines.exact_bayes import posterior_predictive

    if name == "guess":
        return np.full(np.shape(targets), 0.5)
    if name == "exact_bayes":
        return posterior_predictive(cues, targets, condition, noise_std, num_samples=exact_samples, seed=seed).prob
    learners: dict[str, Callable] = {"take_the_best": single_cue, "equal_weighting": equal_weighting,
                                     "best_cue": best_cue, "ideal_observer": ideal_observer}
    return learners[name](cues, targets, noise_std).prob


def bmli_probabilities(weights: Mapping[float, Mapping[str, np.ndarray]], cues: np.ndarray, targets: np.ndarray,
                       backend: str, mode: str = BMLI_MODE) -> dict[float, np.ndarray]:
    """p(choice_t = 1) ``[T, B]`` of the meta-learned model for each beta of ``weights`` ({beta: canonical
    weights}), run by ``backend``'s ``bounded_gru.predict`` in the weights' dtype (deterministic ``mode``)."""
    from cogmeta.backends import load_module

    predict = load_module(backend, "bounded_gru").predict
    result = {}
    for beta, tensors in weights.items():
        hidden, count = model_sizes(tensors)
        if count != cues.shape[-1]:
            raise ValueError(f"the meta-learned model (beta {beta:g}) was trained with K = {count} cues but the data "
                             f"have K = {cues.shape[-1]}; train it on tasks with {cues.shape[-1]} cues")
        dtype = np.asarray(tensors["initial_state"]).dtype
        result[beta] = np.asarray(predict(tensors, cues.astype(dtype), targets.astype(dtype), hidden, mode)[1], np.float64)
    return result


def model_sizes(tensors: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """(H, K) of canonical weights of the bounded GRU (``initial_state`` (H,), ``ih.weight`` (3H, K + 2))."""
    expected = {"initial_state"} | {f"{layer}.{part}" for layer in ("ih", "hh", "mu", "logscale")
                                    for part in ("weight", "log_sigma", "bias")}
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ValueError(f"not weights of the bounded meta-learned model: missing {missing or 'none'}, "
                         f"unexpected {extra or 'none'}")
    return int(np.shape(tensors["initial_state"])[0]), int(np.shape(tensors["ih.weight"])[1]) - 2


def concatenate(participants: Sequence[ParticipantData]) -> tuple[np.ndarray, np.ndarray, list[slice]]:
    """All participants' tasks side by side: (cues ``[T, B_total, K]``, targets ``[T, B_total]``, the slice of
    each participant), padded to the longest task (the models are causal, so padding changes nothing)."""
    steps = max(p.cues.shape[0] for p in participants)
    count = participants[0].num_cues
    for p in participants:
        if p.num_cues != count:
            raise ValueError(f"participant {p.participant} has {p.num_cues} cues, participant "
                             f"{participants[0].participant} has {count}")
    cues, targets, slices, start = [], [], [], 0
    for p in participants:
        pad = steps - p.cues.shape[0]
        cues.append(np.pad(p.cues, ((0, pad), (0, 0), (0, 0))))
        targets.append(np.pad(p.targets, ((0, pad), (0, 0))))
        slices.append(slice(start, start + p.cues.shape[1]))
        start += p.cues.shape[1]
    return np.concatenate(cues, axis=1), np.concatenate(targets, axis=1), slices


def model_probabilities(participants: Sequence[ParticipantData], models: Sequence[str], condition: str = "ranking",
                        bmli_weights: Mapping[float, Mapping[str, np.ndarray]] | None = None, backend: str = "torch",
                        exact_samples: int = EXACT_SAMPLES, noise_std: float = 0.1) -> dict[object, list[np.ndarray]]:
    """Every model's p(choice = 1) per participant: ``{name or ("bmli", beta): [[T_n, B_n] per participant]}``."""
    cues, targets, slices = concatenate(participants)
    found: dict[object, np.ndarray] = {}
    for name in models:
        if name == "bmli":
            if not bmli_weights:
                raise ValueError("model 'bmli' needs the meta-learned model's weights ({beta: canonical weights})")
            for beta, prob in bmli_probabilities(bmli_weights, cues, targets, backend).items():
                found[("bmli", beta)] = prob
        else:
            found[name] = heuristic_probability(name, cues, targets, condition, noise_std, exact_samples)
    return {key: [prob[: p.cues.shape[0], s] for p, s in zip(participants, slices)] for key, prob in found.items()}


# ---------------------------------------------------------------------------------------- fitting
@dataclass
class FitResult:
    """Per-participant fits of M models (columns in the order of ``models``).

    Attributes:
        participants: the N labels; models: the M model names ("bmli" = the beta-grid family).
        num_trials: ``[N]`` n per participant; num_params: ``[M]`` k per model.
        log_lik, lapse, bic, weights: ``[N, M]`` maximised LL, fitted lapse, BIC, BIC weights.
        assigned: ``[N]`` the model with the lowest BIC (ties: the first).
        betas: the beta grid; bmli_log_lik, bmli_lapse: ``[N, G]`` per beta; best_beta: ``[N]`` (NaN without bmli).
        group: random-effects BMS over participants (``random_effects_bms``; empty when an LL is -inf).
        lapse_fitted: whether the lapse was fitted.
    """

    participants: list[str]
    models: tuple[str, ...]
    num_trials: np.ndarray
    num_params: np.ndarray
    log_lik: np.ndarray
    lapse: np.ndarray
    bic: np.ndarray
    weights: np.ndarray
    assigned: list[str]
    betas: tuple[float, ...] = ()
    bmli_log_lik: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    bmli_lapse: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    best_beta: np.ndarray = field(default_factory=lambda: np.zeros(0))
    group: dict = field(default_factory=dict)
    lapse_fitted: bool = True


def num_parameters(model: str, lapse: bool = True) -> int:
    """k of the BIC (module doc): guess 0; a heuristic or reference 0 + lapse; bmli 1 (beta) + lapse."""
    if model == "guess":
        return 0
    return (1 if model == "bmli" else 0) + (1 if lapse else 0)


def fit_participants(participants: Sequence[ParticipantData], probabilities: Mapping[object, list[np.ndarray]],
                     models: Sequence[str], lapse: bool = True) -> FitResult:
    """Maximum-likelihood fits of every model to every participant from :func:`model_probabilities`'s output."""
    models = check_models(models)
    n = np.array([p.num_trials for p in participants])
    width = max(int(p.mask.size) for p in participants)

    def stack(probs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Chosen-option probabilities and masks, flattened and padded to ``[N, width]``."""
        chosen, masks = np.full((len(participants), width), 0.5), np.zeros((len(participants), width), bool)
        for i, (p, prob) in enumerate(zip(participants, probs)):
            chosen[i, : p.mask.size] = chosen_probability(prob, p.choices).ravel()
            masks[i, : p.mask.size] = p.mask.ravel()
        return chosen, masks

    def fit(probs):
        chosen, masks = stack(probs)
        if lapse:
            return fit_lapse(chosen, masks)
        return np.zeros(len(participants)), log_likelihood(chosen, masks)

    log_lik = np.zeros((len(participants), len(models)))
    lapses = np.zeros_like(log_lik)
    betas = tuple(sorted(key[1] for key in probabilities if isinstance(key, tuple) and key[0] == "bmli"))
    bmli_ll = np.zeros((len(participants), len(betas)))
    bmli_lapse = np.zeros_like(bmli_ll)
    best_beta = np.full(len(participants), np.nan)
    for m, name in enumerate(models):
        if name == "bmli":
            for g, beta in enumerate(betas):
                bmli_lapse[:, g], bmli_ll[:, g] = fit(probabilities[("bmli", beta)])
            best = np.argmax(bmli_ll, axis=1)  # ties: the smallest beta
            rows = np.arange(len(participants))
            log_lik[:, m], lapses[:, m] = bmli_ll[rows, best], bmli_lapse[rows, best]
            best_beta = np.asarray(betas)[best]
        elif name == "guess":
            log_lik[:, m] = n * np.log(0.5)
        else:
            lapses[:, m], log_lik[:, m] = fit(probabilities[name])
    k = np.array([num_parameters(name, lapse) for name in models])
    bics = bic(log_lik, k[None, :], n[:, None])
    assigned = [models[i] for i in np.argmin(bics, axis=1)]
    group = random_effects_bms(-0.5 * bics) if np.all(np.isfinite(bics)) else {}
    return FitResult([p.participant for p in participants], models, n, k, log_lik, lapses, bics, bic_weights(bics),
                     assigned, betas, bmli_ll, bmli_lapse, best_beta, group, lapse)


def result_rows(result: FitResult) -> list[dict]:
    """One row per participant: n, per model LL / lapse / BIC / BIC weight, LL per beta, best beta, assignment."""
    rows = []
    for i, participant in enumerate(result.participants):
        row: dict = {"participant": participant, "num_trials": int(result.num_trials[i]), "assigned": result.assigned[i]}
        if "bmli" in result.models:
            row["best_beta"] = float(result.best_beta[i])
        for m, name in enumerate(result.models):
            row[f"ll_{name}"] = float(result.log_lik[i, m])
            row[f"lapse_{name}"] = float(result.lapse[i, m])
            row[f"bic_{name}"] = float(result.bic[i, m])
            row[f"weight_{name}"] = float(result.weights[i, m])
        for g, beta in enumerate(result.betas):
            row[f"ll_bmli_beta{beta:g}"] = float(result.bmli_log_lik[i, g])
        rows.append(row)
    return rows


def format_fit_summary(result: FitResult, title: str) -> str:
    """Markdown: assignments, mean BIC weights, group frequencies and exceedance, fitted betas."""
    counts = {name: result.assigned.count(name) for name in result.models}
    lines = [f"# {title}", "",
             f"{len(result.participants)} participant(s), {int(result.num_trials.sum())} trials; lapse rate "
             f"{'fitted per model (k += 1)' if result.lapse_fitted else 'not fitted'}; bmli: beta fitted on the grid "
             f"{', '.join(f'{b:g}' for b in result.betas) or '-'} (k += 1); BIC = -2 LL + k ln n.", "",
             "| model | k | participants assigned (lowest BIC) | mean BIC weight | total LL | group frequency | exceedance |",
             "|---|---|---|---|---|---|---|"]
    for m, name in enumerate(result.models):
        freq = f"{result.group['frequency'][m]:.3f}" if result.group else "-"
        exceed = f"{result.group['exceedance'][m]:.3f}" if result.group else "-"
        lines.append(f"| {name} | {result.num_params[m]} | {counts[name]} | {result.weights[:, m].mean():.3f} | "
                     f"{result.log_lik[:, m].sum():.1f} | {freq} | {exceed} |")
    if not result.group:
        lines += ["", "Group-level selection skipped: a model gave an observed choice probability 0 (fit a lapse rate)."]
    if result.betas and "bmli" in result.models:
        lines += ["", "Fitted beta of the meta-learned model (all participants; in brackets those assigned to bmli):", "",
                  "| beta | participants |", "|---|---|"]
        for beta in result.betas:
            chosen = result.best_beta == beta
            assigned = sum(1 for i in np.flatnonzero(chosen) if result.assigned[i] == "bmli")
            lines.append(f"| {beta:g} | {int(chosen.sum())} ({assigned}) |")
    return "\n".join(lines) + "\n"


def plot_fit(result: FitResult):
    """Left: BIC weights per participant (rows sorted by assigned model); right: the fitted betas."""
    from cogmeta.figures import _pyplot

    plt = _pyplot()
    has_beta = bool(result.betas) and "bmli" in result.models
    count = len(result.participants)
    fig, axes = plt.subplots(1, 2 if has_beta else 1, figsize=(11 if has_beta else 6, min(max(4.0, 1.0 + 0.16 * count), 12.0)),
                             squeeze=False)
    order = sorted(range(len(result.participants)), key=lambda i: (result.models.index(result.assigned[i]), -result.weights[i].max()))
    ax = axes[0][0]
    image = ax.imshow(result.weights[order], aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(len(result.models)), result.models, rotation=35, ha="right")
    if count <= 60:  # beyond that the labels overlap; the rows stay sorted by assigned model
        ax.set_yticks(range(count), [result.participants[i] for i in order], fontsize=6)
    else:
        ax.set_yticks([])
    ax.set_ylabel(f"participant ({count}, sorted by assigned model)")
    ax.set_title("posterior model probability (BIC weights)")
    fig.colorbar(image, ax=ax, fraction=0.05)
    if has_beta:
        ax = axes[0][1]
        labels = [f"{b:g}" for b in result.betas]
        is_bmli = np.array([a == "bmli" for a in result.assigned])
        assigned = [int(np.sum((result.best_beta == b) & is_bmli)) for b in result.betas]
        others = [int(np.sum((result.best_beta == b) & ~is_bmli)) for b in result.betas]
        ax.bar(labels, assigned, color="C0", label="assigned to bmli")
        ax.bar(labels, others, bottom=assigned, color="C7", label="assigned to another model")
        ax.set_xlabel("fitted beta (description-length bound)")
        ax.set_ylabel("participants")
        ax.set_title("fitted beta of the meta-learned model")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------- weights
def weights_path(folder: str | Path, condition: str, beta: float, seed: int = 0) -> Path:
    """``FOLDER/<condition>-beta<beta>-seed<seed>/weights.safetensors``: a run folder of the heuristics grid."""
    from cogmeta.experiments.heuristics import cell_name

    return Path(folder) / cell_name(condition, beta, seed) / "weights.safetensors"


def load_or_train_weights(folder: str | Path, condition: str, betas: Sequence[float], backend: str, base=None,
                          seed: int = 0, finetune_steps: int | None = None,
                          echo=print) -> dict[float, dict[str, np.ndarray]]:
    """{beta: canonical weights} of the meta-learned model: the run folders of the heuristics grid in ``folder``
    (:func:`weights_path`); the cells missing there are trained into it by
    ``cogmeta.experiments.heuristics.train_grid`` in ``backend`` (stage 1 ``base``, default the study's
    ``base_config()``; ``finetune_steps`` per beta, default the study's)."""
    from cogmeta.experiments.heuristics import FINETUNE_STEPS, base_config, train_grid
    from cogmeta.weights import read_safetensors

    folder = Path(folder)
    missing = [beta for beta in betas if not weights_path(folder, condition, beta, seed).is_file()]
    if missing:
        base = base_config() if base is None else base
        steps = FINETUNE_STEPS if finetune_steps is None else finetune_steps
        echo(f"training the meta-learned model for beta {', '.join(f'{b:g}' for b in missing)} ({condition}, {backend}; "
             f"{base.train.steps} + {steps} steps) into {folder}")
        train_grid(base, [condition], [seed], backend, betas=[b for b in missing if b > 0], finetune_steps=steps,
                   out=folder, echo=echo)
    weights = {}
    for beta in betas:
        tensors, _ = read_safetensors(weights_path(folder, condition, beta, seed), "weights file of the meta-learned model")
        model_sizes(tensors)
        weights[beta] = tensors
    return weights


# ---------------------------------------------------------------------------------------- driver
def configure_backend(backend: str) -> None:
    """The study's numerics: torch 1 thread with TF32 off; JAX its own threads (``*_impl/numerics.configure``)."""
    from cogmeta.backends import load_module

    load_module(backend, "numerics").configure(threads=1 if backend == "torch" else 0)


def write_fit(result: FitResult, out: str | Path, title: str, figures: bool = True, echo=print,
              extra: Mapping[str, Sequence] | None = None, name: str = "fit") -> str:
    """Write ``<name>.csv`` (one row per participant, ``extra`` columns first), ``<name>.md`` and
    ``heuristics-<name>.png`` into ``out``; return the summary."""
    from cogmeta.experiments.heuristics import write_csv
    from cogmeta.figures import save_figure
    from cogmeta.io import atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = result_rows(result)
    if extra:
        rows = [{**{key: values[i] for key, values in extra.items()}, **row} for i, row in enumerate(rows)]
    write_csv(rows, out / f"{name}.csv")
    summary = format_fit_summary(result, title)
    atomic_write_text(out / f"{name}.md", summary)
    if figures:
        echo(f"figure: {save_figure(plot_fit(result), out / f'heuristics-{name}.png')}")
    echo(f"table: {out / f'{name}.csv'}, summary: {out / f'{name}.md'}")
    return summary


def run_fit(data: str | Path, backend: str, condition: str = "ranking", betas: Sequence[float] = DEFAULT_BETAS,
            models: Sequence[str] = MODELS, weights_folder: str | Path | None = None, out: str | Path | None = None,
            lapse: bool = True, exact_samples: int = EXACT_SAMPLES, negate_cues: bool = False, base=None,
            finetune_steps: int | None = None,
            figures: bool = True, echo=print) -> FitResult:
    """Fit every model to every participant of the CSV ``data`` and write table, summary and figure into ``out``
    (default ``runs/heuristics-fit-<backend>``). The meta-learned model's weights come from ``weights_folder``
    (default ``runs/heuristics-bmli-weights``; missing betas are trained there: :func:`load_or_train_weights`)."""
    from cogmeta._validation import require_choice, require_int
    from cogmeta.fitting.participants import load_participants
    from cogmeta.tasks.paired_comparison import CONDITIONS

    condition = require_choice("", "condition", condition, CONDITIONS)
    models, betas = check_models(models), check_betas(betas)
    exact_samples = require_int("", "exact_samples", exact_samples, 1)
    participants = load_participants(data, negate_cues=negate_cues)
    echo(f"heuristics-fit: {len(participants)} participant(s), {sum(p.num_trials for p in participants)} trials "
         f"from {data}; models {', '.join(models)}; condition {condition}")
    weights = None
    if "bmli" in models:
        configure_backend(backend)
        folder = Path("runs") / "heuristics-bmli-weights" if weights_folder is None else weights_folder
        weights = load_or_train_weights(folder, condition, betas, backend, base, finetune_steps=finetune_steps, echo=echo)
    probs = model_probabilities(participants, models, condition, weights, backend, exact_samples)
    result = fit_participants(participants, probs, models, lapse)
    out = Path("runs") / f"heuristics-fit-{backend}" if out is None else Path(out)
    echo(write_fit(result, out, f"Fitting participants: {Path(data).name} ({backend}, condition {condition})", figures, echo))
    return result
