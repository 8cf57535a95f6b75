"""The Gini coefficient of cue weights (Binz et al. 2022, ``utils.py``): how unequally a strategy weighs cues.

    G(x) = (1/2) * mean_{i,j} |x_i - x_j| / mean_i x_i        (over all K^2 ordered pairs, x >= 0)

applied to the absolute weight means |m_t|. 0 = equal weighting; (K - 1) / K = a single cue (0.75 for
K = 4), the most unequal.
"""

from __future__ import annotations

import numpy as np


def gini(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gini coefficient along ``axis`` of non-negative ``x`` (NaN where every entry is 0)."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    if np.any(x < 0):
        raise ValueError("gini expects non-negative values; pass absolute weights, e.g. gini(np.abs(mean))")
    pairs = np.abs(x[..., :, None] - x[..., None, :]).mean(axis=(-2, -1))
    mean = x.mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, 0.5 * pairs / mean, np.nan)
