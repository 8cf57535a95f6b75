"""Independent training runs split over processes pinned to one CPU each: PyTorch's way to the other cores.

A process that trains one of this library's small recurrent models uses one core: PyTorch at two intra-op
threads is slower than at one (docs/framework-differences.md, CPU threads), and Python drives one step at a
time. Independent runs (a sweep's members, a study grid's cells) fill the other cores whole when each
shard of them trains in a process of its own. JAX has a second way, in one process (host devices,
``cogmeta.host_devices``); this module is the one both backends share.

    results = run_pinned(function, shards, cpus)     # function(*shards[i]) in a process pinned to cpus[i]

Workers start with ``spawn`` (no framework state inherited from the parent), are pinned before any framework
is imported (JAX sizes its thread pools and host devices from the CPUs a process may use), and return their
results by pickling. :func:`auto_processes` is the rule of ``--workers auto``: one process per CPU once the
runs are long enough to repay starting them (importing a framework costs 2-3 s).

Framework-free: a worker imports what its function imports.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from cogmeta.host_devices import pin_worker, usable_cpus

#: Member-steps (the sum of every run's optimizer steps) from which :func:`auto_processes` starts one process per
#: CPU. Starting one costs 2-3 s (importing the framework), which shorter work (seconds of training) does not win
#: back; 4 sweep members x 1,000 steps already gained 1.3-1.4x (docs/performance.md).
AUTO_WORKERS_FROM = 4_000


def require_workers(workers, name: str = "workers") -> None:
    """``workers`` must be ``"auto"`` or an integer from 1 to the CPUs this process may use (ValueError naming
    ``name`` otherwise)."""
    cpus = len(usable_cpus())
    if workers != "auto" and (not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= cpus):
        raise ValueError(f"{name} must be 'auto' or an integer from 1 to the {cpus} CPU(s) this process may use, "
                         f"got {workers!r}")


def auto_processes(runs: int, member_steps: int, cpus: int, devices_in_one_process: bool = False) -> int:
    """Processes for ``runs`` independent runs of ``member_steps`` optimizer steps in all on ``cpus`` CPUs: 1 when one
    process already spreads them over the cores (JAX's engine over host devices) or when the work is shorter
    than :data:`AUTO_WORKERS_FROM` member-steps; else one per CPU, at most one per run."""
    if devices_in_one_process or member_steps < AUTO_WORKERS_FROM:
        return 1
    return max(1, min(cpus, runs))


def run_pinned(function: Callable[..., Any], shards: Sequence[tuple], cpus: Sequence[int]) -> list[Any]:
    """``[function(*shards[i]) for i]``, shard i in a fresh process pinned to ``cpus[i]``; a worker's error is
    raised here. ``function`` must be importable by name (a module-level function), its arguments picklable."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if len(shards) != len(cpus):
        raise ValueError(f"one CPU per shard: {len(shards)} shards, {len(cpus)} CPUs")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(cpus), mp_context=context) as pool:
        futures = [pool.submit(_pinned, cpu, function, tuple(shard)) for cpu, shard in zip(cpus, shards)]
        return [future.result() for future in futures]


def _pinned(cpu: int, function: Callable[..., Any], arguments: tuple) -> Any:
    """In the worker: pin to ``cpu``, one JAX device for it, then run."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    pin_worker()  # one JAX device: this worker's CPU, not the parent's count
    return function(*arguments)
