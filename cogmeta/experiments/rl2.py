"""The ``rl2`` model family's run folders: an RL² agent meta-trained by A2C on bandit episodes.

    WORKLOAD                         the family's hooks of the one run-folder loop (``cogmeta.training.train``, which
                                     finds them through ``cogmeta.families``): trainer, held-out score, figures
    score_run(run, backend, count)   a finished run's expected reward and regret on held-out bandits (the table
                                     beside every classic policy: ``cogmeta.bandit_evaluation.evaluate``)

The agent (``torch_impl.rl2`` / ``jax_impl.rl2``) reads, at trial t of an episode of n trials on k arms, the
input ``[onehot(a_{t-1}), r_{t-1}, t / n]`` and outputs the policy logits over the k arms and a value. Its
canonical tensors (torch ``state_dict`` layout, I = k + 2, G = 3 for a GRU and 4 for an LSTM):

    core.weight_ih_l{j}  (G*H, I_j)   I_0 = k + 2, I_j = H
    core.weight_hh_l{j}  (G*H, H)
    core.bias_ih_l{j}    (G*H,)
    core.bias_hh_l{j}    (G*H,)
    policy.weight        (k, H)
    policy.bias          (k,)
    value.weight         (1, H)
    value.bias           (1,)

Framework-free: a backend's ``rl2`` module is imported only when used (``cogmeta.backends.load_module``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cogmeta.config import RunConfig
from cogmeta.runs import RunDir

#: Seed of the held-out bandits of the training loop's periodic check (``train.eval_tasks`` of them).
CHECK_SEED = 2_018_0147


def input_size(config: RunConfig) -> int:
    """k + 2: the previous action one-hot, the previous reward and the trial's time t / n."""
    return config.task.arms + 2


def parameter_shapes(config: RunConfig) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape of the RL² agent of ``config`` (the layout in the module docstring)."""
    from cogmeta.weights import core_shapes

    hidden, arms = config.model.hidden_size, config.task.arms
    shapes = core_shapes(config, input_size(config))
    shapes["policy.weight"], shapes["policy.bias"] = (arms, hidden), (arms,)
    shapes["value.weight"], shapes["value.bias"] = (1, hidden), (1,)
    return shapes


def backend_module(backend: str):
    """``torch_impl.rl2`` or ``jax_impl.rl2`` (``make_trainer``, ``play``, ``init_weights``)."""
    from cogmeta.backends import load_module

    return load_module(backend, "rl2")


class RL2Workload:
    """The run-folder loop's hooks (``cogmeta.training.Workload``): the backend's RL² trainer (its episodes split
    over devices as the tutorial's batch is: ``--devices N``, JAX's default split over a CPU's cores, ``torchrun``),
    the mean expected total reward ``sum_t p_{a_t}`` of the policy on fixed held-out bandits, and the
    figures of ``cogmeta.bandit_evaluation``."""

    metric = "heldout_reward"

    def make_trainer(self, config: RunConfig, checkpoint, devices: int | None, backend: str):
        return backend_module(backend).make_trainer(config, checkpoint, devices)

    def held_out(self, config: RunConfig, backend: str) -> Callable[[Any], float]:
        return lambda trainer: self.score_weights(config, trainer.weights(), backend, config.train.eval_tasks)

    def score_weights(self, config: RunConfig, weights, backend: str, num_tasks: int) -> float:
        from cogmeta.bandit_evaluation import model_actions
        from cogmeta.baselines.bandit_policies import total_expected_reward

        batch = _check_batch(config, num_tasks)
        return float(np.mean(total_expected_reward(batch, model_actions(config, weights, backend, batch))))

    def write_figures(self, run: RunDir, config: RunConfig, weights, backend: str) -> None:
        from cogmeta.bandit_evaluation import evaluate, exact_optimum, plot_training, write_figures
        from cogmeta.figures import save_figure
        from cogmeta.metrics_log import read_metrics

        run.figures.mkdir(parents=True, exist_ok=True)
        save_figure(plot_training(read_metrics(run.metrics), exact_optimum(config.task)),
                    run.figures / "learning_curve.png")
        evaluation = evaluate(config, weights, backend, num_tasks=max(config.train.eval_tasks, 2))
        write_figures(evaluation, run.figures, backend)


WORKLOAD = RL2Workload()


@functools.lru_cache(maxsize=4)
def _check_batch(config: RunConfig, num_tasks: int):
    """The held-out bandits of the periodic check (drawn once per config and size)."""
    return config.task.sample(np.random.default_rng(CHECK_SEED), num_tasks, np.float64)



def score_run(run_dir: str | Path, backend: str, count: int) -> dict[str, float]:
    """The run's final score on ``count`` held-out bandits: ``{"mean_reward": ..., "regret": ...}`` (expected
    total reward of the sampled policy, and its expected regret against the better arm)."""
    from cogmeta.bandit_evaluation import evaluate
    from cogmeta.weights import load_weights

    run = RunDir.at(run_dir)
    config = RunConfig.load(run.config)
    evaluation = evaluate(config, load_weights(run.weights, config), backend, num_tasks=count, baselines=False)
    row = evaluation.row("meta-learner")
    return {"mean_reward": row.mean_reward, "regret": row.regret}


__all__ = ["CHECK_SEED", "RL2Workload", "WORKLOAD", "backend_module", "input_size", "parameter_shapes", "score_run"]
