"""Training checkpoints: weights, Adam state and step in one safetensors file, written atomically.

The Adam state is stored in framework-neutral form (torch ``exp_avg``/``exp_avg_sq`` = optax
``mu``/``nu``, one pair per canonical parameter; the step count is torch ``state["step"]`` = optax
``count``), so a run checkpointed by one backend resumes in the other.

Tensor names: ``param.<name>``, ``exp_avg.<name>``, ``exp_avg_sq.<name>``.

Both functions check the tensors against the model's canonical names and shapes: those of a tutorial
``RunConfig`` (``config``), or, for the other model families, ``shapes`` (name -> shape, in canonical
order) with ``model``, the description used in error messages (e.g. ``cogmeta.experiments.meta_seq2seq``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint
from cogmeta.io import atomic_save_safetensors
from cogmeta.weights import (
    WeightsError,
    check_tensors,
    model_description,
    parameter_shapes,
    read_safetensors,
)

FORMAT = "cogmeta-checkpoint-1"
_GROUPS = ("param", "exp_avg", "exp_avg_sq")


def _expected(config: RunConfig | None, shapes: Mapping[str, tuple[int, ...]] | None,
              model: str | None) -> tuple[dict[str, tuple[int, ...]], str]:
    """(canonical name -> shape, model description) from a ``RunConfig`` or from explicit ``shapes``."""
    if (config is None) == (shapes is None):
        raise TypeError("give either config (a RunConfig) or shapes (canonical name -> shape)")
    if config is not None:
        return parameter_shapes(config), model_description(config)
    return dict(shapes), model or "the model"


def save_checkpoint(path: str | Path, checkpoint: Checkpoint, config: RunConfig | None = None, *,
                    shapes: Mapping[str, tuple[int, ...]] | None = None, model: str | None = None) -> None:
    """Validate and write ``checkpoint`` atomically (against ``config``'s model, or ``shapes``)."""
    expected, description = _expected(config, shapes, model)
    tensors = {}
    for group in _GROUPS:
        arrays = getattr(checkpoint, group if group != "param" else "params")
        check_tensors(arrays, expected, description)
        tensors.update({f"{group}.{name}": np.asarray(value) for name, value in arrays.items()})
    metadata = {"format": FORMAT, "step": str(int(checkpoint.step)), "framework": checkpoint.framework}
    atomic_save_safetensors(path, tensors, metadata)


def load_checkpoint(path: str | Path, config: RunConfig | None = None, *,
                    shapes: Mapping[str, tuple[int, ...]] | None = None, model: str | None = None) -> Checkpoint:
    """Read and validate a checkpoint for the model of ``config`` (or the one with parameter ``shapes``)."""
    expected, description = _expected(config, shapes, model)
    tensors, metadata = read_safetensors(path, "checkpoint")
    if metadata.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a cogmeta checkpoint (format {metadata.get('format')!r}, expected {FORMAT!r})")
    groups: dict[str, dict[str, np.ndarray]] = {group: {} for group in _GROUPS}
    for name, value in tensors.items():
        group, _, param = name.partition(".")
        if group not in groups:
            raise WeightsError(f"checkpoint {path} holds unexpected tensor {name!r}")
        groups[group][param] = value
    order = list(expected)
    for group in _GROUPS:
        try:
            check_tensors(groups[group], expected, description)
        except WeightsError as error:
            raise WeightsError(f"checkpoint {path}, group {group!r}: {error}") from None
        groups[group] = {name: groups[group][name] for name in order}
    return Checkpoint(
        step=int(metadata["step"]),
        params=groups["param"],
        exp_avg=groups["exp_avg"],
        exp_avg_sq=groups["exp_avg_sq"],
        framework=metadata.get("framework", ""),
    )
