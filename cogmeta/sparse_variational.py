"""Sparse variational dropout (Molchanov, Ashukha & Vetrov 2017): the constants and the pruning rule
that ``torch_impl/svdo.py``, ``jax_impl/svdo.py`` and the heuristics study share, in numpy.

    log alpha = clamp(2 log sigma - 2 log(|W_mu| + 1e-16), -10, 10)     (alpha = sigma^2 / W_mu^2)
    KL(q || log-uniform prior) ~= -sum(k1 * s(k2 + k3 log alpha) - 0.5 * log1p(exp(-log alpha)) - k1)
    a weight is kept (evaluation mode "pruned") where log alpha < 3 (alpha < e^3 ~ 20)
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

#: The KL approximation's constants (Molchanov et al. 2017, eq. 14).
K1, K2, K3 = 0.63576, 1.8732, 1.48695
LOG_ALPHA_MIN, LOG_ALPHA_MAX = -10.0, 10.0
#: Keeps log|W_mu| finite at W_mu = 0.
WEIGHT_EPS = 1e-16
PRUNE_THRESHOLD = 3.0
LOG_SIGMA_INIT = -5.0
MODES = ("sample", "mean", "pruned")


def log_alpha(weight: np.ndarray, log_sigma: np.ndarray) -> np.ndarray:
    """The clamped log alpha of each weight, float64, the shape of ``weight``."""
    weight, log_sigma = np.asarray(weight, np.float64), np.asarray(log_sigma, np.float64)
    return np.clip(2 * log_sigma - 2 * np.log(np.abs(weight) + WEIGHT_EPS), LOG_ALPHA_MIN, LOG_ALPHA_MAX)


def kept_fraction(tensors: Mapping[str, np.ndarray]) -> float:
    """Share of the weights of every sparse layer (``<layer>.weight`` with ``<layer>.log_sigma``) kept by pruning."""
    kept = total = 0
    for name, value in tensors.items():
        if name.endswith(".log_sigma"):
            alpha = log_alpha(tensors[name[: -len("log_sigma")] + "weight"], value)
            kept += int(np.sum(alpha < PRUNE_THRESHOLD))
            total += alpha.size
    return kept / max(total, 1)
