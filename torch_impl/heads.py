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

import numpy as np
import torch

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def nll(family: str, raw: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Elementwise NLL ``[T, B]`` of targets ``[T, B, 1]`` under the head's predictive."""
    y = targets[..., 0]
    if family == "gaussian":
        mean, log_std = raw[..., 0], raw[..., 1]
        return _HALF_LOG_2PI + log_std + 0.5 * ((y - mean) * torch.exp(-log_std)) ** 2
    if family == "bernoulli":
        logit = raw[..., 0]
        return torch.clamp(logit, min=0) - logit * y + torch.log1p(torch.exp(-torch.abs(logit)))
    raise ValueError(f"unknown family {family!r}")


def predictive_params(family: str, raw: torch.Tensor) -> dict[str, np.ndarray]:
    """Raw outputs -> ``cogmeta.predictive`` parameter dict (numpy float64, ``[T, B]`` each)."""
    raw = raw.detach().to(torch.float64)
    if family == "gaussian":
        return {"mean": raw[..., 0].numpy(), "std": torch.exp(raw[..., 1]).numpy()}
    if family == "bernoulli":
        return {"prob": torch.sigmoid(raw[..., 0]).numpy()}
    raise ValueError(f"unknown family {family!r}")


def mean_kl(family: str, raw: torch.Tensor, exact: dict) -> torch.Tensor:
    """Mean over ``[T, B]`` of KL(p || q) of the exact predictive ``exact`` (``[T, B]`` each, the outputs' dtype)
    against the head's predictive q of ``raw`` ``[T, B, O]``:

    gaussian:  log s_q - log s_p + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2,  log s_q = raw[..., 1]
    bernoulli: p log p + (1 - p) log(1 - p) + p softplus(-l) + (1 - p) softplus(l)   (-log q = softplus(-l))
    """
    if family == "gaussian":
        mean, log_std = raw[..., 0], raw[..., 1]
        std = exact["std"]
        kl = log_std - torch.log(std) + (std**2 + (exact["mean"] - mean) ** 2) * (0.5 * torch.exp(-2 * log_std)) - 0.5
        return torch.mean(kl)
    if family == "bernoulli":
        logit, p = raw[..., 0], exact["prob"]
        entropy = torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p)
        return torch.mean(entropy + p * _softplus(-logit) + (1 - p) * _softplus(logit))
    raise ValueError(f"unknown family {family!r}")


def _softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + exp(x)) in the stable form of the NLL above (``torch.nn.functional.softplus`` is linear beyond
    x = 20, off by exp(-20) there)."""
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-torch.abs(x)))
