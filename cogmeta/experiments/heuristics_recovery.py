"""Model recovery for :mod:`cogmeta.experiments.heuristics_fitting`: simulate participants from known models,
fit them like real people, and count how often the generating model (and the generating beta) comes back.

Simulated participant of generator g: ``num_tasks`` fresh tasks of the paired-comparison task
(``PairedComparisonTask(condition)``, ``num_trials`` trials each, feedback = the task's targets), and

    choice_t ~ Bernoulli((1 - eps) p_g(t) + eps / 2)

with p_g the generator's choice probability given the feedback of trials < t and eps the simulated lapse
rate. Generators: any model of ``heuristics_fitting.HEURISTIC_MODELS`` by name, and ``("bmli", beta)`` for
the meta-learned model at a given beta. Correct assignment: the lowest-BIC model is the generator's
family ("bmli" for every beta). Beta recovery: the fitted beta of the bmli-generated participants.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

import numpy as np

from cogmeta.experiments.heuristics_fitting import (
    FitResult,
    bmli_probabilities,
    fit_participants,
    heuristic_probability,
    model_probabilities,
)
from cogmeta.fitting.participants import ParticipantData, from_arrays

#: The generators of the default recovery study: the two heuristics and the meta-learned model at each beta.
DEFAULT_GENERATORS = ("take_the_best", "equal_weighting", "bmli")
#: The candidate models the recovery fits by default (the generators' families).
DEFAULT_CANDIDATES = ("take_the_best", "equal_weighting", "bmli")


def generator_label(generator) -> str:
    """``"take_the_best"`` or ``"bmli beta=0.01"``."""
    return f"bmli beta={generator[1]:g}" if isinstance(generator, tuple) else generator


def family(generator) -> str:
    return generator[0] if isinstance(generator, tuple) else generator


def expand_generators(names: Sequence[str], betas: Sequence[float]) -> list:
    """Names -> generators: "bmli" becomes ("bmli", beta) for every beta of the grid."""
    generators: list = []
    for name in names:
        generators += [("bmli", beta) for beta in betas] if name == "bmli" else [name]
    return generators


def simulate(generators: Sequence, participants_per_generator: int, num_tasks: int = 30, num_trials: int = 10,
             lapse: float = 0.1, condition: str = "ranking", bmli_weights: Mapping[float, Mapping[str, np.ndarray]] | None = None,
             backend: str = "torch", seed: int = 0, task=None) -> tuple[list[ParticipantData], list]:
    """Simulated participants (module doc), ``participants_per_generator`` per generator, and their generators.

    Participant i of generator g gets tasks from ``numpy.random.default_rng([seed, g, i])`` and its choices from
    the same stream after the tasks, so adding generators or participants leaves the others unchanged.
    """
    from cogmeta.tasks.paired_comparison import PairedComparisonTask

    if not 0 <= lapse <= 1:
        raise ValueError(f"the simulated lapse rate must lie in [0, 1], got {lapse!r}")
    task = replace(task or PairedComparisonTask(), condition=condition, num_trials=num_trials)
    participants, truth = [], []
    for g, generator in enumerate(generators):
        rngs = [np.random.default_rng([seed, g, i]) for i in range(participants_per_generator)]
        batches = [task.sample(rng, num_tasks) for rng in rngs]
        cues = np.concatenate([b.cues for b in batches], axis=1)
        targets = np.concatenate([b.targets for b in batches], axis=1)
        if isinstance(generator, tuple):
            if not bmli_weights or generator[1] not in bmli_weights:
                raise ValueError(f"generator {generator_label(generator)} needs the meta-learned model's weights at that beta")
            prob = bmli_probabilities({generator[1]: bmli_weights[generator[1]]}, cues, targets, backend)[generator[1]]
        else:
            prob = heuristic_probability(generator, cues, targets, condition, task.noise_std)
        prob = (1 - lapse) * prob + lapse / 2
        for i, rng in enumerate(rngs):
            block = slice(i * num_tasks, (i + 1) * num_tasks)
            choices = (rng.random(prob[:, block].shape) < prob[:, block]).astype(np.float64)
            participants.append(from_arrays(f"{generator_label(generator)}#{i}", cues[:, block], targets[:, block], choices))
            truth.append(generator)
    return participants, truth


def recover(generators: Sequence, candidates: Sequence[str], participants_per_generator: int, betas: Sequence[float],
            bmli_weights=None, backend: str = "torch", num_tasks: int = 30, num_trials: int = 10, lapse: float = 0.1,
            condition: str = "ranking", seed: int = 0, fit_lapse: bool = True, exact_samples: int = 2**14):
    """Simulate, fit every candidate (the bmli family over ``betas``), and return (participants, truth, FitResult)."""
    participants, truth = simulate(generators, participants_per_generator, num_tasks, num_trials, lapse, condition,
                                   bmli_weights, backend, seed)
    weights = {beta: bmli_weights[beta] for beta in betas} if "bmli" in candidates else None
    probs = model_probabilities(participants, candidates, condition, weights, backend, exact_samples)
    return participants, truth, fit_participants(participants, probs, candidates, fit_lapse)


def confusion(truth: Sequence, result: FitResult) -> tuple[list[str], np.ndarray]:
    """(row labels, ``[generators, candidates]`` counts) of generator vs assigned model."""
    labels = list(dict.fromkeys(generator_label(g) for g in truth))
    counts = np.zeros((len(labels), len(result.models)), int)
    for generator, assigned in zip(truth, result.assigned):
        counts[labels.index(generator_label(generator)), result.models.index(assigned)] += 1
    return labels, counts


def accuracy(truth: Sequence, result: FitResult) -> float:
    """Share of participants assigned to their generator's family."""
    return float(np.mean([family(g) == a for g, a in zip(truth, result.assigned)]))


