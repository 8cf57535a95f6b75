"""The held-out check of ``train.until_kl``, run by the trainer between its steps (in JAX inside the compiled call).

``cogmeta train --until-kl TARGET`` stops at the first step s, a multiple of ``train.until_kl_every``, at which the
model's mean exact KL on the run's fixed held-out set falls below TARGET:

    KL(s) = 1/(T N) sum_{t < T} sum_{i < N} KL( p_Bayes(x_{t+1} | x_{i,1:t}) || q_s(x_{t+1} | x_{i,1:t}) ) < TARGET

over the ``N = train.eval_tasks`` tasks of :func:`held_out_set` (the set logged as ``heldout_kl``). The two trainers
run it with :meth:`Trainer.run_checked` (``<backend>_impl.trainer``), each on its framework's arrays in the run's
dtype (``<backend>_impl.heads.mean_kl``): PyTorch between its steps, JAX inside the compiled call, whose steps stop
at the check that reaches the target instead of returning to Python for every check (docs/performance.md,
"The checks inside the training call"). This module holds what both need and neither computes itself: the
held-out observations and their exact Bayes predictive, in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from cogmeta.config import RunConfig
from cogmeta.evaluation import HELD_OUT_SEED, held_out_observations


def held_out_set(config: RunConfig) -> np.ndarray:
    """The run's fixed held-out observations ``[T, train.eval_tasks, 1]`` (float64): the ``heldout_kl`` rows of
    ``metrics.csv`` and the checks of ``train.until_kl`` score the model on them."""
    return held_out_observations(config.task, config.train.eval_tasks, HELD_OUT_SEED + 1)


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class HeldOutCheck:
    """The check a trainer runs every ``every`` steps, and the target that ends the run.

    Attributes:
        observations: ``[T, N, 1]`` float64, :func:`held_out_set`.
        exact: the exact Bayes predictive of every prefix (``task.posterior_predictive``), float64 ``[T, N]`` each:
            ``mean`` and ``std`` (gaussian) or ``prob`` (bernoulli).
        every: steps between checks; a check follows every step whose count is a multiple of it.
        target: nats; the first check below it ends the run.
    """

    observations: np.ndarray
    exact: Mapping[str, np.ndarray]
    every: int
    target: float

    @classmethod
    def of(cls, config: RunConfig) -> "HeldOutCheck | None":
        """The check of ``config.train.until_kl`` (None without a target)."""
        if config.train.until_kl is None:
            return None
        observations = held_out_set(config)
        return cls(observations, config.task.posterior_predictive(observations), config.train.until_kl_every,
                   float(config.train.until_kl))

    def check_steps(self, start: int, done: int) -> list[int]:
        """The steps in ``(start, start + done]`` after which a check runs: the multiples of :attr:`every`."""
        first = (start // self.every + 1) * self.every
        return list(range(first, start + done + 1, self.every))


__all__ = ["HeldOutCheck", "held_out_set"]
