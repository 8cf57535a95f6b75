"""Adam with global-norm clipping, torch semantics (the reference that ``jax_impl.optim`` matches).

clip:  g <- g * min(1, c / (||g||_2 + 1e-6))          (``torch.nn.utils.clip_grad_norm_``)
Adam:  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
       p <- p - lr_k * (m / (1 - b1^k)) / (sqrt(v / (1 - b2^k)) + eps)
with lr_k from ``cogmeta.schedules.learning_rate``.
"""

from __future__ import annotations

import torch
from torch import nn

from cogmeta.config import TrainConfig

#: torch adds this to the norm before dividing (optax's clip_by_global_norm does not).
CLIP_EPS = 1e-6


def make_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Adam:
    """``torch.optim.Adam`` with the run's betas and eps; the learning rate is set every step."""
    return torch.optim.Adam(
        model.parameters(), lr=train.learning_rate, betas=(train.adam_beta1, train.adam_beta2), eps=train.adam_eps
    )


def clip_and_step(model: nn.Module, optimizer: torch.optim.Adam, learning_rate: float, clip_norm: float) -> float:
    """Clip the gradients in place, apply one Adam update at ``learning_rate``; return the pre-clip norm.

    A non-finite norm (a NaN or infinite gradient) applies no update.
    """
    norm = nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    if not torch.isfinite(norm):
        return float(norm)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate
    optimizer.step()
    return float(norm)