def beta_recovery(truth: Sequence, result: FitResult) -> tuple[list[float], np.ndarray, list[float]]:
    """For the bmli-generated participants: (generating betas, ``[generating, fitted]`` counts over
    ``result.betas``, mean fitted beta per generating beta)."""
    generating = sorted({g[1] for g in truth if isinstance(g, tuple)})
    counts = np.zeros((len(generating), len(result.betas)), int)
    means = []
    for r, beta in enumerate(generating):
        fitted = [result.best_beta[i] for i, g in enumerate(truth) if isinstance(g, tuple) and g[1] == beta]
        for value in fitted:
            counts[r, result.betas.index(value)] += 1
        means.append(float(np.mean(fitted)))
    return generating, counts, means


def spearman(truth: Sequence, result: FitResult) -> float:
    """Spearman rank correlation of generating and fitted beta over the bmli-generated participants (NaN if
    either is constant)."""
    from scipy import stats

    pairs = [(g[1], result.best_beta[i]) for i, g in enumerate(truth) if isinstance(g, tuple)]
    if len(pairs) < 2 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return float("nan")
    return float(stats.spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic)


def format_recovery(truth: Sequence, result: FitResult, settings: str) -> str:
    """Markdown: the confusion matrix, the assignment accuracy, the beta confusion and the mean fitted betas."""
    labels, counts = confusion(truth, result)
    lines = ["# Model recovery: heuristics fitting", "", settings, "",
             f"Correct assignment (lowest BIC = the generator's family): **{accuracy(truth, result):.1%}** "
             f"of {len(truth)} simulated participants.", "",
             "| generated by \\ assigned to | " + " | ".join(result.models) + " |",
             "|---|" + "---|" * len(result.models)]
    lines += [f"| {label} | " + " | ".join(str(c) for c in row) + " |" for label, row in zip(labels, counts)]
    generating, beta_counts, means = beta_recovery(truth, result)
    if generating and result.betas:
        lines += ["", "Beta recovery (bmli-generated participants; rows: generating beta, columns: fitted beta):", "",
                  "| generating \\ fitted | " + " | ".join(f"{b:g}" for b in result.betas) + " | mean fitted |",
                  "|---|" + "---|" * (len(result.betas) + 1)]
        lines += [f"| {beta:g} | " + " | ".join(str(c) for c in row) + f" | {mean:.4f} |"
                  for beta, row, mean in zip(generating, beta_counts, means)]
        ordered = all(a < b for a, b in zip(means, means[1:]))
        lines += ["", f"Mean fitted beta increases with the generating beta: {'yes' if ordered else 'NO'}; "
                      f"Spearman correlation {spearman(truth, result):.3f}."]
    return "\n".join(lines) + "\n"


