"""``make_trainer``: the PyTorch trainer for a run, on one device or data-parallel under ``torchrun``.

PyTorch's model of several devices is one process per device (``torchrun`` sets the variables that
``cogmeta.distributed.launch_env`` reads); ``devices`` may then be left out, and must equal the number of
processes if given. Without ``torchrun`` only one device is possible. Any objective that declares the task
axes of its batch (``batch_axes``) can be split: the tutorial's and RL²'s.
"""

from __future__ import annotations

from typing import Callable

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint
from cogmeta.distributed import launch_env, require_device_count
from cogmeta.held_out_check import HeldOutCheck
from torch_impl.backend import MetaLearnerObjective, make_tutorial_trainer
from torch_impl.numerics import configure
from torch_impl.trainer import Objective, Trainer


def make_trainer(config: RunConfig, checkpoint: Checkpoint | None = None, devices: int | None = None,
                 objective: Callable[[RunConfig], Objective] = MetaLearnerObjective) -> Trainer:
    """The trainer of ``objective(config)`` (default: the tutorial's; RL²'s ``torch_impl.rl2.make_trainer`` passes
    its own), resumed from ``checkpoint``, on ``devices`` devices (None: what the launch gives)."""
    require_device_count(devices)
    env = launch_env()
    if env is None:
        if devices not in (None, 1):
            raise ValueError(
                f"PyTorch trains on {devices} devices with one process each: start it with "
                f"`torchrun --standalone --nproc-per-node={devices} -m cogmeta train --backend torch ...` "
                f"(--devices is then optional)"
            )
        if config.torch.cuda_graphs:  # RunConfig allows it only for the tutorial's family, whose step has that form
            return make_tutorial_trainer(config, checkpoint)
        configure(config.torch.threads)
        built = objective(config)
        return Trainer(built, checkpoint, steps_per_call=config.train.log_every, device=built.device,
                       until=HeldOutCheck.of(config))
    from torch_impl.distributed import DataParallelTrainer

    # checks devices against the process count
    return DataParallelTrainer(config, checkpoint, devices=devices, objective=objective, until=HeldOutCheck.of(config))


__all__ = ["make_trainer"]
