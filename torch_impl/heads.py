"""Predictive heads: raw linear outputs ``[T, B, O]`` -> predictive parameters and NLL.

gaussian (O = 2): mean = raw[..., 0], std = exp(raw[..., 1]),
    NLL = log(2 pi)/2 + log std + ((y - mean) / std)^2 / 2
bernoulli (O = 1): logit = raw[..., 0], P(x = 1) = sigmoid(logit),
    NLL = max(l, 0) - l * y + log(1 + exp(-|l|))   (stable form of -log Bernoulli(y; sigmoid(l)))
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
