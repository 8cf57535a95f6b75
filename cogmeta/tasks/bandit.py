"""Bernoulli multi-armed bandits for meta-reinforcement learning (Duan et al. 2016; Wang et al. 2018).

Two task families, both episodes of ``n = horizon`` trials on ``k = arms`` Bernoulli arms:

* :class:`BernoulliBanditTask` (Duan et al. 2016, "RL^2"): arm probabilities drawn independently,
  ``p_i ~ Beta(alpha, beta)``, i = 0..k-1;
* :class:`DependentBanditTask` (Wang et al. 2018, "prefrontal cortex as a meta-RL system"): two arms with
  ``p_0 ~ U(0, 1)`` and ``p_1 = 1 - p_0``.

Arms are numbered from 0 in code; the docs of the baselines call them arm 1 and arm 2 where the papers do.

Sampling follows the spec/sampler split of :mod:`cogmeta.tasks.base`: base noise, then a deterministic
transform. Everything random in an episode is in the noise, so that an episode is a deterministic function
of noise and actions and the numpy, PyTorch and JAX twins can be compared bit for bit:

* ``probabilities [B, k]``: for the independent bandit ``p = g_a / (g_a + g_b)`` with ``g_a ~ Gamma(alpha, 1)``,
  ``g_b ~ Gamma(beta, 1)`` (then ``p ~ Beta(alpha, beta)``); for the dependent bandit ``p = [u, 1 - u]``;
* ``reward_uniform [n, B, k]``: pulling arm ``a`` at trial ``t`` pays ``r = 1[reward_uniform[t, b, a] < p[b, a]]``
  (:func:`step`), so ``P(r = 1) = p[b, a]``;
* ``action_uniform [n, B]``: uniforms that a stochastic policy may spend to draw its action by inverse CDF
  (:func:`sample_action`), or a greedy policy to break ties.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, NamedTuple

import numpy as np

from cogmeta._validation import require_in_range, require_int
from cogmeta.tasks.base import NoiseSpec

# Below ~0.1 the gamma draws of a float32 sampler underflow to 0 often enough to give 0/0 (as for CoinTask).
_MIN_CONCENTRATION, _MAX_CONCENTRATION = 0.1, 1000.0
_MAX_ARMS, _MAX_HORIZON = 1000, 100_000


class BanditBatch(NamedTuple):
    """A batch of B bandit episodes of n trials on k arms (time-major).

    Attributes:
        probabilities: ``[B, k]``, the success probability p of each arm.
        reward_uniform: ``[n, B, k]``, U[0, 1) noise that decides every possible reward (see :func:`step`).
        action_uniform: ``[n, B]``, U[0, 1) noise for the policy's own randomness (see :func:`sample_action`).
    """

    probabilities: Any
    reward_uniform: Any
    action_uniform: Any


#: The axis of each :class:`BanditBatch` field that indexes the B episodes: what a data-parallel trainer splits
#: (``cogmeta.distributed.take_shard``; the A2C loss is a mean over episodes, so equal shards average to it).
EPISODE_AXES = BanditBatch(probabilities=0, reward_uniform=1, action_uniform=1)


def expected_best(batch: BanditBatch) -> np.ndarray:
    """``max_i p_i``, the expected reward per trial of an oracle that knows p: ``[B]``."""
    return np.max(np.asarray(batch.probabilities), axis=-1)


def step(batch: BanditBatch, trial: int, actions: np.ndarray) -> np.ndarray:
    """Rewards of pulling ``actions`` at ``trial``: ``r[b] = 1[reward_uniform[trial, b, a_b] < p[b, a_b]]``.

    Twins repeat it as: gather the chosen arm's uniform and probability along the last axis, compare with
    ``<``, cast the boolean to the batch's float dtype.

    Args:
        batch: the episodes.
        trial: t in [0, n).
        actions: ``[B]`` integer arm indices in [0, k).

    Returns:
        ``[B]`` rewards in {0, 1}, in the dtype of ``batch.reward_uniform``.
    """
    uniform = np.asarray(batch.reward_uniform)
    probabilities = np.asarray(batch.probabilities)
    horizon, size, arms = uniform.shape
    trial = require_int("step", "trial", trial, 0, horizon - 1)
    actions = np.asarray(actions)
    if actions.shape != (size,):
        raise ValueError(f"step: actions must have shape [B] = ({size},), got {actions.shape}")
    if not np.issubdtype(actions.dtype, np.integer):
        raise ValueError(f"step: actions must be an integer array (arm indices), got dtype {actions.dtype}")
    if actions.size and (actions.min() < 0 or actions.max() >= arms):
        bad = actions[(actions < 0) | (actions >= arms)]
        raise ValueError(f"step: actions must lie in [0, {arms - 1}] (arms={arms}), got {bad[:5].tolist()}")
    chosen = actions[:, None]
    u = np.take_along_axis(uniform[trial], chosen, axis=-1)[:, 0]
    p = np.take_along_axis(probabilities, chosen, axis=-1)[:, 0]
    return (u < p).astype(uniform.dtype)


def sample_action(probs: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Draw one action per row of ``probs`` by inverse CDF: the first index whose cumulative sum exceeds u.

    ``a = min(sum_i 1[cumsum(probs)_i <= u], k - 1)``. Counting the cumulative sums that do not exceed u
    is the same as finding the first that does, and needs no search; the ``min`` guards the last index
    against a cumulative sum that rounds to just below 1 while u is even closer to 1. Twins: ``cumsum``
    over the last axis, ``<=`` against ``u[:, None]``, integer sum over the last axis, clamp at ``k - 1``.

    Args:
        probs: ``[B, k]`` non-negative probabilities, each row summing to 1.
        uniform: ``[B]`` uniforms in [0, 1).

    Returns:
        ``[B]`` int64 actions in [0, k).
    """
    probs, uniform = np.asarray(probs), np.asarray(uniform)
    if probs.ndim != 2 or uniform.shape != probs.shape[:1]:
        raise ValueError(f"sample_action: probs must be [B, k] and uniform [B], got {probs.shape} and {uniform.shape}")
    cdf = np.cumsum(probs, axis=-1)
    count = np.sum(cdf <= uniform[:, None], axis=-1)
    return np.minimum(count, probs.shape[-1] - 1).astype(np.int64)


