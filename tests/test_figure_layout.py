"""``cogmeta.figures.figure_grid``: fixed margins in inches instead of matplotlib's constrained layout; every label of
the run figures must still lie inside the figure and clear of the neighbouring panels."""

from __future__ import annotations

import numpy as np
import pytest

from cogmeta import figures
from cogmeta.tasks import make_task

matplotlib = pytest.importorskip("matplotlib")


def _inches(box, fig):
    return np.asarray(box.extents) / fig.dpi  # display units are pixels at the figure's dpi


def _assert_labels_fit(fig):
    """Every axis' extent with its tick labels, axis labels and title inside the figure, and no two overlapping."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.get_size_inches()
    boxes = [_inches(ax.get_tightbbox(renderer), fig) for ax in fig.axes]
    for x0, y0, x1, y1 in boxes:
        assert x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height, (x0, y0, x1, y1, width, height)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    if fig._suptitle is not None:
        top_of_panels = max(box[3] for box in boxes)
        assert _inches(fig._suptitle.get_window_extent(renderer), fig)[1] >= top_of_panels


def test_the_panels_sit_at_the_margins_in_inches():
    fig, axes = figures.figure_grid(2, 3, (12.0, 6.0), suptitle=True)
    margin = figures.MARGINS_INCHES
    left, bottom, right, top = (np.asarray(axes[1, 0].get_position().extents) * [12, 6, 12, 6])
    assert left == pytest.approx(margin["left"]) and bottom == pytest.approx(margin["bottom"])
    next_left = axes[1, 1].get_position().x0 * 12
    assert next_left - right == pytest.approx(margin["between_columns"])
    upper_bottom = axes[0, 0].get_position().y0 * 6
    assert upper_bottom - top == pytest.approx(margin["between_rows"])
    assert 6 - axes[0, 2].get_position().y1 * 6 == pytest.approx(margin["top"] + figures.SUPTITLE_INCHES)
    assert 12 - axes[0, 2].get_position().x1 * 12 == pytest.approx(margin["right"])
    figures._pyplot().close(fig)


def test_a_figure_too_small_for_its_panels_is_refused():
    with pytest.raises(ValueError, match="no room"):
        figures.figure_grid(1, 8, (4.0, 3.0))


def test_the_learning_curve_labels_fit():
    steps = np.arange(100, 8001, 100)
    rows = [(int(s), "loss", 1.5675 + 0.3 / s) for s in steps] + [(int(s), "heldout_kl", 0.3 / s) for s in steps[::5]]
    fig = figures.plot_learning_curve(rows, 1.567470)
    _assert_labels_fit(fig)
    figures._pyplot().close(fig)


@pytest.mark.parametrize("name", ["gaussian", "coin"])
def test_the_predictive_figure_labels_fit(name):
    task = make_task(name)
    observations = task.sample(np.random.default_rng(0), figures.FIGURE_TASKS, np.float64).observations
    exact = task.posterior_predictive(observations)
    model = {key: value * 1.01 for key, value in exact.items()}
    steps = figures.default_steps(task.sequence_length)
    fig, axes = figures.figure_grid(2, len(steps), (3.3 * len(steps), 6.4), suptitle=True, squeeze=False)
    figures.plot_predictive(task, exact, model, steps, axes=axes[0], label="before training")
    figures.plot_predictive(task, exact, model, steps, axes=axes[1], label="after training")
    fig.suptitle(f"{name}: meta-learned vs Bayes-optimal predictive (jax, 16 held-out tasks)")
    _assert_labels_fit(fig)
    figures._pyplot().close(fig)


@pytest.mark.parametrize("scale", [1e-1, 1e-3, 2e-5])
def test_the_kl_per_step_labels_fit_at_any_scale(scale):
    from cogmeta.evaluation import Evaluation

    kl = scale * np.linspace(1.0, 7.0, 7)
    evaluation = Evaluation(kl=kl, kl_sem=kl / 10, model_nll=np.ones(7), bayes_nll=np.ones(7), expected_nll=np.ones(7),
                            num_tasks=20_000)
    fig = figures.plot_kl_per_step(evaluation, label="torch")
    _assert_labels_fit(fig)
    figures._pyplot().close(fig)


def test_the_bandit_learning_curve_labels_fit():
    from cogmeta.bandit_evaluation import plot_training

    updates = np.arange(100, 20_001, 100)
    rows = [(int(u), "loss", 0.5 - 1e-5 * u) for u in updates] + [(int(u), "heldout_reward", 60 + 4e-4 * u)
                                                                   for u in updates[::10]]
    fig = plot_training(rows, 64.92)
    _assert_labels_fit(fig)
    figures._pyplot().close(fig)
