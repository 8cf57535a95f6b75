"""Paired-comparison samplers in PyTorch: the spec's transforms (``cogmeta.tasks.paired_comparison``,
``cogmeta.lkj``) repeated operation for operation, so identical noise gives the same batches: bit-identical
except where torch's ``sqrt`` is one ulp off (see :func:`correctly_rounded_sqrt`), which moves cues by
an ulp and can flip a target only on an exact near-tie of the two criteria."""

from __future__ import annotations

from typing import Mapping

import torch

from cogmeta.tasks.paired_comparison import ComparisonBatch, PairedComparisonTask
from torch_impl.samplers import draw_noise


def correctly_rounded_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt(x), as close to correctly rounded as torch allows: torch's vectorised CPU ``sqrt`` is off by one
    ulp for ~20% of float32 and ~1.4% of float64 inputs (numpy and XLA round correctly), so float32 runs
    in float64 and rounds once, which is then almost always exact; float64 keeps torch's result
    (docs/framework-differences.md#sqrt-rounding)."""
    if x.dtype == torch.float32:
        return torch.sqrt(x.to(torch.float64)).to(x.dtype)
    return torch.sqrt(x)


def lkj_cholesky(noise: Mapping[str, torch.Tensor], dim: int, prefix: str = "lkj") -> torch.Tensor:
    """C-vine Cholesky factors ``[B, K, K]`` of LKJ correlation matrices (``cogmeta.lkj.lkj_cholesky``)."""
    first = noise[f"{prefix}_a0"]
    batch, dtype = first.shape[0], first.dtype
    rows = [[torch.zeros(batch, dtype=dtype) for _ in range(dim)] for _ in range(dim)]
    rows[0][0] = torch.ones(batch, dtype=dtype)
    for i in range(1, dim):
        remaining = torch.ones(batch, dtype=dtype)  # 1 - sum_{m<j} L[i, m]^2
        for j in range(i):
            g_a = noise[f"{prefix}_a{j}"][:, i - 1 - j]
            g_b = noise[f"{prefix}_b{j}"][:, i - 1 - j]
            partial = 2 * (g_a / (g_a + g_b)) - 1
            value = partial * correctly_rounded_sqrt(remaining)
            rows[i][j] = value
            remaining = remaining - value * value
        rows[i][i] = correctly_rounded_sqrt(torch.clamp(remaining, min=0))
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def condition_weights(weights: torch.Tensor, condition: str) -> torch.Tensor:
    """Sort by magnitude ("ranking"), take |w| ("direction") or keep ("none"); ``[B, K]``."""
    if condition == "ranking":
        order = torch.argsort(-torch.abs(weights), dim=-1, stable=True)
        return torch.take_along_dim(weights, order, dim=-1)
    if condition == "direction":
        return torch.abs(weights)
    return weights


def correlate(chol: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """x = L z per task, summed in the fixed order of the numpy reference; ``[T, B, 2, K]``."""
    dim = chol.shape[-1]
    columns = []
    for i in range(dim):
        total = chol[None, :, None, i, 0] * z[..., 0]
        for j in range(1, i + 1):
            total = total + chol[None, :, None, i, j] * z[..., j]
        columns.append(total)
    return torch.stack(columns, dim=-1)


def weighted_sum(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum_k w_k x_k over the last axis in a fixed order."""
    total = weights[..., 0] * x[..., 0]
    for k in range(1, x.shape[-1]):
        total = total + weights[..., k] * x[..., k]
    return total


def transform(task: PairedComparisonTask, noise: Mapping[str, torch.Tensor]) -> ComparisonBatch:
    """Noise -> ``ComparisonBatch`` (cues ``[T, B, K]``, targets ``[T, B]``, weights ``[B, K]``)."""
    weights = condition_weights(noise["weights"], task.condition)
    chol = lkj_cholesky(noise, task.num_cues)
    options = correlate(chol, noise["cues"])
    criterion = weighted_sum(weights[None, :, None, :], options) + task.noise_std * noise["criterion"]
    targets = (criterion[..., 0] > criterion[..., 1]).to(options.dtype)
    if task.flips_targets:
        targets = 1 - targets
    return ComparisonBatch(options[..., 0, :] - options[..., 1, :], targets, weights)


def model_inputs(cues: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[T, B, K + 2]`` inputs [dx_t, y_t, 1 - y_t]."""
    return torch.cat([cues, targets[..., None], 1 - targets[..., None]], dim=-1)


def sample_batch(
    task: PairedComparisonTask, generator: torch.Generator, batch_size: int, dtype: torch.dtype = torch.float32
) -> ComparisonBatch:
    """Draw B tasks natively: base noise from ``generator``, then :func:`transform`."""
    return transform(task, draw_noise(task.noise_spec(batch_size), generator, dtype))
