"""One JAX device per CPU core for the ``cogmeta`` command, so that a sweep's members fill the whole machine.

XLA:CPU shows a machine as one device by default and runs one program's operations on it one after
another: the small recurrent models of this library keep one core busy and leave the others idle (a second
intra-op thread does not help at these sizes; docs/performance.md). JAX can instead show N *host devices*
(``JAX_NUM_CPU_DEVICES``), each executing its part of a sharded program on its own thread. The sweep
engine (``jax_impl.engine.Engine``) splits its members over every local device, so with one device per
core, S members train in one compiled program on all cores (2.0-2.6x on the 2-core VM for 16 members,
docs/performance.md). A single run splits its batch over them when each gets enough tasks
(``jax_impl.launch.auto_devices``).

The ``cogmeta`` command sets ``JAX_NUM_CPU_DEVICES`` to the number of CPUs the process may use
(``os.sched_getaffinity``) before JAX is imported, through JAX's own environment variable, so library code
never changes JAX's global configuration behind a caller's back. A value the user set wins; a process
that imports JAX itself chooses for itself (``jax.config.update("jax_num_cpu_devices", N)`` before the
first computation). PyTorch has no such notion: its twin of this is ``cogmeta sweep --workers`` (one
process per core; ``cogmeta/sweep.py``).
"""

from __future__ import annotations

import os
import sys
from typing import MutableMapping

#: JAX's environment variable for the number of host (CPU) devices.
ENVIRONMENT_VARIABLE = "JAX_NUM_CPU_DEVICES"


def usable_cpus() -> list[int]:
    """The CPUs this process may run on, in order (its affinity mask where the OS has one); the host devices and
    the worker processes (``cogmeta.cpu_workers``) are sized from it."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def enable_for_command(environ: MutableMapping[str, str] = os.environ, cpus: int | None = None) -> int | None:
    """Set ``JAX_NUM_CPU_DEVICES`` to ``cpus`` (default: the CPUs this process may use, :func:`usable_cpus`)
    unless the user set it.

    Returns the device count set, or None: when the variable was already set (left as it is), when JAX was
    imported already (it read its environment then), or in a multi-host launch (``JAX_COORDINATOR_ADDRESS``
    set), where ``--devices`` counts every host's devices and each host keeps JAX's default.
    """
    if "jax" in sys.modules or ENVIRONMENT_VARIABLE in environ or environ.get("JAX_COORDINATOR_ADDRESS", ""):
        return None
    count = len(usable_cpus()) if cpus is None else int(cpus)
    if count < 1:
        raise ValueError(f"need at least one CPU device, got {count}")
    environ[ENVIRONMENT_VARIABLE] = str(count)
    return count


def pin_worker(environ: MutableMapping[str, str] = os.environ) -> None:
    """In a sweep worker pinned to its CPUs (before JAX is imported): one device per CPU it may use now,
    whatever the parent process chose for itself."""
    environ[ENVIRONMENT_VARIABLE] = str(len(usable_cpus()))
