"""Data-parallel scaling of both backends, measured in one run (docs/scale-out.md).

- JAX: ``jax_impl.distributed.DataParallelTrainer`` on a mesh of 1, 2, 4 and 8 devices, and the plain
  single-device ``Trainer`` (no mesh), in one subprocess that sees ``--devices-max`` devices (on a CPU:
  ``JAX_NUM_CPU_DEVICES`` simulated devices);
- PyTorch: the single-process ``Trainer`` and its data-parallel trainer with 2 processes
  (``torchrun --nproc-per-node=2 -m cogmeta train``, gloo on CPU), timed by the command's own report.

On a CPU, simulated devices share the machine's cores: these numbers check that the machinery runs
and show its overhead; they are **not** a speed-up measurement (label of the figure). Run it on a
multi-GPU node for real scaling. Timings are never asserted.

    python benchmarks/scale_out.py --out /tmp/scale          # CSV + figure
    python benchmarks/scale_out.py --figure docs/figures/scale-out-cpu-simulated.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cogmeta.cli_options import integer  # noqa: E402

#: Batch divisible by 8 devices; sizes of the tutorial recipe scaled down so a point takes seconds.
CONFIG_ARGS = ["--task", "gaussian", "--hidden-size", "64", "--batch-size", "128", "--dtype", "float32"]


def _jax_child(devices: list[int], steps: int, repeats: int) -> None:
    """Runs inside the subprocess: prints ``RESULT {json}`` per point (median updates/s after a warm call)."""
    import statistics

    import jax

    from cogmeta.cli import build_parser
    from cogmeta.cli_config import config_from_args
    from jax_impl.backend import make_tutorial_trainer as Trainer
    from jax_impl.distributed import DataParallelTrainer

    args = build_parser().parse_args(["train", *CONFIG_ARGS, "--backend", "jax", "--steps-per-call", str(steps),
                                      "--steps", str(steps * (repeats + 2))])
    config = config_from_args(args)
    for count in [0, *devices]:
        trainer = Trainer(config) if count == 0 else DataParallelTrainer(config, devices=count)
        began = time.perf_counter()
        trainer.run(steps)
        cold = time.perf_counter() - began
        rates = []
        for _ in range(repeats):
            began = time.perf_counter()
            trainer.run(steps)
            rates.append(steps / (time.perf_counter() - began))
        print("RESULT " + json.dumps({"backend": "jax", "devices": count, "platform": jax.devices()[0].platform,
                                      "updates_per_s": statistics.median(rates), "cold_call_s": cold}), flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torch_point(processes: int, steps: int, out: Path) -> dict:
    run = out / f"torch-{processes}"
    command = ["-m", "cogmeta", "train", *CONFIG_ARGS, "--backend", "torch", "--steps", str(steps), "--eval-every",
               str(steps), "--eval-tasks", "8", "--no-progress", "--no-figures", "--summary-tasks", "0", "--out", str(run)]
    if processes > 1:
        command = ["-m", "torch.distributed.run", "--nnodes=1", f"--nproc-per-node={processes}", "--master-addr=127.0.0.1",
                   f"--master-port={_free_port()}", *command]
    output = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=900,
                            check=True).stdout
    seconds = float(re.search(r"trained \d+ steps in ([\d.]+) s", output).group(1))
    return {"backend": "torch", "devices": processes, "platform": "cpu", "updates_per_s": steps / seconds,
            "cold_call_s": float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--figure", type=Path, default=None, help="figure path (default: OUT/scale_out.png)")
    parser.add_argument("--steps", type=integer(1), default=100, help="updates per timed call")
    parser.add_argument("--repeats", type=integer(1), default=3)
    parser.add_argument("--devices-max", type=integer(1), default=8)
    parser.add_argument("--jax-child", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    devices = [n for n in (1, 2, 4, 8, 16) if n <= args.devices_max]
    if args.jax_child is not None:
        _jax_child(devices, args.steps, args.repeats)
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(args.devices_max)}
    child = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--jax-child", "1", "--steps", str(args.steps),
                            "--repeats", str(args.repeats), "--devices-max", str(args.devices_max)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=True)
    rows = [json.loads(line[len("RESULT "):]) for line in child.stdout.splitlines() if line.startswith("RESULT ")]
    with tempfile.TemporaryDirectory() as runs:  # the torch runs' folders are scratch
        for processes in (1, 2):
            rows.append(_torch_point(processes, args.steps * args.repeats, Path(runs)))
    for row in rows:
        row["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        print(f"{row['backend']:5s} devices={row['devices']} ({row['platform']}): {row['updates_per_s']:8.1f} updates/s")

    from cogmeta.io import atomic_write_text

    fields = ["backend", "devices", "platform", "updates_per_s", "cold_call_s", "machine"]
    lines = [",".join(fields)] + [",".join(str(row[f]) for f in fields) for row in rows]
    atomic_write_text(args.out / "scale_out.csv", "\n".join(lines) + "\n")
    _figure(rows, args.figure or args.out / "scale_out.png")
    return 0


def _figure(rows: list[dict], path: Path) -> None:
    from cogmeta.figures import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    jax_rows = [r for r in rows if r["backend"] == "jax" and r["devices"] > 0]
    ax.plot([r["devices"] for r in jax_rows], [r["updates_per_s"] for r in jax_rows], "o-",
            label=f"JAX DataParallelTrainer ({jax_rows[0]['platform']} devices)")
    for r in rows:
        if r["backend"] == "jax" and r["devices"] == 0:
            ax.axhline(r["updates_per_s"], color="C0", ls=":", label="JAX Trainer, no mesh")
    torch_rows = [r for r in rows if r["backend"] == "torch"]
    ax.plot([r["devices"] for r in torch_rows], [r["updates_per_s"] for r in torch_rows], "s-", color="C1",
            label="PyTorch data parallel (gloo, torchrun processes)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("devices (JAX) / processes (PyTorch)")
    ax.set_ylabel("updates / s (GRU-64, 128 tasks per batch)")
    simulated = jax_rows[0]["platform"] == "cpu"
    title = ("CORRECTNESS ONLY: simulated CPU devices share " + str(os.cpu_count()) + " cores (not a speed-up)"
             if simulated else "data-parallel scaling")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
