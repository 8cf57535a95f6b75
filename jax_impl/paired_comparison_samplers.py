"""Paired-comparison samplers in JAX: the spec's transforms (``cogmeta.tasks.paired_comparison``,
``cogmeta.lkj``) repeated operation for operation, so identical noise gives identical batches (op by
op; under ``jax.jit`` XLA may fuse multiply-adds, see docs/framework-differences.md#fused-multiply-add).

The condition can be a traced integer index into ``CONDITIONS`` so that one compiled program vmaps
over conditions (``jax_impl.bounded_gru.BoundedObjective`` under ``jax_impl.engine``'s vmap).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from cogmeta.tasks.paired_comparison import (
    CONDITIONS,
    ComparisonBatch,
    PairedComparisonTask,
)
from jax_impl.samplers import draw_noise


def lkj_cholesky(noise: Mapping[str, jax.Array], dim: int, prefix: str = "lkj") -> jax.Array:
    """C-vine Cholesky factors ``[B, K, K]`` of LKJ correlation matrices (``cogmeta.lkj.lkj_cholesky``)."""
    first = noise[f"{prefix}_a0"]
    batch, dtype = first.shape[0], first.dtype
    rows = [[jnp.zeros(batch, dtype) for _ in range(dim)] for _ in range(dim)]
    rows[0][0] = jnp.ones(batch, dtype)
    for i in range(1, dim):
        remaining = jnp.ones(batch, dtype)  # 1 - sum_{m<j} L[i, m]^2
        for j in range(i):
            g_a = noise[f"{prefix}_a{j}"][:, i - 1 - j]
            g_b = noise[f"{prefix}_b{j}"][:, i - 1 - j]
            partial = 2 * (g_a / (g_a + g_b)) - 1
            value = partial * jnp.sqrt(remaining)
            rows[i][j] = value
            remaining = remaining - value * value
        rows[i][i] = jnp.sqrt(jnp.maximum(remaining, 0))
    return jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)


def condition_weights(weights: jax.Array, condition: str | int | jax.Array) -> jax.Array:
    """Sort by magnitude ("ranking"), take |w| ("direction") or keep ("none"); ``[B, K]``.

    ``condition`` is a name or an index into ``CONDITIONS`` (possibly traced: then all three are
    computed and one is selected).
    """
    if isinstance(condition, str):
        condition = CONDITIONS.index(condition)
    order = jnp.argsort(-jnp.abs(weights), axis=-1, stable=True)
    options = (jnp.take_along_axis(weights, order, axis=-1), jnp.abs(weights), weights)
    if isinstance(condition, int):
        return options[condition]
    return jnp.select([condition == index for index in range(len(CONDITIONS))], options)


def correlate(chol: jax.Array, z: jax.Array) -> jax.Array:
    """x = L z per task, summed in the fixed order of the numpy reference; ``[T, B, 2, K]``."""
    dim = chol.shape[-1]
    columns = []
    for i in range(dim):
        total = chol[None, :, None, i, 0] * z[..., 0]
        for j in range(1, i + 1):
            total = total + chol[None, :, None, i, j] * z[..., j]
        columns.append(total)
    return jnp.stack(columns, axis=-1)


def weighted_sum(weights: jax.Array, x: jax.Array) -> jax.Array:
    """sum_k w_k x_k over the last axis in a fixed order."""
    total = weights[..., 0] * x[..., 0]
    for k in range(1, x.shape[-1]):
        total = total + weights[..., k] * x[..., k]
    return total


def transform(
    task: PairedComparisonTask, noise: Mapping[str, jax.Array], condition: int | jax.Array | None = None
) -> ComparisonBatch:
    """Noise -> ``ComparisonBatch`` (cues ``[T, B, K]``, targets ``[T, B]``, weights ``[B, K]``).

    ``condition`` overrides ``task.condition`` with an index (traceable) into ``CONDITIONS``.
    """
    index = task.condition_index if condition is None else condition
    weights = condition_weights(noise["weights"], index)
    chol = lkj_cholesky(noise, task.num_cues)
    options = correlate(chol, noise["cues"])
    criterion = weighted_sum(weights[None, :, None, :], options) + task.noise_std * noise["criterion"]
    targets = (criterion[..., 0] > criterion[..., 1]).astype(options.dtype)
    if task.flip_direction_targets:
        flip = jnp.asarray(index) == CONDITIONS.index("direction")
        targets = jnp.where(flip, 1 - targets, targets)
    return ComparisonBatch(options[..., 0, :] - options[..., 1, :], targets, weights)


def model_inputs(cues: jax.Array, targets: jax.Array) -> jax.Array:
    """``[T, B, K + 2]`` inputs [dx_t, y_t, 1 - y_t]."""
    return jnp.concatenate([cues, targets[..., None], 1 - targets[..., None]], axis=-1)


def draw_task_noise(task: PairedComparisonTask, key: jax.Array, batch_size: int, dtype=jnp.float32) -> dict[str, jax.Array]:
    """The task's base noise, with every gamma array drawn by one ``jax.random.gamma`` call.

    ``jax.random.gamma`` is a rejection sampler (a ``while_loop``) that is slow to compile (measured
    ~7 s per call under load), and the LKJ noise has 2 (K - 1) gamma arrays with different
    concentrations; one call with an array of concentrations compiles once. (The native stream need
    not match torch's: only the transform is shared.)
    """
    spec = task.noise_spec(batch_size)
    gammas = {name: item for name, item in spec.items() if item.kind == "gamma"}
    normal_key, gamma_key = jax.random.split(key)
    noise = draw_noise({name: item for name, item in spec.items() if item.kind != "gamma"}, normal_key, dtype)
    if gammas:
        concentration = jnp.concatenate([jnp.full(item.shape[1:], item.concentration, dtype) for item in gammas.values()])
        draws = jax.random.gamma(gamma_key, concentration, (batch_size, concentration.shape[0]), dtype)
        offset = 0
        for name, item in gammas.items():
            width = item.shape[1]
            noise[name] = draws[:, offset : offset + width]
            offset += width
    return noise


def sample_batch(
    task: PairedComparisonTask, key: jax.Array, batch_size: int, dtype=jnp.float32, condition=None
) -> ComparisonBatch:
    """Draw B tasks natively: base noise from ``key`` (:func:`draw_task_noise`), then :func:`transform`."""
    return transform(task, draw_task_noise(task, key, batch_size, dtype), condition)
