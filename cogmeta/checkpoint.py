"""Training checkpoints: weights, Adam state and step in one safetensors file, written atomically.

The Adam state is stored in framework-neutral form (torch ``exp_avg``/``exp_avg_sq`` = optax
``mu``/``nu``, one pair per canonical parameter; the step count is torch ``state["step"]`` = optax
``count``), so a run checkpointed by one backend resumes in the other.

Tensor names: ``param.<name>``, ``exp_avg.<name>``, ``exp_avg_sq.<name>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint
from cogmeta.io import atomic_save_safetensors
from cogmeta.weights import WeightsError, parameter_shapes, validate_weights

FORMAT = "cogmeta-checkpoint-1"
_GROUPS = ("param", "exp_avg", "exp_avg_sq")



def save_checkpoint(path: str | Path, checkpoint: Checkpoint, config: RunConfig) -> None:
    """Validate and write ``checkpoint`` atomically."""
    tensors = {}
    for group in _GROUPS:
        arrays = getattr(checkpoint, group if group != "param" else "params")
        validate_weights(arrays, config)
        tensors.update({f"{group}.{name}": np.asarray(value) for name, value in arrays.items()})
    metadata = {"format": FORMAT, "step": str(int(checkpoint.step)), "framework": checkpoint.framework}
    atomic_save_safetensors(path, tensors, metadata)


def load_checkpoint(path: str | Path, config: RunConfig) -> Checkpoint:
    """Read and validate a checkpoint for the model of ``config``."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{path} is not a readable checkpoint: {error}") from error
    if metadata.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a cogmeta checkpoint (format {metadata.get('format')!r}, expected {FORMAT!r})")
    groups: dict[str, dict[str, np.ndarray]] = {group: {} for group in _GROUPS}
    for name, value in tensors.items():
        group, _, param = name.partition(".")
        if group not in groups:
            raise WeightsError(f"checkpoint {path} holds unexpected tensor {name!r}")
        groups[group][param] = value
    order = list(parameter_shapes(config))
    for group in _GROUPS:
        try:
            validate_weights(groups[group], config)
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
