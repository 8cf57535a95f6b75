"""Canonical weights <-> a torch model (the canonical names *are* the ``state_dict`` names)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn


def model_to_canonical(model: nn.Module) -> dict[str, np.ndarray]:
    """``state_dict`` as numpy arrays (copies, in the model's dtype)."""
    return {name: tensor.detach().cpu().numpy().copy() for name, tensor in model.state_dict().items()}


def load_canonical(model: nn.Module, tensors: Mapping[str, np.ndarray]) -> None:
    """Copy canonical arrays into ``model`` (cast to its dtype); names and shapes must match exactly."""
    own = model.state_dict()
    missing = [name for name in own if name not in tensors]
    extra = [name for name in tensors if name not in own]
    if missing or extra:
        raise ValueError(f"weights do not match the model: missing {missing}, unexpected {extra}")
    for name, target in own.items():
        value = np.asarray(tensors[name])
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(f"tensor {name!r} has shape {tuple(value.shape)}, the model expects {tuple(target.shape)}")
    with torch.no_grad():
        for name, target in own.items():
            target.copy_(torch.as_tensor(np.asarray(tensors[name])).to(target.dtype))