def plot_recovery(truth: Sequence, result: FitResult):
    """Left: the confusion matrix (row-normalised); right: generating vs fitted beta (counts)."""
    from cogmeta.figures import _pyplot

    plt = _pyplot()
    labels, counts = confusion(truth, result)
    generating, beta_counts, _ = beta_recovery(truth, result)
    panels = 2 if generating and result.betas else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2), squeeze=False)
    for ax, matrix, rows, columns, title in [(axes[0][0], counts, labels, list(result.models), "assigned model (lowest BIC)"),
                                             *([(axes[0][1], beta_counts, [f"{b:g}" for b in generating],
                                                 [f"{b:g}" for b in result.betas], "fitted beta")] if panels == 2 else [])]:
        share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (r, c), value in np.ndenumerate(matrix):
            ax.text(c, r, str(value), ha="center", va="center", color="white" if share[r, c] > 0.5 else "black")
        ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel(title)
        ax.set_ylabel("generated by" if ax is axes[0][0] else "generating beta")
    axes[0][0].set_title(f"model recovery: {accuracy(truth, result):.0%} correct")
    if panels == 2:
        axes[0][1].set_title("beta recovery (bmli-generated)")
    fig.tight_layout()
    return fig


def run_recovery(backend: str, condition: str = "ranking", betas: Sequence[float] = (0.0, 0.01, 0.03),
                 generators: Sequence[str] = DEFAULT_GENERATORS, candidates: Sequence[str] = DEFAULT_CANDIDATES,
                 participants_per_generator: int = 20, num_tasks: int = 30, num_trials: int = 10, lapse: float = 0.1,
                 weights_folder=None, out=None, fit_lapse: bool = True, exact_samples: int = 2**14, seed: int = 0,
                 base=None, finetune_steps: int | None = None, figures: bool = True,
                 echo=print) -> tuple[list, FitResult]:
    """The recovery study (module doc): simulate, fit, write ``simulated.csv``, ``recovery.csv`` (fit rows with
    the generator), ``recovery.md`` (confusion matrix, beta recovery, fit summary) and the figures into ``out``
    (default ``runs/heuristics-recovery-<backend>``). Returns (generators per participant, FitResult)."""
    from pathlib import Path

    from cogmeta._validation import require_choice, require_int
    from cogmeta.experiments.heuristics_fitting import (
        check_betas,
        check_models,
        configure_backend,
        load_or_train_weights,
        write_fit,
    )
    from cogmeta.figures import save_figure
    from cogmeta.fitting.participants import write_participants
    from cogmeta.io import atomic_write_text
    from cogmeta.tasks.paired_comparison import CONDITIONS

    condition = require_choice("", "condition", condition, CONDITIONS)
    betas, candidates = check_betas(betas), check_models(candidates)
    check_models(generators)
    count = require_int("", "participants", participants_per_generator, 1)
    tasks, trials = require_int("", "tasks", num_tasks, 1), require_int("", "trials", num_trials, 1)
    generator_list = expand_generators(generators, betas)
    weights = None
    if "bmli" in candidates or "bmli" in generators:
        configure_backend(backend)
        folder = Path("runs") / "heuristics-bmli-weights" if weights_folder is None else weights_folder
        weights = load_or_train_weights(folder, condition, betas, backend, base, finetune_steps=finetune_steps,
                                        echo=echo)
    echo(f"heuristics-fit --simulate: {count} participant(s) x {len(generator_list)} generator(s), {tasks} tasks x "
         f"{trials} trials, lapse {lapse:g}, condition {condition}; fitting {', '.join(candidates)} with {backend}")
    participants, truth = simulate(generator_list, count, tasks, trials, lapse, condition, weights, backend, seed)
    model_weights = {beta: weights[beta] for beta in betas} if "bmli" in candidates else None
    probs = model_probabilities(participants, candidates, condition, model_weights, backend, exact_samples)
    result = fit_participants(participants, probs, candidates, fit_lapse)
    out = Path("runs") / f"heuristics-recovery-{backend}" if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = [generator_label(g) for g in truth]
    write_participants(out / "simulated.csv", participants, {"generator": labels})
    settings = (f"Simulated: {count} participants per generator, {tasks} tasks x {trials} trials each "
                f"(condition {condition}), lapse rate {lapse:g}, seed {seed}; fitted with {backend}: "
                f"{', '.join(candidates)}, lapse {'fitted' if fit_lapse else 'not fitted'}, beta grid "
                f"{', '.join(f'{b:g}' for b in betas)}.")
    report = format_recovery(truth, result, settings)
    fit_summary = write_fit(result, out, "Fits of the simulated participants", figures, echo,
                            {"generator": labels}, name="recovery")
    atomic_write_text(out / "recovery.md", report + "\n" + fit_summary)
    if figures:
        echo(f"figure: {save_figure(plot_recovery(truth, result), out / 'heuristics-recovery-confusion.png')}")
    echo(report)
    return truth, result
