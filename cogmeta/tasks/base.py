"""What every task shares: the batch container, base-noise descriptions and the model-input layout.

A task is a frozen dataclass (see ``gaussian.py``, ``coin.py``). Sampling is split in two so that the
numpy reference and the PyTorch and JAX samplers can be compared exactly:

1. ``task.noise_spec(batch_size)`` lists the base noise (standard normals, uniforms, unit-rate gammas)
   that each framework draws with its own random number generator;
2. ``task.transform(noise)`` turns that noise into a :class:`TaskBatch` by a deterministic formula that
   ``torch_impl.samplers`` and ``jax_impl.samplers`` write again with the same operations in the same order.

Sequences are time-major: observations are ``[T, B, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


class TaskBatch(NamedTuple):
    """A batch of B tasks with T observations each.

    Attributes:
        observations: ``[T, B, 1]``, x_1..x_T of each task.
        latent: ``[B]``, the task's hidden parameter (Gaussian mean mu, or coin bias theta); ``[T, B]``
            when it changes over time (the drifting mean's path mu_1..mu_T).
    """

    observations: Any
    latent: Any


@dataclass(frozen=True)
class NoiseSpec:
    """One base-noise array: its distribution and shape.

    ``kind`` is ``"normal"`` (standard normal), ``"uniform"`` (U[0, 1)) or ``"gamma"`` (Gamma with
    shape ``concentration`` and unit rate).
    """

    kind: str
    shape: tuple[int, ...]
    concentration: float | None = None


def model_inputs(observations: np.ndarray) -> np.ndarray:
    """Inputs that let a sequence model predict every next observation.

    ``inputs[0] = [1, 0]`` (start token), ``inputs[t] = [0, x_t]`` for t >= 1 (x_t is the t-th
    observation, 1-based), so the output at step t sees x_1..x_t and is trained to predict x_{t+1}.

    Args:
        observations: ``[T, B, 1]``.

    Returns:
        ``[T, B, 2]`` with the dtype of ``observations``.
    """
    observations = np.asarray(observations)
    if observations.ndim != 3 or observations.shape[-1] != 1:
        raise ValueError(f"observations must have shape [T, B, 1], got {observations.shape}")
    steps, batch, _ = observations.shape
    inputs = np.zeros((steps, batch, 2), dtype=observations.dtype)
    inputs[0, :, 0] = 1
    inputs[1:, :, 1:] = observations[:-1]
    return inputs


def check_observations(observations: np.ndarray, sequence_length: int) -> np.ndarray:
    """Validate a ``[T, B, 1]`` float array whose T matches the task; return it as an ndarray."""
    observations = np.asarray(observations)
    if observations.ndim != 3 or observations.shape[-1] != 1:
        raise ValueError(f"observations must have shape [T, B, 1], got {observations.shape}")
    if observations.shape[0] != sequence_length:
        raise ValueError(
            f"observations have T={observations.shape[0]} steps but the task has sequence_length={sequence_length}"
        )
    if not np.issubdtype(observations.dtype, np.floating):
        raise ValueError(f"observations must be a float array, got dtype {observations.dtype}")
    return observations
