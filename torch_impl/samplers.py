"""Task samplers in PyTorch: base noise from a ``torch.Generator``, then the spec's transform.

The transforms repeat ``cogmeta.tasks.*.transform`` operation for operation, so identical noise gives
bit-identical batches (``parity_tests/test_samplers.py``).
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

from cogmeta.tasks import (
    CoinTask,
    DriftingMeanTask,
    GaussianMeanTask,
    NoiseSpec,
    Task,
    TaskBatch,
)


def draw_noise(
    spec: Mapping[str, NoiseSpec], generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """Draw every base-noise array of ``spec`` with ``generator``."""
    noise = {}
    for name, item in spec.items():
        if item.kind == "normal":
            noise[name] = torch.randn(item.shape, generator=generator, dtype=dtype)
        elif item.kind == "uniform":
            noise[name] = torch.rand(item.shape, generator=generator, dtype=dtype)
        elif item.kind == "gamma":
            noise[name] = torch._standard_gamma(torch.full(item.shape, item.concentration, dtype=dtype), generator=generator)
        else:
            raise ValueError(f"unknown noise kind {item.kind!r} for {name!r}")
    return noise


#: task name -> its torch transform; every task registered in ``cogmeta.contract.TASKS`` needs one.
TRANSFORMS: dict[str, Callable] = {}


def register_transform(name: str) -> Callable[[Callable], Callable]:
    """Decorator: the torch noise -> batch transform of the registered task ``name``."""

    def add(function: Callable) -> Callable:
        TRANSFORMS[name] = function
        return function

    return add


@register_transform("gaussian")
def gaussian_transform(task: GaussianMeanTask, noise: Mapping[str, torch.Tensor]) -> TaskBatch:
    """mu = m0 + s0 * z_mu;  x = mu + sigma * z_x  (observations ``[T, B, 1]``, latent ``[B]``)."""
    z_latent, z_observation = noise["latent"], noise["observation"]
    dtype = z_latent.dtype
    latent = torch.tensor(task.prior_mean, dtype=dtype) + torch.tensor(task.prior_std, dtype=dtype) * z_latent
    observations = latent[None, :] + torch.tensor(task.noise_std, dtype=dtype) * z_observation
    return TaskBatch(observations[:, :, None], latent)


@register_transform("coin")
def coin_transform(task: CoinTask, noise: Mapping[str, torch.Tensor]) -> TaskBatch:
    """theta = g_a / (g_a + g_b);  x = 1[u < theta]  (observations ``[T, B, 1]``, latent ``[B]``)."""
    gamma_a, gamma_b, uniform = noise["gamma_a"], noise["gamma_b"], noise["uniform"]
    latent = gamma_a / (gamma_a + gamma_b)
    observations = (uniform < latent[None, :]).to(uniform.dtype)
    return TaskBatch(observations[:, :, None], latent)


@register_transform("drift")
def drift_transform(task: DriftingMeanTask, noise: Mapping[str, torch.Tensor]) -> TaskBatch:
    """mu_1 = m0 + s0 * z;  mu_{t+1} = mu_t + d * e_t;  x_t = mu_t + sigma * n_t  (observations ``[T, B, 1]``, latent ``[T, B]``)."""
    z_latent, z_drift, z_observation = noise["latent"], noise["drift"], noise["observation"]
    dtype = z_latent.dtype
    mean = torch.tensor(task.prior_mean, dtype=dtype) + torch.tensor(task.prior_std, dtype=dtype) * z_latent
    path = [mean]
    for t in range(z_drift.shape[0]):
        mean = mean + torch.tensor(task.drift_std, dtype=dtype) * z_drift[t]
        path.append(mean)
    latent = torch.stack(path)
    observations = latent + torch.tensor(task.noise_std, dtype=dtype) * z_observation
    return TaskBatch(observations[:, :, None], latent)


def transform(task: Task, noise: Mapping[str, torch.Tensor]) -> TaskBatch:
    """The task's deterministic noise -> batch map."""
    if task.name not in TRANSFORMS:
        raise ValueError(f"task {task.name!r} has no torch transform; write one in torch_impl/samplers.py "
                         f"with @register_transform({task.name!r}) (docs/extending.md)")
    return TRANSFORMS[task.name](task, noise)


def sample_batch(task: Task, generator: torch.Generator, batch_size: int, dtype: torch.dtype = torch.float32) -> TaskBatch:
    """Draw B tasks natively: base noise from ``generator``, then :func:`transform`."""
    return transform(task, draw_noise(task.noise_spec(batch_size), generator, dtype))


def step_generator(seed: int, step: int) -> torch.Generator:
    """A generator for training step ``step`` of a run seeded with ``seed``.

    The batch of step k depends only on (seed, k), so a resumed run sees the same batches as an
    uninterrupted one.
    """
    state = np.random.SeedSequence([seed, step]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def model_inputs(observations: torch.Tensor) -> torch.Tensor:
    """``[T, B, 1]`` observations -> ``[T, B, 2]`` inputs: [1, 0] at t = 0, [0, x_t] after."""
    if observations.ndim != 3 or observations.shape[-1] != 1:
        raise ValueError(f"observations must have shape [T, B, 1], got {tuple(observations.shape)}")
    start = torch.zeros_like(observations[:1]).expand(1, observations.shape[1], 2).clone()
    start[..., 0] = 1
    previous = torch.cat([torch.zeros_like(observations[:-1]), observations[:-1]], dim=-1)
    return torch.cat([start, previous], dim=0)
