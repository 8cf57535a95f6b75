"""Sparse variational dropout linear layer (Molchanov, Ashukha & Vetrov 2017), torch's layout.

Posterior q(W) = N(W_mu, sigma^2) per weight, sigma = exp(log_sigma); bias deterministic.
    log alpha = clamp(2 log sigma - 2 log(|W_mu| + 1e-16), -10, 10)     (alpha = sigma^2 / W_mu^2)
    KL(q || log-uniform prior) ~= -sum(k1 * s(k2 + k3 log alpha) - 0.5 * log1p(exp(-log alpha)) - k1)
    k1, k2, k3 = 0.63576, 1.8732, 1.48695   (Molchanov et al. 2017, eq. 14)
Weights used in the forward pass, by ``mode``:
    "sample":  W = W_mu + sigma * eps, eps ~ N(0, 1) ``(out, in)``: one draw per forward pass, shared by
               the whole batch and every time step (no local reparameterisation, as in the paper's code)
    "mean":    W = W_mu
    "pruned":  W = W_mu * 1[log alpha < 3]  (evaluation: weights with alpha > e^3 ~ 20 are dropped)
``eps`` can be injected (tests feed both frameworks the same numpy noise); else it is drawn from the
given PRNG ``key``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from cogmeta.sparse_variational import (
    K1,
    K2,
    K3,
    LOG_ALPHA_MAX,
    LOG_ALPHA_MIN,
    LOG_SIGMA_INIT,
    MODES,
    PRUNE_THRESHOLD,
    WEIGHT_EPS,
)
from jax_impl.linear import uniform_init
from jax_impl.numerics import matmul


class LinearSVDO(nnx.Module):
    """``[..., in]`` -> ``[..., out]`` with ``weight`` ``(out, in)`` (the mean W_mu), ``log_sigma`` ``(out, in)``
    and ``bias`` ``(out,)``. Init: torch's Linear init for weight and bias, log_sigma = -5."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nnx.Param(uniform_init(rngs.params(), (out_features, in_features), dtype, bound))
        self.log_sigma = nnx.Param(jnp.full((out_features, in_features), LOG_SIGMA_INIT, dtype))
        self.bias = nnx.Param(uniform_init(rngs.params(), (out_features,), dtype, bound))

    def log_alpha(self) -> jax.Array:
        """``(out, in)`` clamped log alpha."""
        log_alpha = 2 * self.log_sigma[...] - 2 * jnp.log(jnp.abs(self.weight[...]) + WEIGHT_EPS)
        return jnp.clip(log_alpha, LOG_ALPHA_MIN, LOG_ALPHA_MAX)

    def kl(self) -> jax.Array:
        """Scalar KL approximation summed over the weights."""
        log_alpha = self.log_alpha()
        return -jnp.sum(K1 * jax.nn.sigmoid(K2 + K3 * log_alpha) - 0.5 * jnp.log1p(jnp.exp(-log_alpha)) - K1)

    def effective_weight(self, mode: str, eps: jax.Array | None = None, key: jax.Array | None = None) -> jax.Array:
        """The ``(out, in)`` weight of one forward pass in ``mode`` (module doc)."""
        weight = self.weight[...]
        if mode == "sample":
            if eps is None:
                if key is None:
                    raise ValueError("mode 'sample' needs injected noise eps or a PRNG key")
                eps = jax.random.normal(key, weight.shape, weight.dtype)
            return weight + jnp.exp(self.log_sigma[...]) * eps
        if mode == "mean":
            return weight
        if mode == "pruned":
            return weight * (self.log_alpha() < PRUNE_THRESHOLD).astype(weight.dtype)
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")

    def __call__(self, x: jax.Array, weight: jax.Array) -> jax.Array:
        """x W^T + b with the weight from :meth:`effective_weight`."""
        return matmul(x, weight) + self.bias[...]

    def kept_fraction(self) -> float:
        """Share of weights with log alpha < 3 (not pruned)."""
        return float(jnp.mean((self.log_alpha() < PRUNE_THRESHOLD).astype(jnp.float32)))
