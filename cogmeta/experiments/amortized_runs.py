"""The ``amortized`` model family's run folders: one simulated participant of learning to infer (Dasgupta et al. 2020).

    WORKLOAD                         the family's hooks of the one run-folder loop (``cogmeta.training.train``, which
                                     finds them through ``cogmeta.families``): trainer, held-out score, figures
    score_run(run, backend, count)   the run's held-out KL to the exact posterior

A run is one participant: an amortized posterior q(B | query) = sigmoid(f(x)) (``*_impl/amortized.py``,
Linear(6, H) -> RBF -> Linear(H, 2)) trained by plain SGD (or Adam) on one query per update, loss
KL(p(B | query) || q) with p the exact posterior (its log-odds logit(p) + n logit(l)). Its queries are the
task's (``cogmeta.tasks.urn_tasks``), drawn for the whole run when it starts. ``cogmeta experiment
learning-to-infer`` trains populations of such participants together (``train_population``) and regresses
their answers; participant s of a population is the run of the same task with the population's seed + s
(``urn_queries``) or with ``participant = s`` (``urn_study``).

Canonical tensors (torch ``state_dict`` layout, H units, 6 query features):

    input.weight (H, 6)   input.bias (H,)   rbf.beta (H,)   rbf.centre (H,)   output.weight (2, H)   output.bias (2,)

Framework-free: a backend's ``amortized`` module is imported only when used (``cogmeta.backends``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cogmeta.config import RunConfig
from cogmeta.runs import RunDir

#: Seed of the held-out queries of an ``urn_queries`` run (``urn_study`` runs are held out on their own
#: study's queries, as the paper tests its participants).
CHECK_SEED = 2_020_0427


def parameter_shapes(config: RunConfig) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape of the participant of ``config`` (the layout in the module docstring)."""
    from cogmeta.experiments.amortized_spec import parameter_shapes as shapes

    return shapes(config.model.hidden_size)


def backend_module(backend: str):
    """``torch_impl.amortized`` or ``jax_impl.amortized`` (``make_trainer``, ``predict_log_odds``, ...)."""
    from cogmeta.backends import load_module

    return load_module(backend, "amortized")


def heldout_queries(config: RunConfig, num_tasks: int, seed: int = CHECK_SEED):
    """The queries a run is scored on (numpy float64): ``num_tasks`` fresh queries of an ``urn_queries`` run's
    distribution (drawn from ``seed``), or an ``urn_study`` participant's own study queries."""
    return _heldout_queries(config.task, config.train.seed, num_tasks, seed)


@functools.lru_cache(maxsize=4)
def _heldout_queries(task, run_seed: int, num_tasks: int, seed: int):
    if task.name == "urn_study":
        return task.queries(run_seed)[1]
    return task.distribution().sample(np.random.default_rng(seed), num_tasks, np.float64)


def model_log_odds(config: RunConfig, weights, backend: str, inputs: np.ndarray) -> np.ndarray:
    """The participant's posterior log-odds ``[Q]`` on ``inputs [Q, 6]`` (float64)."""
    stacked = {name: np.asarray(value)[None] for name, value in weights.items()}
    return backend_module(backend).predict_log_odds(stacked, inputs, config.train.dtype)[0]


def bernoulli_kl_from_log_odds(target: np.ndarray, model: np.ndarray) -> np.ndarray:
    """KL(Bern(sigmoid(target)) || Bern(sigmoid(model))) elementwise, from log-odds (no probability is rounded
    to 0 or 1): p (log sigma(a) - log sigma(b)) + (1 - p) (log sigma(-a) - log sigma(-b))."""
    target, model = np.asarray(target, np.float64), np.asarray(model, np.float64)
    p = 1.0 / (1.0 + np.exp(-target))
    log_sigmoid = lambda x: -np.logaddexp(0.0, -x)  # noqa: E731
    return p * (log_sigmoid(target) - log_sigmoid(model)) + (1 - p) * (log_sigmoid(-target) - log_sigmoid(-model))


def heldout_kl(config: RunConfig, weights, backend: str, num_tasks: int, seed: int = CHECK_SEED) -> float:
    """Mean KL(exact posterior || participant) over :func:`heldout_queries`."""
    queries = heldout_queries(config, num_tasks, seed)
    model = model_log_odds(config, weights, backend, np.asarray(queries.inputs))
    return float(np.mean(bernoulli_kl_from_log_odds(queries.log_odds, model)))


class AmortizedWorkload:
    """The run-folder loop's hooks (``cogmeta.training.Workload``): the backend's trainer on one participant,
    the held-out KL to the exact posterior, a learning curve."""

    metric = "heldout_kl"

    def make_trainer(self, config: RunConfig, checkpoint, devices: int | None, backend: str):
        if devices not in (None, 1):
            raise ValueError(f"the amortized family trains one participant on one device (got --devices {devices}); "
                             f"train many with `cogmeta sweep` or `cogmeta experiment learning-to-infer`")
        return backend_module(backend).make_trainer(config, checkpoint)

    def held_out(self, config: RunConfig, backend: str) -> Callable[[Any], float]:
        return lambda trainer: heldout_kl(config, trainer.weights(), backend, config.train.eval_tasks)

    def score_weights(self, config: RunConfig, weights, backend: str, num_tasks: int) -> float:
        return heldout_kl(config, weights, backend, num_tasks)

    def write_figures(self, run: RunDir, config: RunConfig, weights, backend: str) -> None:
        from cogmeta.figures import save_learning_curve

        save_learning_curve(run, plot_training, config)


WORKLOAD = AmortizedWorkload()


def plot_training(rows, config: RunConfig):
    """The training KL (window means) and the held-out KL to the exact posterior over the run."""
    from cogmeta.figures import figure_grid
    from cogmeta.metrics_log import metric_series

    fig, ax = figure_grid(1, 1, (6, 3.6))
    for name, label, style in (("loss", "training KL (window mean)", {}),
                               ("heldout_kl", "held-out KL", {"marker": "o", "ms": 3})):
        steps, values = metric_series(rows, name)
        ax.plot(steps, values, lw=1.2, label=label, **style)
    ax.set_yscale("log")
    ax.set_xlabel("update (one query each)")
    ax.set_ylabel("KL(exact posterior || model) (nats)")
    ax.set_title(f"{config.task.name}, hidden {config.model.hidden_size}")
    ax.legend(frameon=False)
    return fig



def score_run(run_dir: str | Path, backend: str, count: int) -> dict[str, float]:
    """The run's mean held-out KL to the exact posterior on ``count`` queries (``urn_study``: its study queries)."""
    from cogmeta.weights import load_weights

    run = RunDir.at(run_dir)
    config = RunConfig.load(run.config)
    return {"heldout_kl": heldout_kl(config, load_weights(run.weights, config), backend, count)}


__all__ = ["AmortizedWorkload", "CHECK_SEED", "WORKLOAD", "backend_module", "bernoulli_kl_from_log_odds",
           "heldout_kl", "heldout_queries", "model_log_odds", "parameter_shapes", "plot_training", "score_run"]
