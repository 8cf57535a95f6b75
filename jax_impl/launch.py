"""``make_trainer``: the JAX trainer for a run, on one device or data-parallel over a device mesh.

JAX's model of several devices is one process per host driving all of its devices (``--devices N``
builds a mesh over the task-batch axis; without it, a run on a CPU splits its batch over the host devices
that the ``cogmeta`` command creates, one per core, when each gets enough tasks: :func:`auto_devices`);
several hosts join through ``jax.distributed.initialize``
(``jax_impl.distributed.initialize_from_env``). ``torchrun``'s one-process-per-device launch is refused. Any
objective that declares the task axes of its batch (``batch_axes``) can be split: the tutorial's and RL²'s.
"""

from __future__ import annotations

from typing import Callable

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint
from cogmeta.distributed import require_device_count, under_torchrun
from cogmeta.held_out_check import HeldOutCheck
from jax_impl.backend import MetaLearnerObjective
from jax_impl.program_keys import AUTO_SPLIT_FROM, HOST_TRAIN_FIELDS, auto_devices, describe
from jax_impl.trainer import Objective, Trainer


def program_description(config: RunConfig, objective: Callable) -> dict | None:
    """What determines the training program of ``objective(config)`` besides the library's code, for the executable
    store (``jax_impl.executable_store``): :func:`jax_impl.program_keys.describe` of the objective's qualified name;
    None for an objective from outside the library, whose code the store's key would not cover."""
    module = getattr(objective, "__module__", "") or ""
    return describe(config, f"{module}.{getattr(objective, '__qualname__', '')}")


def make_trainer(config: RunConfig, checkpoint: Checkpoint | None = None, devices: int | None = None,
                 objective: Callable[[RunConfig], Objective] = MetaLearnerObjective) -> Trainer:
    """The trainer of ``objective(config)`` (default: the tutorial's; RL²'s ``jax_impl.rl2.make_trainer`` passes
    its own), resumed from ``checkpoint``, on ``devices`` devices (None: :func:`auto_devices` on one host, every
    host's devices in a multi-host job)."""
    require_device_count(devices)
    if under_torchrun():
        raise ValueError("torchrun starts one process per device, which is PyTorch's model; JAX uses one process per "
                         "host: run `cogmeta train --backend jax --devices N` directly (docs/scale-out.md)")
    from jax_impl.distributed import DataParallelTrainer, initialize_from_env

    multihost = initialize_from_env()
    if devices is None and not multihost:
        devices = auto_devices(config)
    # its next act is a training call: compile that program on a thread while the run is set up (``Trainer``)
    # (from the executable store, where the ``cogmeta`` command turned it on)
    stored_as = program_description(config, objective)
    until = HeldOutCheck.of(config)  # train.until_kl's check, inside the training calls
    if devices == 1 and not multihost:
        return Trainer(objective(config), checkpoint, steps_per_call=config.jax.steps_per_call, compile_ahead=True,
                       stored_as=stored_as, until=until)
    return DataParallelTrainer(config, checkpoint, devices=devices, objective=objective, compile_ahead=True,
                               stored_as=stored_as, until=until)


__all__ = ["AUTO_SPLIT_FROM", "HOST_TRAIN_FIELDS", "auto_devices", "make_trainer", "program_description"]
