"""Training checkpoints: weights, Adam state and step in one safetensors file, written atomically.

The Adam state is stored in framework-neutral form (torch ``exp_avg``/``exp_avg_sq`` = optax
``mu``/``nu``, one pair per canonical parameter; the step count is torch ``state["step"]`` = optax
``count``), so a run checkpointed by one backend resumes in the other.

Tensor names: ``param.<name>``, ``exp_avg.<name>``, ``exp_avg_sq.<name>``.

Both functions check the tensors against the model's canonical names and shapes: those of a tutorial
``RunConfig`` (``config``), or, for the other model families, ``shapes`` (name -> shape, in canonical
order) with ``model``, the description used in error messages (e.g. ``cogmeta.experiments.meta_seq2seq``).
They also check the dtype of every tensor (``config.train.dtype``, or ``dtype``) and the step
(an integer, ``0 <= step <= config.train.steps``, or ``max_step``); reading checks the file's SHA-256
(``cogmeta.weights.read_safetensors``).
"""

from __future__ import annotations

import re
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


def _expected(config: RunConfig | None, shapes: Mapping[str, tuple[int, ...]] | None, model: str | None,
              dtype: str | None, max_step: int | None) -> tuple[dict[str, tuple[int, ...]], str, str | None, int | None]:
    """(canonical name -> shape, model description, dtype, largest valid step) from a ``RunConfig`` or from
    explicit ``shapes`` (with the optional ``dtype`` and ``max_step``)."""
    if (config is None) == (shapes is None):
        raise TypeError("give either config (a RunConfig) or shapes (canonical name -> shape)")
    if config is not None:
        if dtype is not None or max_step is not None:
            raise TypeError("dtype and max_step come from config; give them only with shapes")
        return parameter_shapes(config), model_description(config), config.train.dtype, config.train.steps
    return dict(shapes), model or "the model", dtype, max_step


def _check_step(step: object, path: str | Path, max_step: int | None) -> int:
    """The checkpoint's step as an int; a :class:`WeightsError` naming the file unless ``0 <= step <= max_step``."""
    if isinstance(step, str):
        if not re.fullmatch(r"[0-9]+", step):
            raise WeightsError(f"checkpoint {path} records step {step!r}, which is not a non-negative integer; "
                               f"the file is damaged or was not written by cogmeta")
        step = int(step)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise WeightsError(f"checkpoint {path}: step {step!r} is not a non-negative integer")
    if max_step is not None and step > max_step:
        raise WeightsError(f"checkpoint {path} is at step {step}, beyond the run's total of {max_step} steps "
                           f"(train.steps): a checkpoint cannot be ahead of its run, so either the total asked for is "
                           f"below the steps already trained, or the file is damaged or belongs to another run")
    return int(step)


def save_checkpoint(path: str | Path, checkpoint: Checkpoint, config: RunConfig | None = None, *,
                    shapes: Mapping[str, tuple[int, ...]] | None = None, model: str | None = None,
                    dtype: str | None = None, max_step: int | None = None) -> None:
    """Validate and write ``checkpoint`` atomically (against ``config``'s model, or ``shapes``)."""
    expected, description, dtype, max_step = _expected(config, shapes, model, dtype, max_step)
    step = _check_step(checkpoint.step, path, max_step)
    tensors = {}
    for group in _GROUPS:
        arrays = getattr(checkpoint, group if group != "param" else "params")
        check_tensors(arrays, expected, description, dtype)
        tensors.update({f"{group}.{name}": np.asarray(value) for name, value in arrays.items()})
    metadata = {"format": FORMAT, "step": str(step), "framework": checkpoint.framework}
    atomic_save_safetensors(path, tensors, metadata)


def load_checkpoint(path: str | Path, config: RunConfig | None = None, *,
                    shapes: Mapping[str, tuple[int, ...]] | None = None, model: str | None = None,
                    dtype: str | None = None, max_step: int | None = None) -> Checkpoint:
    """Read and validate a checkpoint for the model of ``config`` (or the one with parameter ``shapes``):
    its SHA-256, format, tensor names, shapes, dtypes and finiteness, and its step."""
    expected, description, dtype, max_step = _expected(config, shapes, model, dtype, max_step)
    tensors, metadata = read_safetensors(path, "checkpoint")
    if metadata.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a cogmeta checkpoint (format {metadata.get('format')!r}, expected {FORMAT!r})")
    if "step" not in metadata:
        raise WeightsError(f"checkpoint {path} records no step (metadata 'step' is missing); the file is damaged or "
                           f"was not written by cogmeta")
    step = _check_step(metadata["step"], path, max_step)
    groups: dict[str, dict[str, np.ndarray]] = {group: {} for group in _GROUPS}
    for name, value in tensors.items():
        group, _, param = name.partition(".")
        if group not in groups:
            raise WeightsError(f"checkpoint {path} holds unexpected tensor {name!r}")
        groups[group][param] = value
    order = list(expected)
    for group in _GROUPS:
        try:
            check_tensors(groups[group], expected, description, dtype)
        except WeightsError as error:
            raise WeightsError(f"checkpoint {path}, group {group!r}: {error}") from None
        groups[group] = {name: groups[group][name] for name in order}
    return Checkpoint(
        step=step,
        params=groups["param"],
        exp_avg=groups["exp_avg"],
        exp_avg_sq=groups["exp_avg_sq"],
        framework=metadata.get("framework", ""),
    )


def checkpoint_step(path: str | Path) -> int | None:
    """The step in a checkpoint's metadata (its header only), or None if the file is missing or unreadable:
    ``load_checkpoint`` then reports what is wrong with it (resume checks read the step before loading)."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:
            return int((handle.metadata() or {})["step"])
    except Exception:  # noqa: BLE001 - any unreadable checkpoint is load_checkpoint's error to report
        return None
