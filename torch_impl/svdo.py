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
given ``torch.Generator``.
"""

from __future__ import annotations

import torch
from torch import nn

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


class LinearSVDO(nn.Module):
    """``[..., in]`` -> ``[..., out]`` with ``weight`` ``(out, in)`` (the mean W_mu), ``log_sigma`` ``(out, in)``
    and ``bias`` ``(out,)``. Init: torch's Linear init for weight and bias, log_sigma = -5."""

    def __init__(self, in_features: int, out_features: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        linear = nn.Linear(in_features, out_features, dtype=dtype)
        self.weight = nn.Parameter(linear.weight.detach().clone())
        self.log_sigma = nn.Parameter(torch.full((out_features, in_features), LOG_SIGMA_INIT, dtype=dtype))
        self.bias = nn.Parameter(linear.bias.detach().clone())

    def log_alpha(self) -> torch.Tensor:
        """``(out, in)`` clamped log alpha."""
        log_alpha = 2 * self.log_sigma - 2 * torch.log(torch.abs(self.weight) + WEIGHT_EPS)
        return torch.clamp(log_alpha, LOG_ALPHA_MIN, LOG_ALPHA_MAX)

    def kl(self) -> torch.Tensor:
        """Scalar KL approximation summed over the weights."""
        log_alpha = self.log_alpha()
        return -torch.sum(K1 * torch.sigmoid(K2 + K3 * log_alpha) - 0.5 * torch.log1p(torch.exp(-log_alpha)) - K1)

    def effective_weight(self, mode: str, eps: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """The ``(out, in)`` weight of one forward pass in ``mode`` (module doc)."""
        if mode == "sample":
            if eps is None:
                eps = torch.randn(self.weight.shape, generator=generator, dtype=self.weight.dtype)
            return self.weight + torch.exp(self.log_sigma) * eps
        if mode == "mean":
            return self.weight
        if mode == "pruned":
            return self.weight * (self.log_alpha() < PRUNE_THRESHOLD).to(self.weight.dtype)
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x W^T + b with the weight from :meth:`effective_weight`."""
        return x @ weight.T + self.bias

    def kept_fraction(self) -> float:
        """Share of weights with log alpha < 3 (not pruned)."""
        return float((self.log_alpha() < PRUNE_THRESHOLD).to(torch.float64).mean())
