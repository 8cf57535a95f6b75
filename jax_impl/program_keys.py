"""The executable store's keys of a tutorial run's two programs, computable before Flax is imported, and their load
started then (``cogmeta train``'s start-up).

A warm ``cogmeta train --backend jax`` run needs two compiled programs before its first training call: the training
program (``jax_impl.trainer.make_run_steps``, loaded from ``jax_impl.executable_store`` on the trainer's thread) and
the held-out forward pass (``jax_impl.backend``, the step-0 check). Loaded when the trainer is built, they share
the run's first 0.1 s side by side (the load 0.10-0.11 s, the check's tracing, lowering and cache load 0.09 s;
docs/performance.md, "Both programs loaded during the imports"). Both depend only on the configuration, the devices
and the library, so :func:`prefetch` computes their keys as soon as JAX is imported and loads them on a thread while
the main thread still imports Flax, Optax and the library's modules (0.3-0.5 s in which the second core idles).
The trainer and the forward pass then compute their keys as always and find the loaded programs waiting
(``ExecutableStore.load``). A key predicted wrongly is a wasted load, never a wrong program: what runs is looked up
by the key of the program that runs (``tests/test_program_keys.py`` checks that the predictions are those keys).

This module imports only JAX and the framework-free core, so that the keys can be computed before Flax is.
"""

from __future__ import annotations

import os
from typing import Mapping

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

from cogmeta.config import RunConfig
from jax_impl.executable_store import prefetch as prefetch_keys
from jax_impl.executable_store import program_key, store_from_environment
from jax_impl.numerics import matmul

#: ``train`` fields that do not enter the training program: the member's seed and learning rate are its arguments
#: (``jax_impl.trainer.make_run_steps``), the rest is read on the host between calls, except what the held-out check
#: of ``until_kl`` compiles in (its period and the held-out set's size: :func:`describe` adds them). A run that differs
#: from a stored one only in these loads the stored program (tests/test_executable_store.py lowers both and compares).
HOST_TRAIN_FIELDS = ("seed", "learning_rate", "log_every", "checkpoint_every", "eval_every", "eval_tasks", "until_kl",
                     "until_kl_every")
#: Tasks per device from which a single run on a CPU splits its batch over the host devices by default. Measured
#: on the 2-core VM (the README's GRU-64, T 7, 8,000 steps, whole runs): batch 128 on two devices 1.75-1.8x
#: faster than on one, batch 32 (16 per device) 1.07x; below that the halves are too small to repay the split.
AUTO_SPLIT_FROM = 16
#: Mesh axis of the task batch (data parallelism within one run: ``jax_impl.distributed``).
BATCH_AXIS = "tasks"
#: The tutorial meta-learner's objective (``jax_impl.backend.MetaLearnerObjective``), named here without importing it.
TUTORIAL_OBJECTIVE = "jax_impl.backend.MetaLearnerObjective"
#: Tasks per call of the compiled forward pass (``jax_impl.backend``, through ``jax_impl.pieces.in_pieces``): one
#: program serves the held-out checks (1,000 tasks by default), the figures (16), the summary (2,000) and evaluation
#: chunks (5,000); each size compiled its own before (measured cold on the 2-core VM: 0.20-0.23 s each, three of them
#: in a ``cogmeta train --until-kl``).
FORWARD_TASKS = 1_000


def auto_devices(config: RunConfig) -> int:
    """Devices a single run's batch is split over when ``--devices`` is not given: on a CPU, the most host devices
    (one per core, ``cogmeta.host_devices``) that divide the batch into shares of at least :data:`AUTO_SPLIT_FROM`
    tasks; 1 on an accelerator (one device per run unless asked) or when no split qualifies."""
    if jax.default_backend() != "cpu":
        return 1
    batch = config.train.batch_size
    for count in range(len(jax.local_devices()), 1, -1):
        if batch % count == 0 and batch // count >= AUTO_SPLIT_FROM:
            return count
    return 1


def describe(config: RunConfig, objective_name: str) -> dict | None:
    """What determines the training program of the objective named ``objective_name`` (``module.QualName``) besides
    the library's code: the config less :data:`HOST_TRAIN_FIELDS` and PyTorch's options, and the objective's name;
    with ``train.until_kl``, the held-out check inside the program (its period and tasks; the target is an argument).
    None for an objective from outside the library, whose code the store's key would not cover."""
    if not objective_name.startswith("jax_impl."):
        return None
    data = config.to_dict()
    del data["torch"]  # PyTorch's options
    data["train"] = {name: value for name, value in data["train"].items() if name not in HOST_TRAIN_FIELDS}
    description = {"config": data, "objective": objective_name}
    if config.train.until_kl is not None:
        description["check"] = {"every": config.train.until_kl_every, "tasks": config.train.eval_tasks}
    return description


def training_key(description: Mapping, trainer: str, steps_per_call: int) -> str:
    """The store key of a trainer's training program: ``description`` (:func:`describe`, with the mesh's devices for a
    data-parallel trainer), the trainer's class name, its steps per call and JAX's 64-bit mode."""
    return program_key({**description, "trainer": trainer, "steps_per_call": int(steps_per_call),
                        "x64": bool(jax.config.jax_enable_x64)})