def _common_noise(horizon: int, batch_size: int, arms: int) -> dict[str, NoiseSpec]:
    return {
        "reward_uniform": NoiseSpec("uniform", (horizon, batch_size, arms)),
        "action_uniform": NoiseSpec("uniform", (horizon, batch_size)),
    }


@dataclass(frozen=True)
class BernoulliBanditTask:
    """k-armed Bernoulli bandit with independent ``p_i ~ Beta(alpha, beta)`` (Duan et al. 2016 use Beta(1, 1)).

    Attributes:
        arms: k in [2, 1000].
        horizon: n in [1, 100000], trials per episode.
        alpha: Beta prior pseudo-count of successes, in [0.1, 1000].
        beta: Beta prior pseudo-count of failures, in [0.1, 1000].
    """

    name: ClassVar[str] = "bandit"

    arms: int = 2
    horizon: int = 100
    alpha: float = 1.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        object.__setattr__(self, "arms", require_int(owner, "arms", self.arms, 2, _MAX_ARMS))
        object.__setattr__(self, "horizon", require_int(owner, "horizon", self.horizon, 1, _MAX_HORIZON))
        for field in ("alpha", "beta"):
            value = require_in_range(owner, field, getattr(self, field), _MIN_CONCENTRATION, _MAX_CONCENTRATION)
            object.__setattr__(self, field, value)

    @property
    def sequence_length(self) -> int:
        """T = n: an episode is a sequence of n trials (memory estimates, the engines' shapes)."""
        return self.horizon

    def noise_spec(self, batch_size: int) -> dict[str, NoiseSpec]:
        """``gamma_a [B, k]`` (concentration alpha), ``gamma_b [B, k]`` (beta), ``reward_uniform [n, B, k]``,
        ``action_uniform [n, B]``."""
        batch_size = require_int(type(self).__name__, "batch_size", batch_size, 1)
        return {
            "gamma_a": NoiseSpec("gamma", (batch_size, self.arms), self.alpha),
            "gamma_b": NoiseSpec("gamma", (batch_size, self.arms), self.beta),
            **_common_noise(self.horizon, batch_size, self.arms),
        }

    def transform(self, noise: Mapping[str, np.ndarray]) -> BanditBatch:
        """``p = g_a / (g_a + g_b)`` in the dtype of the noise; the uniforms pass through."""
        gamma_a, gamma_b = np.asarray(noise["gamma_a"]), np.asarray(noise["gamma_b"])
        return BanditBatch(
            gamma_a / (gamma_a + gamma_b), np.asarray(noise["reward_uniform"]), np.asarray(noise["action_uniform"])
        )

    def sample(self, rng: np.random.Generator, batch_size: int, dtype=np.float64) -> BanditBatch:
        """Reference sampler: draw the base noise with ``rng`` and transform it."""
        from cogmeta.tasks.noise import draw_noise

        return self.transform(draw_noise(self.noise_spec(batch_size), rng, dtype))


@dataclass(frozen=True)
class DependentBanditTask:
    """Two-armed dependent bandit of Wang et al. (2018): ``p_0 ~ U(0, 1)``, ``p_1 = 1 - p_0``.

    Attributes:
        horizon: n in [1, 100000], trials per episode (Wang et al. use 100).
    """

    name: ClassVar[str] = "dependent_bandit"
    arms: ClassVar[int] = 2

    horizon: int = 100

    def __post_init__(self) -> None:
        owner = type(self).__name__
        object.__setattr__(self, "horizon", require_int(owner, "horizon", self.horizon, 1, _MAX_HORIZON))

    @property
    def sequence_length(self) -> int:
        """T = n: an episode is a sequence of n trials (memory estimates, the engines' shapes)."""
        return self.horizon

    def noise_spec(self, batch_size: int) -> dict[str, NoiseSpec]:
        """``uniform_p [B]``, ``reward_uniform [n, B, 2]``, ``action_uniform [n, B]``."""
        batch_size = require_int(type(self).__name__, "batch_size", batch_size, 1)
        return {"uniform_p": NoiseSpec("uniform", (batch_size,)), **_common_noise(self.horizon, batch_size, 2)}

    def transform(self, noise: Mapping[str, np.ndarray]) -> BanditBatch:
        """``p = stack([u, 1 - u], -1)`` in the dtype of the noise; the uniforms pass through."""
        u = np.asarray(noise["uniform_p"])
        return BanditBatch(
            np.stack([u, 1 - u], axis=-1), np.asarray(noise["reward_uniform"]), np.asarray(noise["action_uniform"])
        )

    def sample(self, rng: np.random.Generator, batch_size: int, dtype=np.float64) -> BanditBatch:
        """Reference sampler: draw the base noise with ``rng`` and transform it."""
        from cogmeta.tasks.noise import draw_noise

        return self.transform(draw_noise(self.noise_spec(batch_size), rng, dtype))


#: The bandit tasks, name -> class: the task registry of the ``rl2`` model family (``cogmeta.families``).
BANDIT_TASKS: dict[str, type] = {task.name: task for task in (BernoulliBanditTask, DependentBanditTask)}
