"""Canonical parameters: PyTorch ``state_dict`` names and layouts, stored as safetensors.

Both backends hold exactly these tensors (the JAX recurrent cells are written to store torch's
layout), so converting between frameworks is a copy with no renaming or transposing:

    core.weight_ih_l{k}  (G*H, I_k)   G = 3 (GRU: r, z, n) or 4 (LSTM: i, f, g, o); I_0 = 2, I_k = H
    core.weight_hh_l{k}  (G*H, H)
    core.bias_ih_l{k}    (G*H,)
    core.bias_hh_l{k}    (G*H,)
    head.weight          (O, H)       O = 2 (Gaussian: mean, log std) or 1 (Bernoulli: logit)
    head.bias            (O,)

Loading checks names, shapes and dtypes (against the config's ``train.dtype``) and names the offending
tensor. Every file cogmeta writes records the SHA-256 of its tensors in its metadata
(``cogmeta.io.DIGEST_KEY``); :func:`read_safetensors` checks it on every load and refuses a file whose
bytes changed (:class:`CorruptFileError`). Files written before the digest existed have none and still
load (names, shapes, dtype and finiteness are checked as before).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from cogmeta.config import INPUT_SIZE, RunConfig
from cogmeta.io import DIGEST_KEY, atomic_save_safetensors, tensors_digest

FORMAT = "cogmeta-weights-1"

_GATES = {"gru": 3, "lstm": 4}


class WeightsError(ValueError):
    """A weights file or dict does not match the model it is meant for."""


class CorruptFileError(WeightsError):
    """A safetensors file is unreadable, or its tensors do not match the SHA-256 recorded when it was written."""


def parameter_shapes(config: RunConfig) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape for the model described by ``config``, in ``state_dict`` order (any model
    family: its ``ModelFamily.shapes``)."""
    return config.family.parameter_shapes(config)


def core_shapes(config: RunConfig, input_size: int) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape of the recurrent core ``core.*_l{k}`` of ``config.model`` reading ``input_size``
    inputs per step (torch's ``nn.GRU`` / ``nn.LSTM`` layout; every recurrent family's core)."""
    hidden, gates = config.model.hidden_size, _GATES[config.model.cell]
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(config.model.num_layers):
        inputs = input_size if layer == 0 else hidden
        shapes[f"core.weight_ih_l{layer}"] = (gates * hidden, inputs)
        shapes[f"core.weight_hh_l{layer}"] = (gates * hidden, hidden)
        shapes[f"core.bias_ih_l{layer}"] = (gates * hidden,)
        shapes[f"core.bias_hh_l{layer}"] = (gates * hidden,)
    return shapes


def meta_learner_shapes(config: RunConfig) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape of the tutorial meta-learner (the layout in this module's docstring)."""
    hidden = config.model.hidden_size
    shapes = core_shapes(config, INPUT_SIZE)
    shapes["head.weight"] = (config.output_size, hidden)
    shapes["head.bias"] = (config.output_size,)
    return shapes


def check_tensors(tensors: Mapping[str, np.ndarray], shapes: Mapping[str, tuple[int, ...]], model: str,
                  dtype: str | None = None) -> None:
    """Raise :class:`WeightsError` unless ``tensors`` has exactly the names of ``shapes``, with those shapes,
    finite values and (if given) dtype ``dtype``; the message lists every problem and describes ``model``.

    The one validation of every weights file and dict of the library (all model families).
    """
    problems = [f"missing tensor {name!r}" for name in shapes if name not in tensors]
    problems += [f"unexpected tensor {name!r}" for name in sorted(tensors) if name not in shapes]
    wrong_dtype: dict[str, str] = {}  # name -> dtype, for the tensors whose dtype is not ``dtype``
    for name, shape in shapes.items():
        if name in tensors:
            value = np.asarray(tensors[name])
            if tuple(value.shape) != tuple(shape):
                problems.append(f"tensor {name!r} has shape {tuple(value.shape)}, expected {tuple(shape)}")
            elif dtype is not None and str(value.dtype) != dtype:
                wrong_dtype[name] = str(value.dtype)
            elif not np.issubdtype(value.dtype, np.floating):
                problems.append(f"tensor {name!r} has dtype {value.dtype}, expected a float type")
            elif not np.all(np.isfinite(value)):
                problems.append(f"tensor {name!r} contains non-finite values")
    present = [name for name in shapes if name in tensors]
    if len(wrong_dtype) > 1 and len(wrong_dtype) == len(present) and len(set(wrong_dtype.values())) == 1:
        problems.append(f"all {len(present)} tensors have dtype {next(iter(wrong_dtype.values()))}, expected {dtype}")
    else:
        problems += [f"tensor {name!r} has dtype {found}, expected {dtype}" for name, found in wrong_dtype.items()]
    if problems:
        raise WeightsError(f"weights do not fit {model}: " + "; ".join(problems))


