"""Predictive heads: raw linear outputs ``[T, B, O]`` -> predictive parameters and NLL.

gaussian (O = 2): mean = raw[..., 0], std = exp(raw[..., 1]),
    NLL = log(2 pi)/2 + log std + ((y - mean) / std)^2 / 2
bernoulli (O = 1): logit = raw[..., 0], P(x = 1) = sigmoid(logit),
    NLL = max(l, 0) - l * y + log(1 + exp(-|l|))   (stable form of -log Bernoulli(y; sigmoid(l)))

:func:`mean_kl` is ``cogmeta.predictive.kl_divergence`` (exact p against the head's q) averaged over ``[T, B]``, in
the outputs' dtype, from the raw outputs (log std and logit, not std and P): the held-out check of
``train.until_kl`` inside training (``cogmeta.held_out_check``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def nll(family: str, raw: jax.Array, targets: jax.Array) -> jax.Array:
    """Elementwise NLL ``[T, B]`` of targets ``[T, B, 1]`` under the head's predictive."""
    y = targets[..., 0]
    if family == "gaussian":
        mean, log_std = raw[..., 0], raw[..., 1]
        return _HALF_LOG_2PI + log_std + 0.5 * ((y - mean) * jnp.exp(-log_std)) ** 2
    if family == "bernoulli":
        logit = raw[..., 0]
        return jnp.maximum(logit, 0) - logit * y + jnp.log1p(jnp.exp(-jnp.abs(logit)))
    raise ValueError(f"unknown family {family!r}")


def predictive_params(family: str, raw: jax.Array) -> dict[str, np.ndarray]:
    """Raw outputs -> ``cogmeta.predictive`` parameter dict (numpy float64, ``[T, B]`` each)."""
    raw = np.asarray(raw, dtype=np.float64)
    if family == "gaussian":
        return {"mean": raw[..., 0], "std": np.exp(raw[..., 1])}
    if family == "bernoulli":
        return {"prob": 1.0 / (1.0 + np.exp(-raw[..., 0]))}
    raise ValueError(f"unknown family {family!r}")


def mean_kl(family: str, raw: jax.Array, exact: dict) -> jax.Array:
    """Mean over ``[T, B]`` of KL(p || q) of the exact predictive ``exact`` (``[T, B]`` each, the outputs' dtype)
    against the head's predictive q of ``raw`` ``[T, B, O]``:

    gaussian:  log s_q - log s_p + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2,  log s_q = raw[..., 1]
    bernoulli: p log p + (1 - p) log(1 - p) + p softplus(-l) + (1 - p) softplus(l)   (-log q = softplus(-l))
    """
    if family == "gaussian":
        mean, log_std = raw[..., 0], raw[..., 1]
        std = exact["std"]
        kl = log_std - jnp.log(std) + (std**2 + (exact["mean"] - mean) ** 2) * (0.5 * jnp.exp(-2 * log_std)) - 0.5
        return jnp.mean(kl)
    if family == "bernoulli":
        logit, p = raw[..., 0], exact["prob"]
        entropy = xlogy(p, p) + xlogy(1 - p, 1 - p)
        return jnp.mean(entropy + p * _softplus(-logit) + (1 - p) * _softplus(logit))
    raise ValueError(f"unknown family {family!r}")


def _softplus(x: jax.Array) -> jax.Array:
    """log(1 + exp(x)) in the stable form of the NLL above."""
    return jnp.maximum(x, 0) + jnp.log1p(jnp.exp(-jnp.abs(x)))
