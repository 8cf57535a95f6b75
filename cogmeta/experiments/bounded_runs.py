"""The ``bounded_gru`` model family's run folders: the sparse-variational GRU of Binz et al. (2022).

    WORKLOAD                         the family's hooks of the one run-folder loop (``cogmeta.training.train``, which
                                     finds them through ``cogmeta.families``): trainer, held-out score, figures
    score_run(run, backend, count)   held-out choice NLL and accuracy of a finished run

A run trains ``loss = NLL + w_k * KL`` on paired comparisons of one cue condition (``config.task``), with the
bound of ``config.bound`` (``cogmeta.config.BoundConfig``). The paper's recipe is two runs: one at beta = 0
from fresh weights, then one per beta > 0 that starts from it (``bound.start_from``) with every log sigma
reset to -5 and a fresh Adam state. ``cogmeta.experiments.heuristics`` trains a whole grid of such runs
(conditions x betas x seeds) by the backend's engine and writes each as a run folder of this family.

Canonical tensors (torch ``state_dict`` layout; K cues, H units; every layer ``LinearSVDO``):

    initial_state                      (H,)
    ih.weight, ih.log_sigma            (3H, K + 2)     ih.bias (3H,)
    hh.weight, hh.log_sigma            (3H, H)         hh.bias (3H,)
    mu.weight, mu.log_sigma            (K, H)          mu.bias (K,)
    logscale.weight, logscale.log_sigma (K, H)         logscale.bias (K,)

Framework-free: a backend's ``bounded_gru`` module is imported only when used (``cogmeta.backends``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint
from cogmeta.runs import RunDir

#: Seed of the held-out tasks of the training loop's periodic check (``train.eval_tasks`` of them).
CHECK_SEED = 2_022_0603
#: The recurrent layers and read-outs, each sparse-variational (weight, log_sigma, bias).
LAYERS = ("ih", "hh", "mu", "logscale")


def parameter_shapes(config: RunConfig) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape of the bounded GRU of ``config`` (the layout in the module docstring)."""
    k, h = config.task.num_cues, config.model.hidden_size
    sizes = {"ih": (3 * h, k + 2), "hh": (3 * h, h), "mu": (k, h), "logscale": (k, h)}
    shapes: dict[str, tuple[int, ...]] = {"initial_state": (h,)}
    for layer, shape in sizes.items():
        shapes.update({f"{layer}.weight": shape, f"{layer}.log_sigma": shape, f"{layer}.bias": (shape[0],)})
    return shapes


def backend_module(backend: str):
    """``torch_impl.bounded_gru`` or ``jax_impl.bounded_gru`` (``make_trainer``, ``predict``, ...)."""
    from cogmeta.backends import load_module

    return load_module(backend, "bounded_gru")