def placement(sharding) -> dict:
    """What a compiled program needs to know of where its parameters lie: the kind of sharding, its devices in order
    and its partition spec, "replicated" for any spec that puts a whole copy on every device (a training call returns
    the replicated parameters as ``P(None,)``, placed as ``P()``: one program takes both)."""
    spec = "replicated" if sharding.is_fully_replicated else str(getattr(sharding, "spec", None))
    return {"kind": type(sharding).__name__, "devices": [str(device) for device in sharding._device_assignment],
            "spec": spec}


def forward_key(config: RunConfig, where: Mapping) -> str:
    """The store key of the tutorial model's forward pass on :data:`FORWARD_TASKS` tasks with parameters placed
    ``where`` (:func:`placement`): the config less its training and PyTorch sections, the dtype, and JAX's 64-bit
    mode determine it."""
    data = config.to_dict()
    del data["train"], data["torch"]
    return program_key({"program": "forward", "config": data, "dtype": config.train.dtype, "tasks": FORWARD_TASKS,
                        "placement": dict(where), "x64": bool(jax.config.jax_enable_x64)})


def planned_keys(config: RunConfig, devices: int | None, steps_per_call: int) -> list[str]:
    """The keys that ``jax_impl.launch.make_trainer(config, devices=devices)`` of the tutorial objective and its
    step-0 check will ask the store for: first the check's forward pass, then the training program (the trainer's
    thread loads that one beside the check)."""
    devices = auto_devices(config) if devices is None else devices
    description = describe(config, TUTORIAL_OBJECTIVE)
    where = run_placement(devices)
    if devices == 1:
        return [forward_key(config, placement(where)), training_key(description, "Trainer", steps_per_call)]
    mesh = [str(device) for device in where.mesh.devices.flat]
    return [forward_key(config, placement(where)), training_key({**description, "mesh": mesh}, "DataParallelTrainer",
                                                                steps_per_call)]


def run_placement(devices: int):
    """Where a single run on ``devices`` devices keeps its parameters (``jax_impl.launch.make_trainer``): the first
    device, or replicated over :func:`task_mesh`."""
    if devices == 1:
        return SingleDeviceSharding(jax.devices()[0])
    return NamedSharding(task_mesh(devices), PartitionSpec())


def make_device_mesh(devices: int, axis: str, axis_type: AxisType = AxisType.Explicit) -> Mesh:
    """A 1-D mesh over the first ``devices`` devices (of all hosts), axis name ``axis``."""
    available = jax.devices()
    if not 1 <= devices <= len(available):
        platform = available[0].platform
        hint = (" On a CPU, simulate devices for correctness checks by setting JAX_NUM_CPU_DEVICES="
                f"{devices} before Python starts (`cogmeta train --devices {devices}` does this itself)."
                if platform == "cpu" else "")
        raise ValueError(f"--devices {devices} asks for {devices} device(s) but JAX sees {len(available)} "
                         f"({platform}); use 1 <= devices <= {len(available)}.{hint}")
    return jax.make_mesh((devices,), (axis,), axis_types=(axis_type,), devices=available[:devices])


def task_mesh(devices: int) -> Mesh:
    """Mesh for data parallelism over the task batch (axis :data:`BATCH_AXIS`): a run's parameters are replicated
    over it (:func:`run_placement`), its batch split (``jax_impl.distributed``)."""
    return make_device_mesh(devices, BATCH_AXIS)


def prefetch(config: RunConfig, devices: int | None, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Start loading the programs of a tutorial run (:func:`planned_keys`) on a thread, where the ``cogmeta`` command
    turned the store on; the keys started (none without the store, in a multi-host launch, which must initialize
    JAX's distributed runtime before anything touches a device, or for a dtype whose 64-bit mode is not set yet)."""
    if environ.get("JAX_COORDINATOR_ADDRESS") or not environ.get("COGMETA_EXECUTABLE_STORE"):
        return []
    if (config.train.dtype == "float64") != bool(jax.config.jax_enable_x64):
        return []  # the trainer flips JAX's 64-bit mode first, which is part of every key
    store = store_from_environment(environ)
    if store is None:
        return []
    keys = planned_keys(config, devices, config.jax.steps_per_call)
    prefetch_keys(store, keys, then=warm_gemm)
    return keys


def warm_gemm() -> None:
    """Generate oneDNN's matrix-product kernels now. XLA:CPU runs a ``dot`` that contracts the leading axis (the
    weight gradients formed after the reverse scan, ``jax_impl.recurrent_layers``) through oneDNN's ``sgemm``, whose
    first call in a process generates its kernels: 25-35 ms of a warm run's first training call (``ONEDNN_VERBOSE=2``;
    every later call 0.01-0.04 ms). One small such product during start-up takes that out of the run."""
    square = np.ones((8, 8), np.float32)
    jax.jit(lambda a, b: matmul(a.T, b))(square, square).block_until_ready()  # a.T @ b.T: the leading axis contracted


__all__ = ["AUTO_SPLIT_FROM", "BATCH_AXIS", "FORWARD_TASKS", "HOST_TRAIN_FIELDS", "TUTORIAL_OBJECTIVE", "auto_devices",
           "describe", "forward_key", "make_device_mesh", "placement", "planned_keys", "prefetch", "run_placement",
           "task_mesh", "training_key", "warm_gemm"]
