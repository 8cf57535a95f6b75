"""Framework-free pieces of data-parallel training: batch slicing, launch environment, config agreement.

Data parallelism splits the B tasks of every global batch over W workers (devices or processes). Worker
r trains on tasks ``[r B/W, (r + 1) B/W)`` of the batch that a single process would have drawn for
that step, and the workers average their gradients:

    grad = (1/W) sum_r (1/(T B/W)) sum_{t, i in shard r} grad nll_{t,i} = (1/(T B)) sum_{t,i} grad nll_{t,i}

which is the single-process gradient (equal shards make the mean of means the global mean). Every
worker then applies the same clipped Adam update, so parameters stay identical across workers and
equal to single-process training up to the rounding of the summation order.

Both backends use these helpers: ``jax_impl/distributed.py`` (a device mesh over the task-batch axis)
and ``torch_impl/distributed.py`` (one process per device, started by ``torchrun``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

#: Environment variables that ``torchrun`` sets for every worker (``env://`` rendezvous).
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

#: Seconds a worker waits for the others at start-up and in every collective before failing
#: (override with the environment variable ``COGMETA_DISTRIBUTED_TIMEOUT``).
DEFAULT_TIMEOUT_S = 120.0


def timeout_s(environ: Mapping[str, str] | None = None) -> float:
    """The start-up / collective timeout: ``COGMETA_DISTRIBUTED_TIMEOUT`` seconds, else :data:`DEFAULT_TIMEOUT_S`."""
    environ = os.environ if environ is None else environ
    text = environ.get("COGMETA_DISTRIBUTED_TIMEOUT", "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"COGMETA_DISTRIBUTED_TIMEOUT must be a positive number of seconds, got {text!r}")
    return value


class RendezvousError(RuntimeError):
    """The workers of a data-parallel run did not all meet within the timeout."""


def require_divisible(batch_size: int, workers: int, what: str = "devices") -> int:
    """Return ``batch_size // workers``; raise a ValueError that says how to fix an uneven split.

    An uneven split would make the mean of the per-worker means differ from the global mean (and
    the workers' programs differ), so it is refused rather than padded.
    """
    if workers < 1:
        raise ValueError(f"the number of {what} must be >= 1, got {workers}")
    if batch_size % workers:
        lower = batch_size - batch_size % workers
        raise ValueError(
            f"train.batch_size={batch_size} is not divisible by the {workers} {what}: every {what[:-1]} must get "
            f"the same number of tasks. Use --batch-size {lower} or {lower + workers}, or a {what[:-1]} count "
            f"that divides {batch_size}."
        )
    return batch_size // workers


def shard_bounds(batch_size: int, rank: int, workers: int, what: str = "devices") -> tuple[int, int]:
    """``(start, stop)`` of worker ``rank``'s tasks in a global batch of ``batch_size`` tasks."""
    local = require_divisible(batch_size, workers, what)
    if not 0 <= rank < workers:
        raise ValueError(f"rank must lie in [0, {workers - 1}], got {rank}")
    return rank * local, (rank + 1) * local


#: The task axis of the tutorial's observations ``[T, B, 1]``, what its data-parallel trainers split.
OBSERVATION_TASK_AXIS = 1


def take_shard(batch, axes, start: int, stop: int):
    """Tasks ``start:stop`` of a batch: every array leaf sliced along its task axis.

    ``batch`` is one array (numpy, torch or JAX) or a NamedTuple of them, and ``axes`` the matching int or
    NamedTuple of task axes (e.g. :data:`OBSERVATION_TASK_AXIS`, ``cogmeta.tasks.bandit.EPISODE_AXES``). Plain
    basic slicing, so a torch tensor comes back as a view, as the twins' single-device code would see it.
    """
    if isinstance(axes, int):
        return batch[(slice(None),) * axes + (slice(start, stop),)]
    if not isinstance(batch, tuple) or type(batch) is not type(axes):
        raise TypeError(f"the batch ({type(batch).__name__}) and its task axes ({type(axes).__name__}) must have the "
                        f"same structure: one array with an int axis, or NamedTuples of the same type")
    return type(batch)(*(take_shard(leaf, axis, start, stop) for leaf, axis in zip(batch, axes)))


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits in a ``torchrun`` launch (read from the ``env://`` variables)."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int

    @property
    def is_writer(self) -> bool:
        """Only rank 0 writes the run folder."""
        return self.rank == 0


def launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv | None:
    """The ``torchrun`` environment of this process, or ``None`` when it was started without one.

    Raises:
        ValueError: some but not all of the variables are set (e.g. ``RANK`` without ``MASTER_ADDR``),
            or one is malformed. The message names the missing ones and shows how to launch.
    """
    environ = os.environ if environ is None else environ
    present = [name for name in TORCHRUN_VARIABLES if environ.get(name, "") != ""]
    if not present:
        return None
    missing = [name for name in TORCHRUN_VARIABLES if name not in present]
    if missing:
        raise ValueError(
            f"incomplete distributed launch environment: {', '.join(present)} set but {', '.join(missing)} missing. "
            f"Start PyTorch data-parallel training with torchrun, which sets all of them, e.g. "
            f"`torchrun --standalone --nproc-per-node=2 -m cogmeta train --backend torch ...` (one node) or "
            f"`torchrun --nnodes=2 --node-rank=R --rdzv-endpoint=HOST:PORT ...` (several)."
        )
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        try:
            values[name] = int(environ[name])
        except ValueError:
            raise ValueError(f"environment variable {name} must be an integer, got {environ[name]!r}") from None
    if values["WORLD_SIZE"] < 1 or not 0 <= values["RANK"] < values["WORLD_SIZE"]:
        raise ValueError(f"RANK={values['RANK']} must lie in [0, WORLD_SIZE={values['WORLD_SIZE']})")
    if not 0 < values["MASTER_PORT"] < 65_536:
        raise ValueError(f"MASTER_PORT must be a TCP port in [1, 65535], got {values['MASTER_PORT']}")
    return LaunchEnv(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], environ["MASTER_ADDR"],
                     values["MASTER_PORT"])


def config_digest(config) -> str:
    """SHA-256 of the run config's canonical JSON: equal digests <=> equal configs (``RunConfig.to_dict``)."""
    text = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def require_same_config(digests: Sequence[str]) -> None:
    """Raise a ValueError naming the workers whose config differs from worker 0's.

    Every worker must train the same model on the same task stream; a worker with another seed or
    batch size would silently average gradients of different problems.
    """
    different = [rank for rank, digest in enumerate(digests) if digest != digests[0]]
    if different:
        raise ValueError(
            f"the run configs differ across workers: rank(s) {', '.join(map(str, different))} disagree with rank 0 "
            f"(config digests {', '.join(d[:12] for d in digests)}). Launch every worker with the same command "
            f"line and the same config file."
        )


def require_device_count(devices: object) -> None:
    """``devices`` is None (the launch decides) or a positive integer."""
    if devices is not None and (isinstance(devices, bool) or not isinstance(devices, int) or devices < 1):
        raise ValueError(f"devices must be a positive integer, got {devices!r}")


def under_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """Several torchrun workers (JAX must not be started that way: each would train and write alone)."""
    environ = os.environ if environ is None else environ
    return environ.get("TORCHELASTIC_RUN_ID", "") != "" and environ.get("WORLD_SIZE", "1") not in ("", "1")
