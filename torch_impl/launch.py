"""``make_trainer``: the PyTorch trainer for a run, on one device or data-parallel under ``torchrun``.

PyTorch's model of several devices is one process per device (``torchrun`` sets the variables that
``cogmeta.distributed.launch_env`` reads); ``devices`` may then be left out, and must equal the number of
processes if given. Without ``torchrun`` only one device is possible.
"""

from __future__ import annotations

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint
from cogmeta.distributed import launch_env, require_device_count
from torch_impl.backend import make_tutorial_trainer
from torch_impl.trainer import Trainer


def make_trainer(config: RunConfig, checkpoint: Checkpoint | None = None, devices: int | None = None) -> Trainer:
    """The trainer of ``config`` (resumed from ``checkpoint``) on ``devices`` devices (None: what the launch gives)."""
    require_device_count(devices)
    env = launch_env()
    if env is None:
        if devices not in (None, 1):
            raise ValueError(
                f"PyTorch trains on {devices} devices with one process each: start it with "
                f"`torchrun --standalone --nproc-per-node={devices} -m cogmeta train --backend torch ...` "
                f"(--devices is then optional)"
            )
        return make_tutorial_trainer(config, checkpoint)
    from torch_impl.distributed import DataParallelTrainer

    return DataParallelTrainer(config, checkpoint, devices=devices)  # checks devices against the process count


__all__ = ["make_trainer"]
