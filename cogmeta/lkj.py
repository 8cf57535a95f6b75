"""LKJ(eta) random correlation matrices by the C-vine method (Lewandowski, Kurowicka & Joe 2009, s. 2.4).

The LKJ density on K x K correlation matrices is p(R) ∝ det(R)^(eta - 1). The C-vine draws one partial
correlation per pair (j, i), j < i, at "level" j (the correlation of variables j and i given
variables 0..j-1):

    P[j, i] = 2 * Beta(b_j, b_j) - 1,      b_j = eta + (K - 2 - j) / 2      (j = 0..K-2, 0-based)

and maps them to the Cholesky factor L (R = L L^T, rows with unit norm):

    L[i, 0] = P[0, i]
    L[i, j] = P[j, i] * sqrt(1 - sum_{m<j} L[i, m]^2)          0 < j < i
    L[i, i] = sqrt(1 - sum_{m<i} L[i, m]^2)

Each Beta(b, b) is drawn as g1 / (g1 + g2) with unit-rate gammas g1, g2 ~ Gamma(b, 1), so the base noise
is ``2 * (K - 1)`` gamma arrays (one pair per level, each ``[B, K - 1 - j]``) and the transform below is
pure arithmetic, written again operation for operation in ``torch_impl`` and ``jax_impl``
(``paired_comparison_samplers.lkj_cholesky``).

Moments used by the tests: every off-diagonal r_ij has the marginal (r + 1) / 2 ~ Beta(a, a) with
a = eta - 1 + K / 2, so E[r] = 0 and Var[r] = 1 / (2 eta + K - 1).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from cogmeta._validation import require_int, require_positive
from cogmeta.tasks.base import NoiseSpec


def check_lkj(dim: object, eta: object, owner: str = "LKJ") -> tuple[int, float]:
    """Validate ``dim`` >= 2 and ``eta`` > 0; return them as (int, float)."""
    return require_int(owner, "dim", dim, 2, 64), require_positive(owner, "eta", eta)


def level_concentration(dim: int, eta: float, level: int) -> float:
    """b_j = eta + (K - 2 - j) / 2, the Beta(b_j, b_j) concentration of the partial correlations at level j."""
    return eta + (dim - 2 - level) / 2.0


def lkj_noise_spec(dim: int, eta: float, batch_size: int, prefix: str = "lkj") -> dict[str, NoiseSpec]:
    """Base noise of B draws: ``{prefix}_a{j}``, ``{prefix}_b{j}`` ``[B, K - 1 - j]`` gammas for j = 0..K-2."""
    dim, eta = check_lkj(dim, eta)
    spec = {}
    for level in range(dim - 1):
        concentration = level_concentration(dim, eta, level)
        shape = (batch_size, dim - 1 - level)
        spec[f"{prefix}_a{level}"] = NoiseSpec("gamma", shape, concentration)
        spec[f"{prefix}_b{level}"] = NoiseSpec("gamma", shape, concentration)
    return spec


def lkj_cholesky(noise: Mapping[str, np.ndarray], dim: int, prefix: str = "lkj") -> np.ndarray:
    """Cholesky factors ``[B, K, K]`` (lower triangular, unit-norm rows) from the C-vine base noise.

    The loops run over K (small); the order of operations is the one the torch and JAX twins use.
    """
    first = np.asarray(noise[f"{prefix}_a0"])
    batch, dtype = first.shape[0], first.dtype
    rows = [[np.zeros(batch, dtype) for _ in range(dim)] for _ in range(dim)]
    rows[0][0] = np.ones(batch, dtype)
    for i in range(1, dim):
        remaining = np.ones(batch, dtype)  # 1 - sum_{m<j} L[i, m]^2
        for j in range(i):
            g_a = np.asarray(noise[f"{prefix}_a{j}"])[:, i - 1 - j]
            g_b = np.asarray(noise[f"{prefix}_b{j}"])[:, i - 1 - j]
            partial = 2 * (g_a / (g_a + g_b)) - 1
            value = partial * np.sqrt(remaining)
            rows[i][j] = value
            remaining = remaining - value * value
        rows[i][i] = np.sqrt(np.maximum(remaining, 0))
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def sample_lkj_cholesky(rng: np.random.Generator, dim: int, eta: float, batch_size: int, dtype=np.float64) -> np.ndarray:
    """Reference sampler: ``[B, K, K]`` Cholesky factors of LKJ(eta) correlation matrices."""
    from cogmeta.tasks.noise import draw_noise

    dim, eta = check_lkj(dim, eta)
    return lkj_cholesky(draw_noise(lkj_noise_spec(dim, eta, batch_size), rng, dtype), dim)


def lkj_offdiagonal_variance(dim: int, eta: float) -> float:
    """Var[r_ij] = 1 / (2 eta + K - 1) for every off-diagonal entry of an LKJ(eta) correlation matrix."""
    return 1.0 / (2.0 * eta + dim - 1.0)
