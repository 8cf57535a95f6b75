"""Bandit episodes in PyTorch: the transforms, reward step and action draw of ``cogmeta.tasks.bandit``.

Everything random in an episode is base noise (``cogmeta.tasks.bandit``), so an episode is a deterministic
function of the noise and the actions. Each function here repeats its numpy reference operation for
operation, so that the same noise and actions give bit-identical batches, rewards and actions in numpy,
PyTorch and JAX (``parity_tests/test_rl2.py``):

    probabilities [B, k]   independent bandit: p = g_a / (g_a + g_b);  dependent bandit: p = [u, 1 - u]
    step                   r_b = 1[reward_uniform[t, b, a_b] < p[b, a_b]]                       [B]
    sample_action          a_b = min(sum_i 1[cumsum(pi_b)_i <= u_b], k - 1)                     [B]

Importing this module registers the two transforms with ``torch_impl.samplers``, so that
``samplers.sample_batch`` draws bandit batches too.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from cogmeta.tasks.bandit import BanditBatch, BernoulliBanditTask, DependentBanditTask
from torch_impl.samplers import register_transform, sample_batch


@register_transform("bandit")
def bandit_transform(task: BernoulliBanditTask, noise: Mapping[str, torch.Tensor]) -> BanditBatch:
    """``p = g_a / (g_a + g_b)`` ``[B, k]`` in the dtype of the noise; the uniforms pass through."""
    gamma_a, gamma_b = noise["gamma_a"], noise["gamma_b"]
    return BanditBatch(gamma_a / (gamma_a + gamma_b), noise["reward_uniform"], noise["action_uniform"])


@register_transform("dependent_bandit")
def dependent_bandit_transform(task: DependentBanditTask, noise: Mapping[str, torch.Tensor]) -> BanditBatch:
    """``p = stack([u, 1 - u], -1)`` ``[B, 2]`` in the dtype of the noise; the uniforms pass through."""
    u = noise["uniform_p"]
    return BanditBatch(torch.stack([u, 1 - u], dim=-1), noise["reward_uniform"], noise["action_uniform"])


def step(batch: BanditBatch, trial: int, actions: torch.Tensor, validate: bool = True) -> torch.Tensor:
    """Rewards of pulling ``actions`` at ``trial``: ``r[b] = 1[reward_uniform[trial, b, a_b] < p[b, a_b]]``.

    Gathers the chosen arm's uniform and probability along the last axis, compares with ``<`` and casts the
    boolean to the batch's float dtype (``cogmeta.tasks.bandit.step``).

    Args:
        batch: the episodes (tensors).
        trial: t in [0, n).
        actions: ``[B]`` integer arm indices in [0, k).
        validate: check ``trial`` and ``actions`` (a ValueError names the bad values). The check reads the
            actions back to the host, a device synchronisation on a GPU, so :func:`torch_impl.rl2.rollout`
            turns it off: its actions come from :func:`sample_action` or an argmax and are in range.

    Returns:
        ``[B]`` rewards in {0, 1}, in the dtype of ``batch.reward_uniform``.
    """
    uniform, probabilities = batch.reward_uniform, batch.probabilities
    if validate:
        _check_step(uniform.shape, trial, actions)
    chosen = actions[:, None]
    u = torch.gather(uniform[trial], -1, chosen)[:, 0]
    p = torch.gather(probabilities, -1, chosen)[:, 0]
    return (u < p).to(uniform.dtype)


def sample_action(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Draw one action per row of ``probs`` by inverse CDF: ``a = min(sum_i 1[cumsum(probs)_i <= u], k - 1)``.

    The cumulative sum is a running sum over the arms, left to right, rounded after every addition as
    numpy's ``cumsum`` does: ``torch.cumsum`` accumulates float32 in double precision on the CPU (measured:
    it differs from numpy's in the last bit for k >= 3), which could flip an action whose uniform lies
    within an ulp of a boundary.

    Args:
        probs: ``[B, k]`` probabilities, each row summing to 1 (pass them detached: the draw is not
            differentiable).
        uniform: ``[B]`` uniforms in [0, 1).

    Returns:
        ``[B]`` int64 actions in [0, k).
    """
    if probs.ndim != 2 or tuple(uniform.shape) != tuple(probs.shape[:1]):
        raise ValueError(f"sample_action: probs must be [B, k] and uniform [B], got {tuple(probs.shape)} and "
                         f"{tuple(uniform.shape)}")
    total = probs[:, 0]
    cdf = [total]
    for arm in range(1, probs.shape[-1]):
        total = total + probs[:, arm]  # cdf_arm, one rounding per addition
        cdf.append(total)
    count = torch.sum(torch.stack(cdf, dim=-1) <= uniform[:, None], dim=-1)  # one comparison of all k, not k
    return torch.clamp(count, max=probs.shape[-1] - 1)


def sample_episodes(task, generator: torch.Generator, batch_size: int, dtype: torch.dtype = torch.float32) -> BanditBatch:
    """B episodes drawn natively: base noise from ``generator``, then the task's transform."""
    return sample_batch(task, generator, batch_size, dtype)


def from_numpy(batch: BanditBatch, dtype: torch.dtype) -> BanditBatch:
    """A numpy :class:`BanditBatch` as tensors of ``dtype`` (on the CPU)."""
    return BanditBatch(*(torch.as_tensor(np.asarray(value)).to(dtype) for value in batch))


def _check_step(shape: tuple[int, ...], trial, actions: torch.Tensor) -> None:
    """ValueError naming the bad ``trial`` or ``actions`` of a batch with ``reward_uniform`` of ``shape``."""
    horizon, size, arms = shape
    if isinstance(trial, torch.Tensor):
        trial = int(trial)
    if not isinstance(trial, (int, np.integer)) or isinstance(trial, bool) or not 0 <= trial < horizon:
        raise ValueError(f"step: trial must be an integer in [0, {horizon - 1}] (horizon={horizon}), got {trial!r}")
    if not isinstance(actions, torch.Tensor) or tuple(actions.shape) != (size,):
        raise ValueError(f"step: actions must be a tensor of shape [B] = ({size},), got "
                         f"{tuple(getattr(actions, 'shape', ())) or type(actions).__name__}")
    if actions.dtype.is_floating_point or actions.dtype.is_complex or actions.dtype == torch.bool:
        raise ValueError(f"step: actions must be an integer tensor (arm indices), got dtype {actions.dtype}")
    bad = actions[(actions < 0) | (actions >= arms)]
    if bad.numel():
        raise ValueError(f"step: actions must lie in [0, {arms - 1}] (arms={arms}), got {bad[:5].tolist()}")


__all__ = ["BanditBatch", "bandit_transform", "dependent_bandit_transform", "from_numpy", "sample_action",
           "sample_episodes", "step"]
