"""Benchmark the model families of the studies: JAX against PyTorch, interleaved, in one run.

    python benchmarks/model_families.py                      # -> benchmarks/results/model-families-cpu.{md,csv}
    python benchmarks/model_families.py --repeats 3 --out /tmp/bench

Every workload is an objective of the one trainer of its framework, so each point times exactly what
the study command runs, after a warm-up call (allocation, and JAX's compilation, excluded):

- ``heuristics``: the bounded GRU of Binz et al. (2022) at the CPU recipe (H = 64, batch 64, Adam), the
  stage-1 grid of 3 conditions x 3 seeds = 9 members. JAX: ``Engine(BoundedObjective, "vmap")``, the nine
  runs in one compiled program; PyTorch: ``Engine(..., "loop")``, the runs one after another (its
  ``STRATEGY``).
- ``learning-to-infer``: ``train_population`` of 400 participants (hidden 1, SGD, one query per step),
  the EU experiment's population. JAX: the engine's ``vmap`` of the trainer's scan; PyTorch: one trainer
  run of the stacked population model (docs/framework-differences.md, populations).
- ``seq2seq``: the ``seq2seq-me-cpu`` preset (H = 64, one layer), one run, ``Trainer.run_on`` over host-drawn
  episodes, as ``cogmeta train --preset seq2seq-me-cpu`` feeds them.

JAX runs as the study commands run it, with one host device per CPU (``cogmeta.host_devices``): the
engine splits the members of the heuristics grid and the participants of a population over them. Those
two points are also measured on one device (``Engine(..., devices=1)``), the same program on one core.

The measure is *member-updates per second* (members x optimizer updates / s), and beside it the CPU
seconds (all threads, ``time.process_time``) per update, which other jobs on a shared machine disturb
far less than wall time (XLA may use both cores for one program, so the CPU ratio can understate JAX's
wall-clock advantage on an idle machine). PyTorch runs at 1 thread
(faster than 2 at these sizes on the 2-core CPU; measured by ``benchmarks/suite.py``). Medians over the
repeats; the ratio is JAX / PyTorch from the same run. Timings are never asserted by tests.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cogmeta.cli_options import integer  # noqa: E402


class HeuristicsPoint:
    """Stage 1 of the heuristics grid: conditions x seeds members for ``steps`` steps per timed call."""

    name = "heuristics"

    def __init__(self, backend: str, steps: int, seeds: int = 3, devices: int | None = None):
        from cogmeta.backends import load_module
        from cogmeta.experiments.heuristics import base_config
        from cogmeta.tasks.paired_comparison import CONDITIONS

        bounded, engine = load_module(backend, "bounded_gru"), load_module(backend, "engine")
        config = base_config(pretrain_steps=steps)
        objective = bounded.make_objective(config)
        self.grid = [(c, s) for c in range(len(CONDITIONS)) for s in range(seeds)]
        self.members = [objective.member(s, condition=c) for c, s in self.grid]
        devices = {} if backend == "torch" else {"devices": devices}
        self.engine = engine.Engine(objective, bounded.STRATEGY, **devices)
        self.updates = len(self.grid) * steps
        self.label = f"{len(self.grid)} members x {steps} steps (H {config.model.hidden_size}, batch {config.train.batch_size})"

    def run(self) -> None:
        self.engine.train([s for _, s in self.grid], members=self.members, progress=False)


class PopulationPoint:
    """``train_population`` of ``participants`` learning-to-infer participants, ``steps`` queries each."""

    name = "learning-to-infer"

    def __init__(self, backend: str, steps: int, participants: int = 400, devices: int | None = None):
        from cogmeta.backends import load_module
        from cogmeta.tasks.urn import EU_ID

        self.module = load_module(backend, "amortized")
        seeds = list(range(participants))
        queries = self.module.sample_training_queries([EU_ID], seeds, steps, "float32")
        self.objective = self.module.AmortizedObjective(queries.inputs, queries.log_odds, hidden=1, learning_rate=0.05,
                                                        seeds=seeds)
        self.updates = participants * steps
        self.label = f"{participants} participants x {steps} steps (hidden 1, SGD)"
        self.devices = {} if backend == "torch" else {"devices": devices}

    def run(self) -> None:
        self.module.train_population(self.objective, **self.devices)


class Seq2SeqPoint:
    """One ``seq2seq-me-cpu`` run: ``steps`` episodes per timed call through ``Trainer.run_on``."""

    name = "seq2seq"

    def __init__(self, backend: str, steps: int):
        from cogmeta.backends import load_module
        from cogmeta.presets import preset
        from cogmeta.tasks.scan_episodes import EpisodeStream

        config = preset("seq2seq-me-cpu")
        self.module = load_module(backend, "seq2seq")
        self.trainer = self.module.make_trainer(config)
        stream = EpisodeStream(config.task, 0)
        self.batches = self.module.episode_batches([config.task.encode(stream.next()) for _ in range(steps)])
        self.updates = steps
        self.label = (f"1 run x {steps} episodes (seq2seq-me-cpu: H {config.model.hidden_size}, "
                      f"{config.model.num_layers} layer)")

    def run(self) -> None:
        self.trainer.run_on(self.batches)


POINTS = {"heuristics": (HeuristicsPoint, 200), "learning-to-infer": (PopulationPoint, 2000),
          "seq2seq": (Seq2SeqPoint, 50)}
#: The points whose JAX engine splits members over devices: also measured on one device.
MEMBER_POINTS = ("heuristics", "learning-to-infer")


def measure(name: str, repeats: int) -> dict:
    """Interleaved timed calls of both backends at one point: medians, ratio, load average."""
    import jax
    import torch

    torch.set_num_threads(1)
    cls, steps = POINTS[name]
    load_before = os.getloadavg()[0]
    points = {}
    variants = [("jax", "jax", {})] + ([("jax 1 device", "jax", {"devices": 1})] if name in MEMBER_POINTS else [])
    for key, backend, options in variants + [("torch", "torch", {})]:
        began = time.perf_counter()
        points[key] = cls(backend, steps, **options)
        points[key].run()  # warm-up: JAX compiles here
        points[key].first_call_s = time.perf_counter() - began
    times: dict[str, list[float]] = {b: [] for b in points}
    cpu: dict[str, list[float]] = {b: [] for b in points}
    for _ in range(repeats):
        for backend, point in points.items():
            began, began_cpu = time.perf_counter(), time.process_time()
            point.run()
            times[backend].append(time.perf_counter() - began)
            cpu[backend].append(time.process_time() - began_cpu)
    rates = {b: points[b].updates / statistics.median(t) for b, t in times.items()}
    # CPU seconds (all threads) per update: robust to other jobs on a shared machine, where wall time is not
    cpu_per_update = {b: statistics.median(t) / points[b].updates for b, t in cpu.items()}
    return {"family": name, "work": points["jax"].label, "jax_updates_per_s": rates["jax"],
            "torch_updates_per_s": rates["torch"], "jax_over_torch": rates["jax"] / rates["torch"],
            "jax_first_call_s": points["jax"].first_call_s, "torch_first_call_s": points["torch"].first_call_s,
            "jax_median_s": statistics.median(times["jax"]), "torch_median_s": statistics.median(times["torch"]),
            "jax_cpu_ms_per_update": 1e3 * cpu_per_update["jax"], "torch_cpu_ms_per_update": 1e3 * cpu_per_update["torch"],
            "cpu_time_ratio": cpu_per_update["torch"] / cpu_per_update["jax"],
            "jax_devices": len(jax.local_devices()) if name in MEMBER_POINTS else 1,
            "jax_one_device_updates_per_s": rates.get("jax 1 device", rates["jax"]),
            "jax_one_device_over_torch": rates.get("jax 1 device", rates["jax"]) / rates["torch"],
            "repeats": repeats, "load_before": load_before, "load_after": os.getloadavg()[0]}


def write(out: Path, rows: list[dict]) -> None:
    """``model-families-cpu.csv`` and ``.md`` (written, then renamed)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model-families-cpu.csv"
    with open(path.with_suffix(".csv.tmp"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(path.with_suffix(".csv.tmp"), path)
    lines = [f"# Model families, JAX vs PyTorch (CPU, {os.cpu_count()} cores, PyTorch 1 thread; "
             f"{time.strftime('%Y-%m-%d')}; benchmarks/model_families.py)", "",
             "JAX as the commands run it: the members of a grid or population split over one host device per CPU "
             "(`cogmeta.host_devices`); beside it the same JAX program on one device. PyTorch: one process.", "",
             "| family | work per timed call | JAX updates/s (devices) | JAX on 1 device | PyTorch updates/s | "
             "JAX / PyTorch (wall) | JAX on 1 device / PyTorch | CPU ms per update JAX / PyTorch | ratio (CPU) | "
             "first call JAX / PyTorch s | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['work']} | {r['jax_updates_per_s']:,.0f} ({r['jax_devices']}) | "
                     f"{r['jax_one_device_updates_per_s']:,.0f} | {r['torch_updates_per_s']:,.0f} | "
                     f"**{r['jax_over_torch']:.2f}** | {r['jax_one_device_over_torch']:.2f} | "
                     f"{r['jax_cpu_ms_per_update']:.3g} / {r['torch_cpu_ms_per_update']:.3g} | "
                     f"{r['cpu_time_ratio']:.2f} | {r['jax_first_call_s']:.1f} / {r['torch_first_call_s']:.1f} | "
                     f"{r['load_before']:.1f}-{r['load_after']:.1f} |")
    (out / "model-families-cpu.md.tmp").write_text("\n".join(lines) + "\n")
    os.replace(out / "model-families-cpu.md.tmp", out / "model-families-cpu.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", choices=list(POINTS), default=list(POINTS))
    parser.add_argument("--repeats", type=integer(1), default=5, help="interleaved timed calls per backend (>= 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    from cogmeta.host_devices import enable_for_command as enable_host_devices

    enable_host_devices()  # one JAX device per CPU, as the study commands have (before JAX is imported)
    rows = []
    for name in args.families:
        row = measure(name, args.repeats)
        print(f"{name:18s} {row['work']:55s} jax {row['jax_updates_per_s']:10.0f}/s  torch {row['torch_updates_per_s']:10.0f}/s"
              f"  ratio {row['jax_over_torch']:6.2f}  load {row['load_before']:.1f}", flush=True)
        rows.append(row)
    write(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
