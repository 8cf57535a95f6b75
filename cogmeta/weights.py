"""Canonical parameters: PyTorch ``state_dict`` names and layouts, stored as safetensors.

Both backends hold exactly these tensors (the JAX recurrent cells are written to store torch's
layout), so converting between frameworks is a copy with no renaming or transposing:

    core.weight_ih_l{k}  (G*H, I_k)   G = 3 (GRU: r, z, n) or 4 (LSTM: i, f, g, o); I_0 = 2, I_k = H
    core.weight_hh_l{k}  (G*H, H)
    core.bias_ih_l{k}    (G*H,)
    core.bias_hh_l{k}    (G*H,)
    head.weight          (O, H)       O = 2 (Gaussian: mean, log std) or 1 (Bernoulli: logit)
    head.bias            (O,)

Loading checks names, shapes and dtypes and names the offending tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from cogmeta.config import INPUT_SIZE, RunConfig
from cogmeta.io import atomic_save_safetensors

FORMAT = "cogmeta-weights-1"

_GATES = {"gru": 3, "lstm": 4}


class WeightsError(ValueError):
    """A weights file or dict does not match the model it is meant for."""


def parameter_shapes(config: RunConfig) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape for the model described by ``config``, in ``state_dict`` order."""
    hidden, gates = config.model.hidden_size, _GATES[config.model.cell]
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(config.model.num_layers):
        inputs = INPUT_SIZE if layer == 0 else hidden
        shapes[f"core.weight_ih_l{layer}"] = (gates * hidden, inputs)
        shapes[f"core.weight_hh_l{layer}"] = (gates * hidden, hidden)
        shapes[f"core.bias_ih_l{layer}"] = (gates * hidden,)
        shapes[f"core.bias_hh_l{layer}"] = (gates * hidden,)
    shapes["head.weight"] = (config.output_size, hidden)
    shapes["head.bias"] = (config.output_size,)
    return shapes


def validate_weights(tensors: Mapping[str, np.ndarray], config: RunConfig, dtype: str | None = None) -> None:
    """Raise :class:`WeightsError` unless ``tensors`` has exactly the canonical names and shapes.

    Args:
        tensors: name -> array.
        config: the run whose model the tensors must fit.
        dtype: if given ("float32"/"float64"), every tensor must have it.
    """
    expected = parameter_shapes(config)
    missing = [name for name in expected if name not in tensors]
    extra = sorted(name for name in tensors if name not in expected)
    problems = []
    if missing:
        problems.append(f"missing tensor(s): {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected tensor(s): {', '.join(extra)}")
    for name, shape in expected.items():
        if name in tensors:
            actual = tuple(np.shape(tensors[name]))
            if actual != shape:
                problems.append(f"tensor {name!r} has shape {actual}, expected {shape}")
            elif dtype is not None and str(np.asarray(tensors[name]).dtype) != dtype:
                problems.append(f"tensor {name!r} has dtype {np.asarray(tensors[name]).dtype}, expected {dtype}")
            elif not np.all(np.isfinite(tensors[name])):
                problems.append(f"tensor {name!r} contains non-finite values")
    if problems:
        model = config.model
        raise WeightsError(
            f"weights do not fit a {model.num_layers}-layer {model.cell.upper()} with hidden_size={model.hidden_size} "
            f"for task {config.task.name!r}: " + "; ".join(problems)
        )


def save_weights(path: str | Path, tensors: Mapping[str, np.ndarray], config: RunConfig, framework: str) -> None:
    """Validate and write ``tensors`` to a safetensors file (atomically)."""
    arrays = {name: np.asarray(value) for name, value in tensors.items()}
    validate_weights(arrays, config)
    atomic_save_safetensors(path, arrays, {"format": FORMAT, "framework": framework})


def load_weights(path: str | Path, config: RunConfig) -> dict[str, np.ndarray]:
    """Read a safetensors file and validate it against ``config``; arrays keep their stored dtype."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{path} is not a readable safetensors file: {error}") from error
    ordered = {name: tensors[name] for name in parameter_shapes(config) if name in tensors}
    ordered.update({name: value for name, value in tensors.items() if name not in ordered})
    validate_weights(ordered, config)
    return ordered
