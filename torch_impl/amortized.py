"""The amortized posterior of "learning to infer": a small network maps a query to q(h | d) over two urns.

    x [B, 6] --input: Linear(6 -> H)--> a [B, H]
             --rbf: phi_j = exp(-beta_j (a_j - c_j)^2)--> phi [B, H]     (beta init 0.1, c init 0)
             --output: Linear(H -> 2)--> logits [B, 2]  (hypotheses A, B)

q = softmax(logits); the model's posterior log-odds of B is logits[:, 1] - logits[:, 0]. With H = 1 the
network can only represent a bump of one linear projection of the query: its limited capacity is the
source of the biases the experiments reproduce.

Loss: the exact reverse KL to the true posterior p(h | d), averaged over the batch,

    KL(q || p) = sum_h q_h (log q_h - log p_h),
    log q = z - logsumexp(z),   logsumexp(z) = m + log(exp(z_0 - m) + exp(z_1 - m)),  m = max(z_0, z_1),
    log p = (log sigmoid(-L), log sigmoid(L)),   log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)),

with L the exact log-odds of the query. The paper estimates the gradient of the same objective with a
score-function estimator over 50 samples; with two hypotheses the exact value is cheap. Both frameworks
write these formulas with the same elementary operations (``jax_impl/amortized.py``).

Canonical parameters (torch ``state_dict`` names, shared with JAX): ``input.weight (H, 6)``,
``input.bias (H,)``, ``rbf.beta (H,)``, ``rbf.centre (H,)``, ``output.weight (2, H)``, ``output.bias (2,)``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from cogmeta.experiments.amortized_spec import (
    BETA_INIT,
    CENTRE_INIT,
    QUERY_FEATURES,
    check_hidden,
    validate_weights,
)


class RBF(nn.Module):
    """``[B, H]`` -> ``[B, H]``: exp(-beta (a - centre)^2), one learned width and centre per unit."""

    def __init__(self, hidden: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.beta = nn.Parameter(torch.full((hidden,), BETA_INIT, dtype=dtype))
        self.centre = nn.Parameter(torch.full((hidden,), CENTRE_INIT, dtype=dtype))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.beta * (a - self.centre) ** 2)


class AmortizedPosterior(nn.Module):
    """``[B, 6]`` queries -> ``[B, 2]`` logits of (A, B). Linear weights use torch's default init."""

    def __init__(self, hidden: int = 1, dtype: torch.dtype = torch.float32):
        super().__init__()
        hidden = check_hidden(hidden)
        self.input = nn.Linear(QUERY_FEATURES, hidden, dtype=dtype)
        self.rbf = RBF(hidden, dtype=dtype)
        self.output = nn.Linear(hidden, 2, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 1 or x.shape[-1] != QUERY_FEATURES:
            raise ValueError(f"queries must have shape [..., {QUERY_FEATURES}], got {tuple(x.shape)}")
        return self.output(self.rbf(self.input(x)))


def model_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """``[..., 2]`` logits -> ``[...]`` log q(B) - log q(A)."""
    return logits[..., 1] - logits[..., 0]


def log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """log(1 / (1 + exp(-x))) = min(x, 0) - log1p(exp(-|x|)), stable for any x."""
    return torch.minimum(x, torch.zeros_like(x)) - torch.log1p(torch.exp(-torch.abs(x)))


def kl_divergence(logits: torch.Tensor, target_log_odds: torch.Tensor) -> torch.Tensor:
    """KL(q || p) per query: ``logits [B, 2]``, ``target_log_odds [B]`` -> ``[B]`` nats."""
    if logits.shape[-1] != 2 or logits.shape[:-1] != target_log_odds.shape:
        raise ValueError(f"logits [B, 2] and target_log_odds [B] do not match: {tuple(logits.shape)}, "
                         f"{tuple(target_log_odds.shape)}")
    m = torch.maximum(logits[..., 0], logits[..., 1])
    lse = m + torch.log(torch.exp(logits[..., 0] - m) + torch.exp(logits[..., 1] - m))
    log_q = logits - lse[..., None]
    log_p = torch.stack([log_sigmoid(-target_log_odds), log_sigmoid(target_log_odds)], dim=-1)
    return torch.sum(torch.exp(log_q) * (log_q - log_p), dim=-1)


def kl_loss(logits: torch.Tensor, target_log_odds: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(q || p): ``logits [B, 2]``, ``target_log_odds [B]`` -> scalar."""
    return torch.mean(kl_divergence(logits, target_log_odds))


def get_weights(model: AmortizedPosterior) -> dict[str, np.ndarray]:
    """Canonical weights (copies) as numpy arrays."""
    return {name: value.detach().cpu().numpy().copy() for name, value in model.state_dict().items()}


def set_weights(model: AmortizedPosterior, weights: Mapping[str, np.ndarray]) -> AmortizedPosterior:
    """Copy canonical weights into ``model`` (validated: names, shapes, finiteness); returns the model."""
    hidden = model.rbf.beta.shape[0]
    validate_weights(weights, hidden)
    dtype = model.rbf.beta.dtype
    model.load_state_dict({name: torch.as_tensor(np.asarray(value)).to(dtype) for name, value in weights.items()})
    return model
