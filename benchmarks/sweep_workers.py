"""The second core for sweeps: one core against two, both backends, whole `cogmeta sweep` processes.

    python benchmarks/sweep_workers.py                 # -> benchmarks/results/sweep-workers-cpu.{md,csv}
    python benchmarks/sweep_workers.py --seeds 8 --steps 1000 --repeats 3 --out /tmp/bench

Each measurement starts ``cogmeta sweep --task gaussian --seeds S --steps N --workers W --backend B`` as a
fresh process, as a user does, and times it whole (start-up, training, run folders, summary), in the
user's default environment: no ``XLA_FLAGS`` (one JAX process may run parts of its program on both
cores), PyTorch at its default 1 thread. Workers are pinned to one CPU each (``cogmeta.sweep``). Ways to
use the cores, each against the same backend on one core (``--workers 1``; JAX with ``JAX_NUM_CPU_DEVICES=1``):

- ``2 processes``: ``--workers 2`` (both backends);
- ``2 devices`` (JAX): one process whose engine splits the members over one host device per CPU, what
  ``cogmeta sweep`` does by default (``cogmeta.host_devices``, ``jax_impl.engine``).

``--baseline PATH`` adds the same configurations run from another checkout (``git worktree add PATH REV``) as
``torch (baseline)`` and ``jax (baseline)``, in the same rounds, for before/after figures from one run.

The configurations take turns, one run of each per round, so that a change in load falls on all of them;
JAX runs read a compilation cache that an untimed run of each configuration filled first (the
steady state of a machine that has run the command before; ``cogmeta.compilation_cache``).

The measure is member-updates per second (members x steps / whole-process seconds) and the gain of two
workers over one for the same backend in the same round. Medians over the rounds. Timings are never
asserted by tests.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cogmeta.cli_options import integer
from cogmeta.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("backend", "cores", "round", "seconds", "member_updates_per_s")
#: (backend, how the cores are used, --workers, JAX devices per process): one core, then the ways to use two.
CONFIGURATIONS = (("torch", "1 process", 1, 1), ("torch", "2 processes", 2, 1), ("jax", "1 device", 1, 1),
                  ("jax", "2 processes", 2, 1), ("jax", "2 devices", 1, 2))


def run_once(backend: str, workers: int, devices: int, scratch: Path, cache: Path, args) -> float:
    """Seconds of one whole ``cogmeta sweep`` process; a ``(baseline)`` backend runs in ``args.baseline``."""
    checkout = args.baseline if backend.endswith("(baseline)") else ROOT
    backend = backend.split(" ")[0]
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("JAX_", "XLA_"))}
    environ["COGMETA_JAX_CACHE"] = str(cache)
    environ["JAX_NUM_CPU_DEVICES"] = str(devices)
    out = Path(tempfile.mkdtemp(dir=scratch, prefix="sweep-")) / "sweep"
    command = [sys.executable, "-m", "cogmeta", "sweep", "--task", "gaussian", "--backend", backend,
               "--seeds", str(args.seeds), "--steps", str(args.steps), "--workers", str(workers),
               "--eval-tasks", "200", "--no-progress", "--out", str(out)]
    began = time.perf_counter()
    done = subprocess.run(command, env=environ, capture_output=True, text=True, cwd=checkout)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit code {done.returncode}\n{done.stderr[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=integer(1), default=8, help="members of each sweep")
    parser.add_argument("--steps", type=integer(1), default=1000, help="optimizer steps of each member")
    parser.add_argument("--repeats", type=integer(1), default=3, help="rounds")
    parser.add_argument("--backends", default="torch,jax")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--baseline", type=Path, default=None, metavar="PATH",
                        help="another checkout whose same configurations run in the same rounds (before/after)")
    args = parser.parse_args(argv)
    cpus = len(os.sched_getaffinity(0))
    if cpus < 2:
        parser.error(f"this process may use {cpus} CPU; the comparison needs 2")
    backends = args.backends.split(",")
    if args.baseline is not None:
        if not (args.baseline / "cogmeta" / "__main__.py").is_file():
            parser.error(f"--baseline {args.baseline}: not a cogmeta checkout (no cogmeta/__main__.py there)")
        backends = [name for backend in backends for name in (backend, f"{backend} (baseline)")]
    configurations = [(backend, *c[1:]) for backend in backends for c in CONFIGURATIONS
                      if c[0] == backend.split(" ")[0]]
    rows = []
    with tempfile.TemporaryDirectory(prefix="cogmeta-sweep-workers-") as scratch_name:
        scratch = Path(scratch_name)
        cache = scratch / "jax-cache"
        for backend, _, workers, devices in configurations:
            if backend.startswith("jax"):
                run_once(backend, workers, devices, scratch, cache, args)  # fills the compilation cache, untimed
        for index in range(args.repeats):
            for backend, cores, workers, devices in configurations:
                seconds = run_once(backend, workers, devices, scratch, cache, args)
                row = {"backend": backend, "cores": cores, "round": index, "seconds": round(seconds, 3),
                       "member_updates_per_s": round(args.seeds * args.steps / seconds, 1)}
                print(", ".join(f"{key} {row[key]}" for key in COLUMNS), flush=True)
                rows.append(row)
    note = (["`(baseline)`: the same command from the checkout given by `--baseline`.", ""]
            if args.baseline is not None else [])
    lines = [f"# `cogmeta sweep --task gaussian --seeds {args.seeds} --steps {args.steps}` on one core and on two (CPU)", "",
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {cpus} CPUs; load average "
             f"{os.getloadavg()[0]:.2f} at the end; whole processes, medians of {args.repeats} rounds; "
             f"`python benchmarks/sweep_workers.py {' '.join(argv if argv is not None else sys.argv[1:])}`", "", *note,
             "| backend | cores used as | seconds | member-updates/s | gain over one core (same rounds) |",
             "|---|---|---|---|---|"]
    for backend in backends:
        mine = [c for c in configurations if c[0] == backend]
        one = [row for row in rows if row["backend"] == backend and row["cores"] == mine[0][1]]
        for _, cores, _, _ in mine:
            these = [row for row in rows if row["backend"] == backend and row["cores"] == cores]
            gains = [a["seconds"] / b["seconds"] for a, b in zip(one, these)]
            gain = "" if cores == mine[0][1] else f"**{statistics.median(gains):.2f}x** ({min(gains):.2f}-{max(gains):.2f})"
            lines.append(f"| {backend} | {cores} | {statistics.median(r['seconds'] for r in these):.1f} | "
                         f"{statistics.median(r['member_updates_per_s'] for r in these):.0f} | {gain} |")
    report = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(args.out / "sweep-workers-cpu.csv", table.getvalue())  # written, then renamed
    atomic_write_text(args.out / "sweep-workers-cpu.md", report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
