"""Bandit episodes in JAX: the transforms, reward step and action draw of ``cogmeta.tasks.bandit`` (jit-safe).

Everything random in an episode is base noise (``cogmeta.tasks.bandit``), so an episode is a deterministic
function of the noise and the actions. Each function here repeats its numpy reference operation for
operation, so that the same noise and actions give bit-identical batches, rewards and actions in numpy,
PyTorch and JAX (``parity_tests/test_rl2.py``):

    probabilities [B, k]   independent bandit: p = g_a / (g_a + g_b);  dependent bandit: p = [u, 1 - u]
    step                   r_b = 1[reward_uniform[t, b, a_b] < p[b, a_b]]                       [B]
    sample_action          a_b = min(sum_i 1[cumsum(pi_b)_i <= u_b], k - 1)                     [B]

Importing this module registers the two transforms with ``jax_impl.samplers``, so that
``samplers.sample_batch`` draws bandit batches too.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cogmeta.tasks.bandit import BanditBatch, BernoulliBanditTask, DependentBanditTask
from jax_impl.samplers import register_transform, sample_batch


@register_transform("bandit")
def bandit_transform(task: BernoulliBanditTask, noise: Mapping[str, jax.Array]) -> BanditBatch:
    """``p = g_a / (g_a + g_b)`` ``[B, k]`` in the dtype of the noise; the uniforms pass through."""
    gamma_a, gamma_b = noise["gamma_a"], noise["gamma_b"]
    return BanditBatch(gamma_a / (gamma_a + gamma_b), noise["reward_uniform"], noise["action_uniform"])


@register_transform("dependent_bandit")
def dependent_bandit_transform(task: DependentBanditTask, noise: Mapping[str, jax.Array]) -> BanditBatch:
    """``p = stack([u, 1 - u], -1)`` ``[B, 2]`` in the dtype of the noise; the uniforms pass through."""
    u = noise["uniform_p"]
    return BanditBatch(jnp.stack([u, 1 - u], axis=-1), noise["reward_uniform"], noise["action_uniform"])


def step(batch: BanditBatch, trial, actions: jax.Array, validate: bool = True) -> jax.Array:
    """Rewards of pulling ``actions`` at ``trial``: ``r[b] = 1[reward_uniform[trial, b, a_b] < p[b, a_b]]``.

    Gathers the chosen arm's uniform and probability along the last axis, compares with ``<`` and casts the
    boolean to the batch's float dtype (``cogmeta.tasks.bandit.step``). ``trial`` may be traced (it indexes
    ``reward_uniform`` dynamically, as inside ``lax.scan`` over trials).

    Args:
        batch: the episodes (arrays).
        trial: t in [0, n), a Python int or an integer scalar array (traced or not).
        actions: ``[B]`` integer arm indices in [0, k).
        validate: check ``trial`` and ``actions`` where their values are known (not traced), with a ValueError
            that names the bad values; traced values cannot be checked (XLA would clamp an index out of
            range silently). Kept for symmetry with the torch twin, whose rollout turns it off.

    Returns:
        ``[B]`` rewards in {0, 1}, in the dtype of ``batch.reward_uniform``.
    """
    uniform, probabilities = batch.reward_uniform, batch.probabilities
    if validate:
        _check_step(uniform.shape, trial, actions)
    chosen = actions[:, None]
    u = jnp.take_along_axis(uniform[trial], chosen, axis=-1)[:, 0]
    p = jnp.take_along_axis(probabilities, chosen, axis=-1)[:, 0]
    return (u < p).astype(uniform.dtype)


def sample_action(probs: jax.Array, uniform: jax.Array) -> jax.Array:
    """Draw one action per row of ``probs`` by inverse CDF: ``a = min(sum_i 1[cumsum(probs)_i <= u], k - 1)``.

    The cumulative sum is a running sum over the arms, left to right (a ``lax.scan`` over k), rounded after
    every addition as numpy's ``cumsum`` does: XLA's ``jnp.cumsum`` reassociates the sum for longer rows
    (measured with jax 0.10.2 on CPU: it differs from numpy's in the last bit from k = 18 on), which could flip
    an action whose uniform lies within an ulp of a boundary.

    Args:
        probs: ``[B, k]`` probabilities, each row summing to 1 (pass them through ``lax.stop_gradient``: the
            draw is not differentiable).
        uniform: ``[B]`` uniforms in [0, 1).

    Returns:
        ``[B]`` int32 actions in [0, k) (int32 with and without 64-bit mode).
    """
    if probs.ndim != 2 or tuple(uniform.shape) != tuple(probs.shape[:1]):
        raise ValueError(f"sample_action: probs must be [B, k] and uniform [B], got {tuple(probs.shape)} and "
                         f"{tuple(uniform.shape)}")

    def add(total, column):
        total = total + column  # cdf_arm
        return total, total <= uniform

    _, below = lax.scan(add, jnp.zeros_like(uniform), probs.T)  # [k, B]
    count = jnp.sum(below, axis=0, dtype=jnp.int32)
    return jnp.minimum(count, probs.shape[-1] - 1)


def sample_episodes(task, key: jax.Array, batch_size: int, dtype=jnp.float32) -> BanditBatch:
    """B episodes drawn natively: base noise from ``key``, then the task's transform (traceable)."""
    return sample_batch(task, key, batch_size, dtype)


def from_numpy(batch: BanditBatch, dtype) -> BanditBatch:
    """A numpy :class:`BanditBatch` as JAX arrays of ``dtype`` (float64 needs 64-bit mode), cast on the host
    (``jnp.asarray(x, dtype)`` compiles a conversion for every new shape)."""
    return BanditBatch(*(jax.device_put(np.asarray(value, dtype=np.dtype(dtype))) for value in batch))


def _concrete(value):
    """``value`` as a numpy array, or None while it is traced (its value is unknown until run)."""
    if isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value)


def _check_step(shape: tuple[int, ...], trial, actions) -> None:
    """ValueError naming the bad ``trial`` or ``actions`` of a batch with ``reward_uniform`` of ``shape``; values
    that are traced are checked for shape and dtype only."""
    horizon, size, arms = shape
    trial_value = _concrete(trial)
    if trial_value is not None and (trial_value.shape != () or not np.issubdtype(trial_value.dtype, np.integer)
                                    or isinstance(trial, bool) or not 0 <= int(trial_value) < horizon):
        raise ValueError(f"step: trial must be an integer in [0, {horizon - 1}] (horizon={horizon}), got {trial!r}")
    if not hasattr(actions, "shape") or tuple(actions.shape) != (size,):
        raise ValueError(f"step: actions must be an array of shape [B] = ({size},), got "
                         f"{tuple(getattr(actions, 'shape', ())) or type(actions).__name__}")
    if not jnp.issubdtype(actions.dtype, jnp.integer):
        raise ValueError(f"step: actions must be an integer array (arm indices), got dtype {actions.dtype}")
    values = _concrete(actions)
    if values is not None and values.size and (values.min() < 0 or values.max() >= arms):
        bad = values[(values < 0) | (values >= arms)]
        raise ValueError(f"step: actions must lie in [0, {arms - 1}] (arms={arms}), got {bad[:5].tolist()}")


__all__ = ["BanditBatch", "bandit_transform", "dependent_bandit_transform", "from_numpy", "sample_action",
           "sample_episodes", "step"]
