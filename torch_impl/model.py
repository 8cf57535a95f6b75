"""The meta-learner: recurrent core + linear head, over time-major ``[T, B, 2]`` inputs.

The output at step t depends on x_1..x_t only (the inputs are the start token and the shifted
observations), so one forward pass yields the predictive for every prefix length t = 0..T-1 and one
sequence trains all of them.
"""

from __future__ import annotations

import torch
from torch import nn

from cogmeta.config import INPUT_SIZE, RunConfig
from torch_impl.heads import nll
from torch_impl.recurrent import CORES


class MetaLearner(nn.Module):
    """``core`` (GRU/LSTM) then ``head`` (Linear H -> O).

    Args:
        config: the run config (model section and the task's predictive family are used).
        dtype: parameter dtype.
    """

    def __init__(self, config: RunConfig, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.family = config.task.family
        model = config.model
        self.core = CORES[model.cell](INPUT_SIZE, model.hidden_size, model.num_layers, dtype=dtype)
        self.head = nn.Linear(model.hidden_size, config.output_size, dtype=dtype)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[T, B, 2]`` -> raw predictive parameters ``[T, B, O]``."""
        check_inputs(inputs, self.head.weight.dtype)
        hidden, _ = self.core(inputs)
        return self.head(hidden)


def sequence_nll(model: MetaLearner, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean NLL over all T steps and B tasks (the training loss)."""
    return nll(model.family, model(inputs), targets).mean()


def check_inputs(inputs: torch.Tensor, dtype: torch.dtype) -> None:
    """Raise a ValueError on a wrong shape or dtype instead of an opaque kernel error."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor of shape [T, B, {INPUT_SIZE}], got {type(inputs).__name__}")
    if inputs.ndim != 3 or inputs.shape[-1] != INPUT_SIZE:
        raise ValueError(f"inputs must have shape [T, B, {INPUT_SIZE}] (time-major), got {tuple(inputs.shape)}")
    if inputs.dtype != dtype:
        raise ValueError(f"inputs have dtype {inputs.dtype} but the model's parameters are {dtype}; cast the inputs")