def reset_log_sigma(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical ``weights`` with every ``<layer>.log_sigma`` set to -5 (a new dict): how the paper's
    fine-tuning starts from the beta = 0 model."""
    from cogmeta.sparse_variational import LOG_SIGMA_INIT

    return {name: np.full_like(value, LOG_SIGMA_INIT) if name.endswith(".log_sigma") else value
            for name, value in weights.items()}


def start_weights(config: RunConfig) -> dict[str, np.ndarray] | None:
    """The weights that ``config.bound.start_from`` names, log sigma reset (None when it names nothing).

    ``start_from`` is a run folder (its ``weights.safetensors``) or a weights file; its tensors must have the
    shapes of ``config``'s model and its dtype (``cogmeta.weights.load_weights``)."""
    from cogmeta.weights import load_weights

    source = config.bound.start_from
    if source is None:
        return None
    path = Path(source)
    if path.is_dir():
        path = RunDir.at(path).weights
    if not path.is_file():
        raise FileNotFoundError(f"bound.start_from: no weights at {path}; give a finished run folder of the bounded_gru "
                                f"family (e.g. the beta = 0 run) or its weights.safetensors")
    return reset_log_sigma(load_weights(path, config))


def start_checkpoint(config: RunConfig) -> Checkpoint | None:
    """Step 0 at :func:`start_weights` with Adam's moments at zero, which is what a fresh optimizer holds (so a
    fine-tuning run starts exactly as the engine's ``engine_start`` does); None without ``start_from``."""
    weights = start_weights(config)
    if weights is None:
        return None
    zeros = {name: np.zeros_like(value) for name, value in weights.items()}
    return Checkpoint(0, weights, zeros, dict(zeros), framework="")


def heldout_batch(config: RunConfig, num_tasks: int, seed: int = CHECK_SEED):
    """``num_tasks`` held-out comparisons of the run's condition (numpy, float64, fixed ``seed``)."""
    return _heldout_batch(config.task, num_tasks, seed)


@functools.lru_cache(maxsize=4)
def _heldout_batch(task, num_tasks: int, seed: int):
    return task.sample(np.random.default_rng(seed), num_tasks, np.float64)


def choice_scores(config: RunConfig, weights, backend: str, batch) -> dict[str, float]:
    """Mean choice NLL ``-log p(y_t)`` and mean probability of the right choice of the pruned model on ``batch``."""
    _, prob = backend_module(backend).predict(weights, batch.cues, batch.targets, config.model.hidden_size, "pruned")
    right = np.clip(np.where(batch.targets == 1, prob, 1 - prob), 1e-12, 1.0)
    return {"nll": float(-np.mean(np.log(right))), "accuracy": float(np.mean(right))}


class BoundedWorkload:
    """The run-folder loop's hooks (``cogmeta.training.Workload``): the backend's trainer on one device (started
    from ``bound.start_from`` when given), the held-out choice NLL of the pruned model, a learning curve."""

    metric = "heldout_nll"

    def make_trainer(self, config: RunConfig, checkpoint, devices: int | None, backend: str):
        if devices not in (None, 1):
            raise ValueError(f"the bounded_gru family trains on one device (got --devices {devices}); train seeds or "
                             f"conditions side by side with `cogmeta sweep` or `cogmeta experiment heuristics`")
        if checkpoint is None:
            checkpoint = start_checkpoint(config)
        return backend_module(backend).make_trainer(config, checkpoint)

    def held_out(self, config: RunConfig, backend: str) -> Callable[[Any], float]:
        return lambda trainer: self.score_weights(config, trainer.weights(), backend, config.train.eval_tasks)

    def score_weights(self, config: RunConfig, weights, backend: str, num_tasks: int) -> float:
        return choice_scores(config, weights, backend, heldout_batch(config, num_tasks))["nll"]

    def write_figures(self, run: RunDir, config: RunConfig, weights, backend: str) -> None:
        from cogmeta.figures import save_learning_curve

        save_learning_curve(run, plot_training, config)


WORKLOAD = BoundedWorkload()


def plot_training(rows, config: RunConfig):
    """Left: the training NLL and the held-out NLL; right: the KL term (the description length, nats)."""
    from cogmeta.figures import figure_grid
    from cogmeta.metrics_log import metric_series

    fig, (ax_nll, ax_kl) = figure_grid(1, 2, (10, 3.6))
    for name, label, style in (("nll", "training NLL (window mean)", {}),
                               ("heldout_nll", "held-out NLL (pruned model)", {"marker": "o", "ms": 3})):
        steps, values = metric_series(rows, name)
        ax_nll.plot(steps, values, lw=1.2, label=label, **style)
    ax_nll.set_xlabel("update")
    ax_nll.set_ylabel("choice NLL per trial (nats)")
    ax_nll.legend(frameon=False)
    steps, kl = metric_series(rows, "kl")
    ax_kl.plot(steps, kl, lw=1.2, color="C2")
    ax_kl.set_xlabel("update")
    ax_kl.set_ylabel("KL(q(W) || p(W)) (nats)")
    ax_kl.set_title(f"{config.task.condition}, beta {config.bound.beta:g}")
    return fig



def score_run(run_dir: str | Path, backend: str, count: int) -> dict[str, float]:
    """The run's held-out choice NLL and accuracy on ``count`` tasks of its condition."""
    from cogmeta.weights import load_weights

    run = RunDir.at(run_dir)
    config = RunConfig.load(run.config)
    return choice_scores(config, load_weights(run.weights, config), backend, heldout_batch(config, count))


__all__ = ["CHECK_SEED", "LAYERS", "BoundedWorkload", "WORKLOAD", "backend_module", "choice_scores", "heldout_batch",
           "parameter_shapes", "plot_training", "reset_log_sigma", "score_run", "start_checkpoint", "start_weights"]
