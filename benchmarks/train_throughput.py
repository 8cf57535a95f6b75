"""Training throughput of the two backends on the tutorial's task, measured in one run.

For each point of a small matrix (cell x hidden size x tasks per batch) it measures optimizer updates per
second of

- PyTorch: the library's trainer (``torch_impl.backend.Trainer``: ``nn.GRU``/``nn.LSTM``, Adam, native
  sampling, one Python step per update) with a fixed intra-op thread count;
- JAX: the library's compiled trainer (``jax_impl.backend.Trainer``: ``lax.scan`` over ``steps`` updates,
  sampling inside), after a cold call that includes compilation (reported separately);

interleaving the two frameworks repeat by repeat and reporting medians, so drift of the machine affects
both alike. Timings are never asserted anywhere; ``tests/test_benchmarks_smoke.py`` only checks that the
script runs.

    python benchmarks/train_throughput.py                 # the default matrix, results in benchmarks/results/
    python benchmarks/train_throughput.py --quick --out /tmp/bench
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cogmeta import GaussianMeanTask, JaxOptions, ModelConfig, RunConfig, TorchOptions, TrainConfig  # noqa: E402


def measure(config: RunConfig, steps: int, repeats: int) -> dict[str, float]:
    """Median updates/s of both backends (interleaved repeats) and JAX's cold-call time."""
    import jax

    from jax_impl.backend import Trainer as JaxTrainer
    from torch_impl.backend import Trainer as TorchTrainer

    torch_trainer = TorchTrainer(config)
    jax_trainer = JaxTrainer(config)
    began = time.perf_counter()
    jax.block_until_ready(jax_trainer.run(steps))
    cold = time.perf_counter() - began
    torch_trainer.run(min(steps, 20))  # warm-up: allocator, first kernels
    rates: dict[str, list[float]] = {"torch": [], "jax": []}
    for _ in range(repeats):
        began = time.perf_counter()
        torch_trainer.run(steps)
        rates["torch"].append(steps / (time.perf_counter() - began))
        began = time.perf_counter()
        jax_trainer.run(steps)  # returns numpy metrics, so the call has finished
        rates["jax"].append(steps / (time.perf_counter() - began))
    torch_rate, jax_rate = statistics.median(rates["torch"]), statistics.median(rates["jax"])
    return {"torch_updates_per_s": torch_rate, "jax_updates_per_s": jax_rate,
            "jax_over_torch": jax_rate / torch_rate, "jax_cold_call_s": cold}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--steps", type=int, default=200, help="updates per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="one tiny point, for smoke tests")
    args = parser.parse_args(argv)

    import jax
    import torch

    if args.quick:
        matrix = [("gru", 8, 8)]
        args.steps, args.repeats = 10, 1
    else:
        matrix = [(cell, hidden, batch) for cell in ("gru", "lstm") for hidden in (32, 64, 128) for batch in (32, 128)]
    rows = []
    for cell, hidden, batch in matrix:
        config = RunConfig(
            task=GaussianMeanTask(),
            model=ModelConfig(cell=cell, hidden_size=hidden),
            train=TrainConfig(steps=10**9, batch_size=batch),
            torch=TorchOptions(threads=args.threads),
            jax=JaxOptions(steps_per_call=args.steps),
        )
        result = measure(config, args.steps, args.repeats)
        rows.append({"cell": cell, "hidden": hidden, "batch": batch, **result})
        print(f"{cell:>4} H={hidden:<4} B={batch:<4} torch {result['torch_updates_per_s']:8.1f}/s  "
              f"jax {result['jax_updates_per_s']:8.1f}/s  ratio {result['jax_over_torch']:5.2f}  "
              f"(jax cold call {result['jax_cold_call_s']:.2f} s)", flush=True)

    environment = {
        "cpu": _cpu_model(), "python": platform.python_version(), "torch": torch.__version__, "jax": jax.__version__,
        "torch_threads": torch.get_num_threads(), "steps_per_repeat": args.steps, "repeats": args.repeats,
        "task": "gaussian (T=7)", "date": time.strftime("%Y-%m-%d"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "train_throughput.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# Training throughput: JAX vs PyTorch (CPU)", "",
             ", ".join(f"{k}: {v}" for k, v in environment.items()), "",
             "| cell | hidden | tasks/batch | torch updates/s | JAX updates/s | JAX / torch | JAX cold call (s) |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['cell']} | {row['hidden']} | {row['batch']} | {row['torch_updates_per_s']:.0f} | "
                     f"{row['jax_updates_per_s']:.0f} | {row['jax_over_torch']:.2f} | {row['jax_cold_call_s']:.2f} |")
    (args.out / "train_throughput.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'train_throughput.csv'} and {args.out / 'train_throughput.md'}")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
