"""Benchmark suite: JAX engine vs the best PyTorch configuration, measured in one run, interleaved.

    python benchmarks/suite.py                       # the committed CPU matrix -> benchmarks/results/suite-cpu.*
    python benchmarks/suite.py --preset full         # docs/performance.md's whole CPU matrix (hours)
    python benchmarks/suite.py --preset gpu          # on a CUDA machine: larger sizes, seeds up to 2048
    python benchmarks/suite.py --preset gpu-check    # its 9-point subset (benchmarks/gpu_check.sh)
    python benchmarks/suite.py --preset bandit       # the meta-RL points alone (RL² agent, A2C on bandits)
    python benchmarks/suite.py --preset smoke --out /tmp/bench    # CI: one tiny point
    python benchmarks/suite.py --points "lstm,128,32,64,1" --out /tmp/bench   # chosen points -> suite-points.*

For each point (cell, hidden H, tasks per batch B, sequence length T, members S[, task]) it measures, per
framework, *member-updates per second* (S members x optimizer updates / s; tasks/s = B x that). The task is
the tutorial's Gaussian (default) or ``bandit``: the RL² agent's A2C update on B two-armed bandit episodes of
T trials (``*_impl.rl2.RL2Objective``; the environment, the rollout with its sampled actions and the update
in one program in JAX, a Python loop over trials in PyTorch):

- JAX: ``jax_impl.engine`` (sampling, forward, backward, clipping, Adam all inside one ``lax.scan`` of K
  steps per call). S = 1 uses the single-member program on one device (``loop``) and, where ``cogmeta train``
  would split the batch over the host devices (``jax_impl.launch.auto_devices``), that program too
  (``split:2dev``); S > 1 each seed strategy (``map``, ``vmap``, and over every device ``map:2dev``, ``vmap:2dev``). Compile time is measured ahead of time (``jit(...).lower().compile()``):
  cold, then again after ``jax.clear_caches()`` from the persistent compilation cache (warm). Recompiles
  during the timed calls are counted with ``jax.monitoring`` (must be 0).
- PyTorch: the library's trainer step (``nn.GRU``/``nn.LSTM`` fused kernels, ``torch_impl.optim``'s Adam,
  native sampling) at each thread count of ``--torch-threads``; for S > 1, S sequential runs and the
  ``torch.func`` engine (``torch_impl.engine``, strategy ``vmap``). "best torch" is the fastest of these.

Repeats of the two frameworks are interleaved and medians reported (IQR in the CSV), so drift of a
shared machine hits both alike; the load average is recorded before and after every point. Achieved
GFLOP/s use the analytic count (fwd + bwd per token: GRU 18 H (I + H), LSTM 24 H (I + H); XLA's
``cost_analysis`` undercounts scans) and are compared with a same-process 1-thread SGEMM (N = 1024); on a GPU with
the device's float32 matmul peak (N = 8192, precision highest), and the GPU presets' tables end with the GPU goals
(seed scaling and aggregate throughput against one PyTorch seed) and the most the device's peak allows at each size
(:func:`gpu_goal_rows`). Timings are never asserted by tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cogmeta import (  # noqa: E402
    GaussianMeanTask,
    JaxOptions,
    ModelConfig,
    RunConfig,
    TorchOptions,
    TrainConfig,
)
from cogmeta.cli_options import integer  # noqa: E402

#: ("cell", H, B, T, S) points. "cpu" is the committed matrix; "full" is docs/performance.md's CPU matrix.
PRESETS = {
    "smoke": [("gru", 8, 4, 7, 1)],
    "cpu": [("gru", 32, 8, 7, 1), ("gru", 32, 32, 7, 1), ("gru", 64, 32, 7, 1), ("lstm", 64, 32, 7, 1),
            ("gru", 64, 32, 7, 16), ("gru", 64, 32, 64, 1), ("gru", 128, 32, 64, 1), ("gru", 256, 32, 64, 1),
            ("lstm", 128, 32, 64, 1), ("gru", 64, 128, 64, 1), ("gru", 64, 32, 64, 16),
            ("gru", 48, 64, 100, 1, "bandit"), ("gru", 48, 64, 100, 16, "bandit")],
    # the meta-RL points alone (issue 17's speed targets): one seed, and 16 seeds in one program
    "bandit": [("gru", 48, 64, 100, 1, "bandit"), ("gru", 48, 64, 100, 16, "bandit")],
    "full": [(c, h, b, t, s) for c in ("gru", "lstm") for h in (32, 64, 128, 256) for b in (8, 32, 128, 512)
             for t in (16, 64, 256) for s in (1, 4, 16, 64)],
    "gpu": [(c, h, b, t, s) for c in ("gru", "lstm") for h in (64, 256, 1024) for b in (128, 1024)
            for t in (64, 256) for s in (1, 16, 256, 2048)],
    # the subset benchmarks/gpu_check.sh runs in its time box (each point written as it ends): first the GPU goals'
    # seed series at the tutorial's size (H 32, B 8, T 7: one seed leaves the device idle, so the goals fit under its
    # float32 peak; gpu_goal_rows), then H 64, B 128, T 64 from one seed to 256, where they do not (the committed
    # H200 run), single runs at larger widths, and 2048 members at H 64 last (in vmapped blocks: the largest memory)
    "gpu-check": [("gru", 32, 8, 7, 1), ("gru", 32, 8, 7, 256), ("gru", 32, 8, 7, 2048),
                  ("gru", 64, 128, 64, 1), ("gru", 64, 128, 64, 256), ("gru", 256, 128, 64, 1),
                  ("lstm", 256, 128, 64, 1), ("gru", 1024, 1024, 64, 1), ("gru", 64, 128, 64, 2048)],
}
PRESETS["gpu"] = [("gru", 32, 8, 7, s) for s in (1, 16, 256, 2048)] + PRESETS["gpu"]  # the goals' series, the matrix
#: Issue 16's goals on a GPU: S members in one program train at least SCALING_GOAL x S times one member's
#: member-updates/s up to SCALING_UP_TO members, and AGGREGATE_MEMBERS members at least AGGREGATE_GOAL times one
#: PyTorch seed's (after PureJaxRL's ~85 % at 256 seeds and ~520x at 2048: ../shared/references/performance.md, T1).
SCALING_GOAL, SCALING_UP_TO, AGGREGATE_GOAL, AGGREGATE_MEMBERS = 0.8, 256, 500, 2048
FLOPS_PER_TOKEN = {"gru": 18, "lstm": 24}  # x H (I + H), forward + backward (docs/performance.md)
INPUT_SIZE = {"gaussian": 2, "bandit": 4}  # the bandit agent's input: one-hot of 2 arms, reward, time
TASKS = tuple(INPUT_SIZE)


def point_config(cell: str, hidden: int, batch: int, length: int, chunk: int, task: str = "gaussian") -> RunConfig:
    """The run config of a point: the tutorial model on Gaussian sequences of T, or the RL² agent on B bandits of T
    trials (A2C with the rl2 presets' coefficients)."""
    train = TrainConfig(steps=10**9, batch_size=batch)
    if task == "bandit":
        from cogmeta.config import RLConfig
        from cogmeta.tasks.bandit import BernoulliBanditTask

        return RunConfig(task=BernoulliBanditTask(arms=2, horizon=length),
                         model=ModelConfig(family="rl2", cell=cell, hidden_size=hidden), train=train,
                         rl=RLConfig(entropy_final=0.0), jax=JaxOptions(steps_per_call=chunk))
    return RunConfig(task=GaussianMeanTask(sequence_length=length), model=ModelConfig(cell=cell, hidden_size=hidden),
                     train=train, jax=JaxOptions(steps_per_call=chunk))


def torch_device(accelerator: bool) -> str:
    """PyTorch's device for the matrix: CUDA (with the CUDA-graph step) in GPU mode when torch sees one."""
    import torch

    return "cuda" if accelerator and torch.cuda.is_available() else "cpu"


def update_flops(cell: str, hidden: int, batch: int, length: int, task: str = "gaussian") -> float:
    """The recurrent core's forward + backward FLOPs of one update (heads and sampling not counted)."""
    return FLOPS_PER_TOKEN[cell] * hidden * (INPUT_SIZE[task] + hidden) * batch * length


class JaxPoint:
    """The JAX engine at one point and strategy, compiled ahead of time; ``devices`` > 1 splits the members over
    that many host devices (``jax_impl.engine``: one per CPU core). Strategy ``split`` is one run's program with
    its batch split over ``devices`` host devices (``jax_impl.distributed.DataParallelTrainer``: what
    ``cogmeta train`` runs on a CPU by default, ``jax_impl.launch.auto_devices``)."""

    def __init__(self, config: RunConfig, members: int, strategy: str, devices: int = 1):
        import jax
        import jax.numpy as jnp

        from jax_impl.engine import Engine
        from jax_impl.trainer import stack_members

        self.engine = Engine(config, "loop" if strategy == "split" else strategy, devices=devices)
        self.blocks = None  # members per vmapped block when they do not fit the device at once (Engine.fit_to_memory)
        self.engine.devices = self.engine.resolve_devices(members)
        self.chunk = self.engine.chunk
        self.members = 1 if strategy in ("loop", "split") else members  # members per timed call
        member = ()
        if strategy == "split":  # the data-parallel trainer's own program (its chunk is config.jax.steps_per_call)
            from jax_impl.distributed import DataParallelTrainer

            trainer = DataParallelTrainer(config, devices=devices, objective=type(self.engine.objective))
            function = trainer.program
            self.args = (trainer.params, trainer.opt_state, jnp.asarray(0), jnp.asarray(trainer.chunk_size))
            member = (trainer.member,)  # its compiled program takes the member as a last argument
        elif strategy == "loop":  # the single-run program; S sequential runs take S of its calls
            params, opt_state = jax.tree.map(lambda x: x[0], self.engine.init(range(members)))
            function = self.engine._member
            self.args = (params, opt_state, jnp.asarray(0), jnp.asarray(self.chunk), self.engine.objective.member(0))
        else:
            params, opt_state = self.engine.init(range(members))
            stacked = stack_members([self.engine.objective.member(s) for s in range(members)])
            if strategy == "vmap" and devices == 1:  # in blocks where the device's memory asks for it, as a sweep does
                self.blocks = self.engine.fit_to_memory(params, opt_state, stacked, members)
            function = self.engine._program(strategy) if devices > 1 else self.engine.run_members
            self.args = (params, opt_state, jnp.asarray(0), jnp.full(members, self.chunk, jnp.int32), stacked)
        # the trainer's program lowers itself, adding its member as an argument (``make_run_steps``)
        lower = function.lower if hasattr(function, "lower") else jax.jit(function).lower
        began = time.perf_counter()
        self.compiled = lower(*self.args).compile()
        self.cold_compile_s = time.perf_counter() - began
        jax.clear_caches()
        began = time.perf_counter()
        lower(*self.args).compile()
        self.warm_compile_s = time.perf_counter() - began
        memory = self.compiled.memory_analysis()
        self.memory_bytes = None if memory is None else int(memory.temp_size_in_bytes + memory.argument_size_in_bytes
                                                            + memory.output_size_in_bytes)
        self.call_args = self.args + member
        self.run()  # first call: allocation

    def run(self) -> float:
        """Seconds for one call (``chunk`` updates of every member)."""
        import jax

        began = time.perf_counter()
        jax.block_until_ready(self.compiled(*self.call_args))
        return time.perf_counter() - began


class TorchPoint:
    """The library's PyTorch trainer step, S members one after the other, at a thread count."""

    def __init__(self, config: RunConfig, members: int, threads: int, strategy: str):
        from torch_impl.backend import make_tutorial_trainer
        from torch_impl.rl2 import make_trainer as make_rl2_trainer

        Trainer = make_rl2_trainer if config.model.family == "rl2" else make_tutorial_trainer  # noqa: N806
        self.config, self.members, self.threads, self.strategy = config, members, threads, strategy
        self.steps = config.jax.steps_per_call
        self._set_threads()
        if strategy == "loop":
            self.trainers = [Trainer(dataclasses.replace(config, train=dataclasses.replace(config.train, seed=s)))
                             for s in range(members)]
        self.run()  # warm-up: allocator, first kernels

    def _set_threads(self) -> None:
        import torch

        torch.set_num_threads(self.threads)

    def run(self) -> float:
        """Seconds for ``steps`` updates of every member."""
        from torch_impl.engine import train_members

        self._set_threads()
        began = time.perf_counter()
        if self.strategy == "loop":
            for trainer in self.trainers:
                trainer.run(self.steps)
        else:
            short = dataclasses.replace(self.config, train=dataclasses.replace(self.config.train, steps=self.steps))
            train_members(short, range(self.members), strategy="vmap", progress=False)
        return time.perf_counter() - began


def sgemm_peak(n: int = 1024, repeats: int = 5) -> float:
    """Best 1-thread SGEMM GFLOP/s over torch and jitted JAX (same process, same thread settings; JAX's through
    :func:`device_sgemm_peak`, whose default device is the CPU here)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    a = torch.from_numpy(np.random.default_rng(0).standard_normal((n, n)).astype(np.float32))
    best = 0.0
    for _ in range(repeats):
        began = time.perf_counter()
        torch.mm(a, a)
        best = max(best, 2 * n**3 / (time.perf_counter() - began) / 1e9)
    return max(best, device_sgemm_peak(n, repeats))


def device_sgemm_peak(n: int = 8192, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of a jitted ``n x n`` matmul at precision ``highest`` on JAX's default device: on a GPU the
    ceiling of the points' achieved rate (every product of ``jax_impl`` is ``highest``, no TF32: jax_impl.numerics).
    The CPU matrix compares with :func:`sgemm_peak`, one core's, instead."""
    import jax
    import jax.numpy as jnp

    from jax_impl.numerics import HIGHEST

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    dot = jax.jit(lambda x: jnp.matmul(x, x, precision=HIGHEST))
    dot(a).block_until_ready()
    best = 0.0
    for _ in range(repeats):
        began = time.perf_counter()
        dot(a).block_until_ready()
        best = max(best, 2 * n**3 / (time.perf_counter() - began) / 1e9)
    return best


def gpu_goal_rows(rows: list[dict], peak_gflops: float) -> list[dict]:
    """The GPU goals at every measured point of several members whose size also has a one-member point:

        seed scaling = JAX rate(S) / JAX rate(1),          goal SCALING_GOAL x S   for S <= SCALING_UP_TO
        aggregate    = JAX rate(S) / PyTorch rate(1 seed),  goal AGGREGATE_GOAL    for S >= AGGREGATE_MEMBERS

    (rates in member-updates/s) with each one's *ceiling*: the most the device's float32 peak allows,
    ``peak_gflops / update GFLOP`` member-updates/s over the same denominator. A goal above its ceiling cannot be met
    at that size by any program; where one member already keeps the device busy it is. In GPU mode PyTorch runs one
    seed at every point, so a row's own PyTorch rate is the one-seed rate."""
    singles = {_size(r): r for r in rows if r["members"] == 1}
    goals = []
    for row in rows:
        single = singles.get(_size(row))
        if row["members"] == 1 or single is None:
            continue
        members = row["members"]
        bound = peak_gflops * 1e9 / update_flops(row["cell"], row["hidden"], row["batch"], row["length"],
                                                 row.get("task", "gaussian"))
        jax_one, torch_one = single["jax_updates_per_s"], single["torch_updates_per_s"]
        scaling_goal = SCALING_GOAL * members if members <= SCALING_UP_TO else None
        aggregate_goal = AGGREGATE_GOAL if members >= AGGREGATE_MEMBERS else None
        scaling, aggregate = row["jax_updates_per_s"] / jax_one, row["jax_updates_per_s"] / torch_one
        goals.append({"size": _size(row), "members": members, "jax_updates_per_s": row["jax_updates_per_s"],
                      "seed_scaling": scaling, "scaling_goal": scaling_goal, "scaling_ceiling": bound / jax_one,
                      "scaling_met": None if scaling_goal is None else scaling >= scaling_goal,
                      "aggregate_over_torch_seed": aggregate, "aggregate_goal": aggregate_goal,
                      "aggregate_ceiling": bound / torch_one,
                      "aggregate_met": None if aggregate_goal is None else aggregate >= aggregate_goal})
    return goals


def _size(row: dict) -> str:
    """A point's size without its members: ``"gru H64 B128 T64"`` (``bandit`` first for the RL² agent)."""
    task = "bandit " if row.get("task", "gaussian") == "bandit" else ""
    return f"{task}{row['cell']} H{row['hidden']} B{row['batch']} T{row['length']}"


def _goal_lines(goals: list[dict], peak_gflops: float) -> list[str]:
    """The markdown table of :func:`gpu_goal_rows`."""
    def goal(value, target, ceiling, met):
        if target is None:
            return f"{value:.1f}", "-"
        verdict = "met" if met else ("missed" if target <= ceiling else "beyond the peak")
        return f"{value:.1f}", f"{target:g}: {verdict}"

    lines = ["", f"## GPU goals (ceilings at the measured float32 matmul peak, {peak_gflops / 1e3:.1f} TFLOP/s)", "",
             f"Seed scaling: S members' member-updates/s over one member's (goal {SCALING_GOAL:g} S up to S = "
             f"{SCALING_UP_TO}); aggregate: over one PyTorch seed's (goal {AGGREGATE_GOAL}x at S = {AGGREGATE_MEMBERS}). "
             "A ceiling is the most that the device's float32 peak allows at that size, over the same one-member rate; "
             "'beyond the peak' marks a goal above it, which no program can meet at that size.", "",
             "| size | S | JAX upd/s | seed scaling | goal | ceiling | aggregate x one PyTorch seed | goal | ceiling |",
             "|---|---|---|---|---|---|---|---|---|"]
    for g in goals:
        scaling, scaling_goal = goal(g["seed_scaling"], g["scaling_goal"], g["scaling_ceiling"], g["scaling_met"])
        aggregate, aggregate_goal = goal(g["aggregate_over_torch_seed"], g["aggregate_goal"], g["aggregate_ceiling"],
                                         g["aggregate_met"])
        lines.append(f"| {g['size']} | {g['members']} | {g['jax_updates_per_s']:.0f} | {scaling} | {scaling_goal} | "
                     f"{g['scaling_ceiling']:.0f} | {aggregate} | {aggregate_goal} | {g['aggregate_ceiling']:.0f} |")
    return lines


def measure_point(point, repeats: int, torch_threads: list[int], peak: float, max_chunk: int = 200,
                  accelerator: bool = False) -> dict:
    """One matrix point. ``accelerator``: JAX members only by ``vmap``, and PyTorch as one seed (the
    aggregate-throughput comparison of the GPU targets; S sequential CPU runs would take hours)."""
    import jax

    cell, hidden, batch, length, members = point[:5]
    task = point[5] if len(point) > 5 else "gaussian"
    flops = update_flops(cell, hidden, batch, length, task)
    chunk = int(min(max_chunk, max(min(20, max_chunk), 2e9 / (flops * members))))  # ~0.1-1 s per timed call
    config = point_config(cell, hidden, batch, length, chunk, task)
    load_before = os.getloadavg()[0]
    strategies = ("loop",) if members == 1 else (("vmap",) if accelerator else ("loop", "map", "vmap"))
    jax_points = {s: JaxPoint(config, members, s) for s in strategies}
    devices = len(jax.local_devices())
    if members > 1 and devices > 1 and not accelerator and members % devices == 0:  # the members over every core
        jax_points |= {f"{s}:{devices}dev": JaxPoint(config, members, s, devices) for s in ("map", "vmap")}
    if members == 1 and not accelerator:  # one run as `cogmeta train` runs it: its batch over the cores if enough
        from jax_impl.launch import auto_devices

        split = auto_devices(config)
        if split > 1:
            jax_points[f"split:{split}dev"] = JaxPoint(config, 1, "split", split)
    torch_members = 1 if accelerator else members
    device = torch_device(accelerator)
    graphs = device != "cpu" and config.family.cuda_graphs  # the RL² step has no captured form: eager on CUDA
    torch_config = dataclasses.replace(config, torch=TorchOptions(device=device, cuda_graphs=graphs))
    torch_points = {f"loop/{t}t": TorchPoint(torch_config, torch_members, t, "loop") for t in torch_threads}
    if members > 1 and not accelerator:
        torch_points[f"vmap/{torch_threads[0]}t"] = TorchPoint(config, members, torch_threads[0], "vmap")
    compiles = []
    listener = lambda event, duration, **kw: compiles.append(event) if event.endswith("backend_compile_duration") else None  # noqa: E731
    jax.monitoring.register_event_duration_secs_listener(listener)
    times: dict[str, list[float]] = {f"jax/{k}": [] for k in jax_points} | {f"torch/{k}": [] for k in torch_points}
    for _ in range(repeats):  # interleaved
        for name, tp in torch_points.items():
            times[f"torch/{name}"].append(tp.run())
        for name, jp in jax_points.items():
            times[f"jax/{name}"].append(jp.run())
    jax.monitoring.unregister_event_duration_listener(listener)
    per_call = {f"jax/{k}": p.members for k, p in jax_points.items()} | {f"torch/{k}": p.members for k, p in torch_points.items()}
    rates = {name: per_call[name] * chunk / statistics.median(values) for name, values in times.items()}
    iqr = {name: _iqr([per_call[name] * chunk / v for v in values]) for name, values in times.items()}
    best_jax = max((r, n) for n, r in rates.items() if n.startswith("jax/"))
    best_torch = max((r, n) for n, r in rates.items() if n.startswith("torch/"))
    torch_loop_1t = rates.get(f"torch/loop/{torch_threads[0]}t")
    first = next(iter(jax_points.values()))
    row = {
        "task": task, "cell": cell, "hidden": hidden, "batch": batch, "length": length, "members": members,
        "steps_per_call": chunk,
        "jax_best": best_jax[1][4:], "jax_updates_per_s": best_jax[0], "jax_tasks_per_s": best_jax[0] * batch,
        "torch_best": best_torch[1][6:], "torch_updates_per_s": best_torch[0],
        "jax_over_best_torch": best_jax[0] / best_torch[0],
        "jax_over_torch_sequential": best_jax[0] / torch_loop_1t,
        "jax_seed_program_over_sequential": (max(rates.get("jax/map", 0), rates["jax/vmap"]) / rates["jax/loop"]
                                             if members > 1 and "jax/loop" in rates else float("nan")),
        # the members over every core against the best one-device program (both in this process)
        "jax_all_cores_over_one": (max(r for n, r in rates.items() if n.startswith("jax/") and "dev" in n)
                                   / max(r for n, r in rates.items() if n.startswith("jax/") and "dev" not in n)
                                   if any("dev" in n for n in rates) else float("nan")),
        "jax_gflops": best_jax[0] * flops / 1e9, "torch_gflops": best_torch[0] * flops / 1e9,
        "jax_fraction_of_sgemm_peak": best_jax[0] * flops / 1e9 / peak,
        "jax_cold_compile_s": max(p.cold_compile_s for p in jax_points.values()),
        "jax_warm_compile_s": max(p.warm_compile_s for p in jax_points.values()),
        "jax_recompiles": len(compiles), "jax_compiled_memory_mb": (first.memory_bytes or 0) / 2**20,
        "jax_vmap_blocks": getattr(jax_points.get("vmap"), "blocks", None),
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_before": load_before, "load_after": os.getloadavg()[0],
    }
    row.update({f"rate:{name}": rate for name, rate in rates.items()})
    row.update({f"iqr:{name}": value for name, value in iqr.items()})
    return row


def parse_points(text: str) -> list[tuple]:
    """``"gru,64,32,7,16;gru,48,64,100,1,bandit"`` -> ``[("gru", 64, 32, 7, 16), ("gru", 48, 64, 100, 1, "bandit")]``
    (cell, H, B, T, S[, task])."""
    points = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        fields = [field.strip() for field in item.split(",")]
        task = fields.pop() if len(fields) == 6 else "gaussian"
        if (len(fields) != 5 or fields[0] not in FLOPS_PER_TOKEN or task not in TASKS
                or not all(f.isdigit() and int(f) > 0 for f in fields[1:])):
            raise argparse.ArgumentTypeError(
                f"bad point {item!r}: expected CELL,H,B,T,S[,TASK] with CELL in {sorted(FLOPS_PER_TOKEN)}, positive "
                f"integers and TASK in {', '.join(TASKS)}")
        points.append((fields[0], *map(int, fields[1:])) + ((task,) if task != "gaussian" else ()))
    if not points:
        raise argparse.ArgumentTypeError("--points needs at least one CELL,H,B,T,S point")
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--repeats", type=integer(1), default=7, help="interleaved timed calls per implementation")
    parser.add_argument("--torch-threads", default="1,2", help="comma-separated torch thread counts to try")
    parser.add_argument("--points", type=parse_points, default=None, metavar="CELL,H,B,T,S[;...]",
                        help="measure these points instead of the preset's, e.g. 'lstm,128,32,64,1;gru,64,32,7,16'")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    # One XLA thread per device, like torch's 1 (set before jax is imported; the single-member points are a
    # 1-thread comparison), and one host device per CPU as the `cogmeta` command has (cogmeta.host_devices), so
    # that points with several members also measure them split over every core.
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    from cogmeta.host_devices import enable_for_command as enable_host_devices

    enable_host_devices()
    import jax
    import torch

    # A fresh persistent compilation cache: the warm-cache compile time reads what the cold compile wrote.
    # The previous settings are restored at the end (the suite also runs inside pytest's process).
    cache_settings = {"jax_compilation_cache_dir": tempfile.mkdtemp(prefix="cogmeta-jax-cache-"),
                      "jax_persistent_cache_min_compile_time_secs": 0, "jax_persistent_cache_min_entry_size_bytes": -1}
    previous = {name: getattr(jax.config, name) for name in cache_settings}
    for name, value in cache_settings.items():
        jax.config.update(name, value)
    try:
        return _run(args, jax, torch)
    finally:
        for name, value in previous.items():
            jax.config.update(name, value)


def _run(args, jax, torch) -> int:
    repeats = 1 if args.preset == "smoke" else args.repeats
    threads = [int(t) for t in args.torch_threads.split(",")]
    accelerator = args.preset.startswith("gpu")
    # on a GPU the device's own float32 peak (the ceiling of its points); on a CPU one core's (a 1-thread comparison)
    on_device = accelerator and jax.default_backend() != "cpu"
    peak = device_sgemm_peak() if on_device else sgemm_peak(256 if args.preset == "smoke" else 1024)
    peak_kind = (f"float32 matmul at precision highest on {jax.devices()[0].device_kind}" if on_device
                 else "1-thread SGEMM on the CPU")
    print(f"measured SGEMM peak ({peak_kind}): {peak:.1f} GFLOP/s", flush=True)
    environment = {
        "cpu": _cpu_model(), "python": platform.python_version(), "torch": torch.__version__, "jax": jax.__version__,
        "jax_backend": jax.default_backend(), "torch_device": torch_device(accelerator), "torch_threads_tried": args.torch_threads,
        "xla_flags": os.environ.get("XLA_FLAGS", ""), "affinity": len(os.sched_getaffinity(0)),
        "sgemm_peak_gflops": round(peak, 1), "sgemm_peak_of": peak_kind, "repeats": repeats,
        "command": "python benchmarks/suite.py " + " ".join(args.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    rows, failed = [], []
    for point in args.points or PRESETS[args.preset]:
        try:
            row = measure_point(point, repeats, threads, peak, 5 if args.preset == "smoke" else 200, accelerator=accelerator)
        except Exception as error:  # one point's failure (out of device memory, say) must not lose the others
            if not accelerator:
                raise
            failed.append(point)
            print(f"point {point} failed: {type(error).__name__}: {str(error)[:300]}", flush=True)
            continue
        rows.append(row)
        print(f"{row['task']:>8} {row['cell']:>4} H={row['hidden']:<4} B={row['batch']:<4} T={row['length']:<4} S={row['members']:<4} "
              f"jax {row['jax_updates_per_s']:9.1f}/s ({row['jax_best']})  torch {row['torch_updates_per_s']:8.1f}/s "
              f"({row['torch_best']})  ratio {row['jax_over_best_torch']:6.2f}  {row['jax_gflops']:5.1f} GFLOP/s "
              f"({100 * row['jax_fraction_of_sgemm_peak']:.0f}% peak)  compile {row['jax_cold_compile_s']:.2f}/"
              f"{row['jax_warm_compile_s']:.2f} s  load {row['load_before']:.1f}", flush=True)
        if accelerator:  # written after every point: a time box that ends the run keeps what was measured
            write_results(args.out, "points" if args.points else args.preset, rows, environment)
    if rows:
        write_results(args.out, "points" if args.points else args.preset, rows, environment)
    return 1 if failed else 0


def write_results(out: Path, preset: str, rows: list[dict], environment: dict) -> None:
    """``suite-<preset>.csv`` (every measured rate), ``.md`` (the table) and ``.png`` (ratios), atomically."""
    from cogmeta.io import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    columns = sorted({key for row in rows for key in row}, key=lambda k: (k.startswith(("rate:", "iqr:")), list(rows[0]).index(k) if k in rows[0] else 0, k))
    lines = [",".join(columns)] + [",".join(_cell(row.get(c, "")) for c in columns) for row in rows]
    atomic_write_text(out / f"suite-{preset}.csv", "\n".join(lines) + "\n")
    table = [f"# Benchmark suite ({preset}): JAX engine vs the best PyTorch configuration", "",
             "; ".join(f"{k}: {v}" for k, v in environment.items()), "",
             "Member-updates/s (S members x optimizer updates per second), medians of interleaved repeats. "
             "Measured on a shared machine: see `load` (1-minute load average before the point). JAX impl "
             "`map:2dev`/`vmap:2dev`: the members split over 2 host devices, one per core; `split:2dev`: one run's batch "
             "split over them, as `cogmeta train` runs it by default (the other rows use one core; PyTorch's best of "
             "its thread counts; % SGEMM peak is of the `sgemm_peak_of` above).", "",
             "| task | cell | H | B | T | S | JAX upd/s | JAX impl | best torch upd/s | torch impl | JAX / best torch | "
             "JAX / torch sequential | JAX seed program / JAX sequential | JAX all cores / one device | JAX GFLOP/s | "
             "% SGEMM peak | compile cold / warm (s) | recompiles | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r.get('task', 'gaussian')} | {r['cell']} | {r['hidden']} | {r['batch']} | {r['length']} | {r['members']} | "
                     f"{r['jax_updates_per_s']:.0f} | {r['jax_best']} | {r['torch_updates_per_s']:.0f} | {r['torch_best']} | "
                     f"{r['jax_over_best_torch']:.2f} | {r['jax_over_torch_sequential']:.2f} | "
                     f"{r['jax_seed_program_over_sequential']:.2f} | {r.get('jax_all_cores_over_one', float('nan')):.2f} | "
                     f"{r['jax_gflops']:.1f} | "
                     f"{100 * r['jax_fraction_of_sgemm_peak']:.0f} | {r['jax_cold_compile_s']:.2f} / {r['jax_warm_compile_s']:.2f} | "
                     f"{r['jax_recompiles']} | {r['load_before']:.1f} |")
    if environment.get("jax_backend", "cpu") != "cpu":  # the GPU goals and how far the device's peak lets them go
        table += _goal_lines(gpu_goal_rows(rows, environment["sgemm_peak_gflops"]), environment["sgemm_peak_gflops"])
    atomic_write_text(out / f"suite-{preset}.md", "\n".join(table) + "\n")
    _plot(out / f"suite-{preset}.png", rows)
    print(f"wrote {out}/suite-{preset}.csv, .md and .png")


def _plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cogmeta.figures import save_figure

    labels = [f"{'bandit ' if r.get('task') == 'bandit' else ''}{r['cell']} H{r['hidden']} B{r['batch']} T{r['length']} S{r['members']}" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.5), sharey=True)
    y = range(len(rows))
    axes[0].barh(y, [r["jax_over_best_torch"] for r in rows], color="tab:blue")
    axes[0].axvline(1, color="k", lw=0.8)
    axes[0].set(xscale="log", xlabel="JAX / best PyTorch (member-updates/s)", yticks=list(y), yticklabels=labels)
    axes[1].barh(y, [100 * r["jax_fraction_of_sgemm_peak"] for r in rows], color="tab:orange")
    axes[1].set(xlabel="JAX achieved % of measured 1-thread SGEMM peak")
    axes[0].invert_yaxis()
    fig.tight_layout()
    save_figure(fig, path)


def _iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]


def _cell(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


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
