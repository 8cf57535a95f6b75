"""``make_trainer``: the JAX trainer for a run, on one device or data-parallel over a device mesh.

JAX's model of several devices is one process per host driving all of its devices (``--devices N``
builds a mesh over the task-batch axis); several hosts join through ``jax.distributed.initialize``
(``jax_impl.distributed.initialize_from_env``). ``torchrun``'s one-process-per-device launch is refused.
"""

from __future__ import annotations

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint
from cogmeta.distributed import require_device_count, under_torchrun
from jax_impl.backend import make_tutorial_trainer
from jax_impl.trainer import Trainer


def make_trainer(config: RunConfig, checkpoint: Checkpoint | None = None, devices: int | None = None) -> Trainer:
    """The trainer of ``config`` (resumed from ``checkpoint``) on ``devices`` devices (None: one, or every host's)."""
    require_device_count(devices)
    if under_torchrun():
        raise ValueError("torchrun starts one process per device, which is PyTorch's model; JAX uses one process per "
                         "host: run `cogmeta train --backend jax --devices N` directly (docs/scale-out.md)")
    from jax_impl.distributed import DataParallelTrainer, initialize_from_env

    multihost = initialize_from_env()
    if devices is None and not multihost:
        return make_tutorial_trainer(config, checkpoint)
    return DataParallelTrainer(config, checkpoint, devices=devices)


__all__ = ["make_trainer"]
