"""Figures: learning curves, the model's vs the Bayes-optimal predictive, KL per prefix length.

Every ``plot_*`` function takes an optional matplotlib ``ax`` (or ``axes``) and returns the Figure, so
it can be composed into other figures; ``write_*`` functions save PNGs into a run folder. matplotlib
is imported with the non-interactive Agg backend unless one is already chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from cogmeta.config import RunConfig
from cogmeta.evaluation import Evaluation, held_out_observations
from cogmeta.metrics_log import metric_series, read_metrics
from cogmeta.runs import RunDir
from cogmeta.tasks import Task

#: The tutorial's figure shows 16 test tasks.
FIGURE_TASKS = 16
_FIGURE_SEED = 7


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg") and not _interactive():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: Every figure's margins, inches: room for tick labels and an axis label left and below, for a title above, and
#: between panels. Fixed, not matplotlib's constrained layout, which measures every text by drawing the figure once
#: more before saving it: drawing and saving the two figures of every ``cogmeta train`` took 1.02-1.15 s with it and
#: 0.57-0.71 s without (medians of three alternating rounds, 2-core VM, 2026-12-07), a sixth of a short run's process.
MARGINS_INCHES = {"left": 1.0, "right": 0.3, "bottom": 0.6, "top": 0.4, "between_columns": 1.0, "between_rows": 0.75}
#: Extra room above for a figure title (``suptitle``), inches.
SUPTITLE_INCHES = 0.35


def figure_grid(rows: int = 1, cols: int = 1, figsize: tuple[float, float] = (6.4, 4.8), *, suptitle: bool = False,
                squeeze: bool = True):
    """``plt.subplots(rows, cols, figsize=figsize)`` laid out with :data:`MARGINS_INCHES` (and
    :data:`SUPTITLE_INCHES` on top where the figure gets a ``suptitle``): ``(fig, axes)`` as ``plt.subplots``."""
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=figsize, squeeze=squeeze)
    width, height = figsize
    margin = MARGINS_INCHES
    top = margin["top"] + (SUPTITLE_INCHES if suptitle else 0.0)
    axis_width = (width - margin["left"] - margin["right"] - (cols - 1) * margin["between_columns"]) / cols
    axis_height = (height - margin["bottom"] - top - (rows - 1) * margin["between_rows"]) / rows
    if axis_width <= 0 or axis_height <= 0:
        raise ValueError(f"a {width} x {height} inch figure has no room for {rows} x {cols} panels and their margins")
    fig.subplots_adjust(left=margin["left"] / width, right=1 - margin["right"] / width, bottom=margin["bottom"] / height,
                        top=1 - top / height, wspace=margin["between_columns"] / axis_width,
                        hspace=margin["between_rows"] / axis_height)
    return fig, axes


def _interactive() -> bool:
    import sys

    return hasattr(sys, "ps1") or "ipykernel" in sys.modules


def plot_learning_curve(rows: Sequence[tuple[int, str, float]], bayes_floor: float, ax=None):
    """Training loss against the Bayes-optimal floor, and the exact held-out KL on a log scale.

    Left: window means of the training loss with the floor E[NLL] averaged over t (by the tutorial's
    proof, loss - floor is the KL to Bayes up to sampling noise). Right (only when ``ax`` is None): the
    exact mean KL(Bayes || model) on a fixed held-out set (metric ``heldout_kl``).
    """
    steps, loss = (np.asarray(v) for v in metric_series(rows, "loss"))
    kl_steps, kl = (np.asarray(v) for v in metric_series(rows, "heldout_kl"))
    if ax is None:
        fig, (ax, ax_kl) = figure_grid(1, 2, (10, 3.6))
    else:
        fig, ax_kl = ax.figure, None
    ax.plot(steps, loss, color="C0", lw=1.2, label="training loss (window mean)")
    ax.axhline(bayes_floor, color="k", ls="--", lw=1, label=f"Bayes-optimal E[NLL] = {bayes_floor:.4f}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("NLL per prediction (nats)")
    if len(loss):
        settled = loss[len(loss) // 20 :] if len(loss) >= 20 else loss  # the first windows would squash the rest
        low, top = min(settled.min(), bayes_floor), settled.max()
        pad = 0.1 * (top - low + 1e-4)
        ax.set_ylim(low - pad, top + pad)
    ax.legend(frameon=False)
    ax.set_title("learning curve")
    if ax_kl is not None and len(kl):
        positive = kl > 0
        ax_kl.semilogy(kl_steps[positive], kl[positive], marker="o", ms=3, color="C1", lw=1.2)
        ax_kl.set_xlabel("optimizer step")
        ax_kl.set_ylabel("mean KL(Bayes || model) (nats)")
        ax_kl.set_title(f"held-out exact KL (final {kl[-1]:.1e})")
    return fig


def plot_predictive(
    task: Task,
    exact: Mapping[str, np.ndarray],
    model: Mapping[str, np.ndarray],
    steps: Sequence[int] | None = None,
    axes=None,
    label: str = "meta-learned",
):
    """The tutorial's before/after picture, per prefix length t.

    Gaussian tasks: predictive mean (x) against predictive std (y) for each task, the model's and the
    exact predictive joined by dashed lines. Coin tasks: the model's P(heads) against the exact one.

    Args:
        exact, model: predictive parameter dicts, ``[T, B]`` each.
        steps: which t to draw (default: up to four spread over 0..T-1).
        axes: one axis per step.
    """
    from matplotlib.collections import LineCollection

    length = next(iter(exact.values())).shape[0]
    steps = list(steps) if steps is not None else default_steps(length)
    if axes is None:
        fig, axes = figure_grid(1, len(steps), (3.3 * len(steps), 3.3), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for ax, t in zip(axes, steps):
        if task.family == "gaussian":
            xe, ye, xm, ym = exact["mean"][t], exact["std"][t], model["mean"][t], model["std"][t]
            # one collection, not a Line2D per task: the same picture, drawn several times faster
            segments = np.stack([np.stack([xe, ye], -1), np.stack([xm, ym], -1)], axis=1)  # [B, 2 ends, (x, y)]
            ax.add_collection(LineCollection(segments, linestyles="--", colors="0.6", linewidths=0.8))
            ax.scatter(xe, ye, color="k", s=18, label="Bayes-optimal", zorder=3)
            ax.scatter(xm, ym, color="C0", s=18, label=label, zorder=3)
            ax.set_xlabel("predictive mean")
            ax.set_ylabel("predictive std")
        else:
            pe, pm = exact["prob"][t], model["prob"][t]
            ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=0.8)
            ax.scatter(pe, pm, color="C0", s=18, label=label, zorder=3)
            ax.set_xlim(0, 1), ax.set_ylim(0, 1)
            ax.set_xlabel("Bayes-optimal P(heads)")
            ax.set_ylabel(f"{label} P(heads)")
        ax.set_title(f"t = {t} observation{'s' if t != 1 else ''}")
    axes[0].legend(frameon=False, fontsize=8)
    return fig


def default_steps(length: int) -> list[int]:
    """Up to four prefix lengths t spread over 0..length-1 (the panels of the predictive figure)."""
    return sorted(set(np.linspace(0, length - 1, min(4, length)).round().astype(int).tolist()))


def plot_kl_per_step(evaluation: Evaluation, ax=None, label: str | None = None):
    """Mean exact KL(Bayes || model) per prefix length t, with standard-error bars."""
    if ax is None:
        fig, ax = figure_grid(1, 1, (5, 3.4))
    fig = ax.figure
    t = np.arange(len(evaluation.kl))
    ax.errorbar(t, evaluation.kl, yerr=evaluation.kl_sem, marker="o", capsize=3, label=label)
    ax.set_xlabel("observations seen (t)")
    ax.set_ylabel("KL(Bayes || model) (nats)")
    ax.set_title(f"mean KL = {evaluation.mean_kl:.2e} nats ({evaluation.num_tasks} tasks)")
    ax.set_ylim(bottom=0)
    if label:
        ax.legend(frameon=False)
    return fig


def write_run_figures(run: RunDir, config: RunConfig, weights: Mapping[str, np.ndarray], backend: str) -> list[Path]:
    """Save ``learning_curve.png`` and ``predictive.png`` (before and after training) into ``RUN/figures``."""
    from cogmeta.backends import load_backend

    run.figures.mkdir(parents=True, exist_ok=True)
    written = []
    floor = float(np.mean(config.task.expected_nll()))
    fig = plot_learning_curve(read_metrics(run.metrics), floor)
    written.append(save_figure(fig, run.figures / "learning_curve.png"))

    module = load_backend(backend)
    observations = held_out_observations(config.task, FIGURE_TASKS, _FIGURE_SEED)
    exact = config.task.posterior_predictive(observations)
    before = module.predict(config, module.init_weights(config), observations)
    after = module.predict(config, weights, observations)
    steps = default_steps(config.task.sequence_length)
    fig, axes = figure_grid(2, len(steps), (3.3 * len(steps), 6.4), suptitle=True, squeeze=False)
    plot_predictive(config.task, exact, before, steps, axes=axes[0], label="before training")
    plot_predictive(config.task, exact, after, steps, axes=axes[1], label="after training")
    for column in range(len(steps)):  # same scale before and after, as in the tutorial's pair of figures
        for get, put in ((lambda a: a.get_xlim(), lambda a, v: a.set_xlim(v)), (lambda a: a.get_ylim(), lambda a, v: a.set_ylim(v))):
            limits = [get(axes[row, column]) for row in range(2)]
            for row in range(2):
                put(axes[row, column], (min(l[0] for l in limits), max(l[1] for l in limits)))
    fig.suptitle(f"{config.task.name}: meta-learned vs Bayes-optimal predictive ({backend}, {FIGURE_TASKS} held-out tasks)")
    written.append(save_figure(fig, run.figures / "predictive.png"))
    return written


def write_evaluation_figure(run: RunDir, evaluation: Evaluation, backend: str) -> Path:
    """Save ``kl_per_step-<backend>.png`` into ``RUN/figures``."""
    run.figures.mkdir(parents=True, exist_ok=True)
    fig = plot_kl_per_step(evaluation, label=backend)
    return save_figure(fig, run.figures / f"kl_per_step-{backend}.png")


def save_learning_curve(run: RunDir, plot, config: RunConfig) -> Path:
    """``RUN/figures/learning_curve.png`` of ``plot(rows, config)`` on the run's metrics log (the families whose
    workload draws its own learning curve: ``plot_training`` of the bounded GRU, the amortized participant)."""
    run.figures.mkdir(parents=True, exist_ok=True)
    return save_figure(plot(read_metrics(run.metrics), config), run.figures / "learning_curve.png")


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG atomically (temp file, then rename) and close it."""
    from cogmeta.io import atomic_write_with

    path = Path(path)
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    _pyplot().close(fig)
    return path
