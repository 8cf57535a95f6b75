"""Recurrent cores: ``torch.nn.GRU`` and ``torch.nn.LSTM``, time-major.

These *are* the canonical layouts (``weight_ih_l{k}`` ``(G*H, I)``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
``bias_hh_l{k}``; gates r, z, n for the GRU and i, f, g, o for the LSTM); ``jax_impl.recurrent``
re-implements them with the same tensors. Default init: every tensor ~ U(-1/sqrt(H), 1/sqrt(H)).

GRU:  r = s(W_ir x + b_ir + W_hr h + b_hr),  z = s(W_iz x + b_iz + W_hz h + b_hz)
      n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h
LSTM: i, f, g, o = split(W_ih x + b_ih + W_hh h + b_hh)
      c' = s(f) * c + s(i) * tanh(g),  h' = s(o) * tanh(c')
"""

from __future__ import annotations

import torch
from torch import nn


class GRU(nn.GRU):
    """Multi-layer GRU over ``[T, B, I]`` inputs; returns ``([T, B, H] outputs, [L, B, H] final h)``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *, dtype: torch.dtype | None = None):
        super().__init__(input_size, hidden_size, num_layers, batch_first=False, dtype=dtype)


class LSTM(nn.LSTM):
    """Multi-layer LSTM over ``[T, B, I]`` inputs; returns ``([T, B, H] outputs, (h, c))``, each ``[L, B, H]``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *, dtype: torch.dtype | None = None):
        super().__init__(input_size, hidden_size, num_layers, batch_first=False, dtype=dtype)


CORES = {"gru": GRU, "lstm": LSTM}