def model_description(config: RunConfig) -> str:
    """The model of ``config`` in words, for error messages about its tensors."""
    model = config.model
    if model.family != "meta_learner":
        return f"the {model.family} model of a {model.num_layers}-layer {model.cell.upper()} with hidden_size={model.hidden_size} for task {config.task.name!r}"
    return f"a {model.num_layers}-layer {model.cell.upper()} with hidden_size={model.hidden_size} for task {config.task.name!r}"


def validate_weights(tensors: Mapping[str, np.ndarray], config: RunConfig, dtype: str | None = None) -> None:
    """Raise :class:`WeightsError` unless ``tensors`` has exactly the canonical names and shapes of ``config``'s
    model (and dtype ``dtype`` if given: "float32"/"float64")."""
    check_tensors(tensors, parameter_shapes(config), model_description(config), dtype)


def save_weights(path: str | Path, tensors: Mapping[str, np.ndarray], config: RunConfig, framework: str) -> None:
    """Validate (names, shapes, finiteness, ``config.train.dtype``) and write ``tensors`` to a safetensors file
    (atomically, with their SHA-256 in the metadata)."""
    arrays = {name: np.asarray(value) for name, value in tensors.items()}
    validate_weights(arrays, config, dtype=config.train.dtype)
    atomic_save_safetensors(path, arrays, {"format": FORMAT, "framework": framework})


def read_safetensors(path: str | Path, what: str = "weights file") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file; a missing file is FileNotFoundError, an unreadable one
    (truncated, not safetensors, a pickle) or one whose tensors do not match the SHA-256 in its metadata
    :class:`CorruptFileError`, both naming the file and ``what`` it should be. A file without a recorded
    SHA-256 (written before cogmeta recorded one) is read unchecked. Nothing is executed while reading."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError, TypeError) as error:
        raise CorruptFileError(f"{path} is not a readable {what} (corrupt, truncated or not safetensors): {error}") from error
    recorded = metadata.pop(DIGEST_KEY, None)
    if recorded is not None:
        actual = tensors_digest(tensors)
        if actual != recorded:
            raise CorruptFileError(
                f"{path} is corrupt: its tensors' SHA-256 is {actual[:16]}..., but the {what} recorded "
                f"{recorded[:16]}... when it was written (the file was damaged or changed since); restore it "
                f"from a copy or train again"
            )
    return tensors, metadata


def load_weights(path: str | Path, config: RunConfig) -> dict[str, np.ndarray]:
    """Read a safetensors file (checking its SHA-256) and validate it against ``config``: names, shapes,
    finite values and the dtype ``config.train.dtype``."""
    tensors, _ = read_safetensors(path)
    ordered = {name: tensors[name] for name in parameter_shapes(config) if name in tensors}
    ordered.update({name: value for name, value in tensors.items() if name not in ordered})
    try:
        validate_weights(ordered, config, dtype=config.train.dtype)
    except WeightsError as error:
        raise WeightsError(f"{path}: {error}") from None
    return ordered


def trained_with(path: str | Path) -> str | None:
    """The framework recorded in a weights file's metadata ("torch" or "jax"), or None if it has none.

    Only a default for ``--backend``: an unreadable file gives None here and its real error when loaded.
    """
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:
            return (handle.metadata() or {}).get("framework")
    except Exception:  # noqa: BLE001 - load_weights reports what is wrong with the file
        return None
