"""Time to quality of the README's main command, PyTorch against JAX, whole processes, interleaved, in one run.

    python benchmarks/time_to_quality.py                  # -> benchmarks/results/time-to-quality-cpu.{md,csv}
    python benchmarks/time_to_quality.py --repeats 5 --seeds 3 --batch-size 64 --out /tmp/bench
    python benchmarks/time_to_quality.py --seeds 8 --until-kl-every 25 100   # each framework at its best period

Each measurement starts ``cogmeta train --task gaussian --until-kl 0.001 --backend B`` as a fresh process,
as a user does, and reads the line it prints (``training.py``): the step at which the held-out mean
KL(Bayes || model) first fell below 0.001 nats, the seconds of training to that check (from the start of
building the trainer, compilation included) and the seconds since the process started; the whole process (start-up, training, run folder
and figures) is timed from here. Three configurations take turns, one run of each per round and seed, so that a
change in the machine's load falls on all of them.

Every configuration runs seeds ``0 .. --seeds - 1`` (``--seed``): the step at which one run first passes the
target depends on its seed's initial weights and task stream, and the two frameworks draw different ones for
the same seed (measured at the default recipe, checked every 100 steps: PyTorch seeds 0-4 at steps 600, 1000,
300, 200, 400; JAX at 300, 400, 300, 400, 400), so a single seed compares luck as much as speed. The table
gives medians over all runs of a configuration (seeds and rounds) and the range of the steps.

- ``torch``: PyTorch at 1 thread (``--threads 1``; a second thread is slower at this size, measured in
  docs/performance.md);
- ``jax cold``: JAX with an empty persistent compilation cache (a fresh ``COGMETA_JAX_CACHE`` folder per
  run): the first run of a command on a machine;
- ``jax warm``: JAX with the cache a previous run of the same command filled (one untimed run fills it):
  every later run (``cogmeta.compilation_cache``).

``--baseline PATH`` adds ``torch (baseline)`` and ``jax warm (baseline)``, at each check period (its own warm cache): the same command run from another
checkout (``git worktree add PATH REV``), in the same rounds, for before/after figures from one run.

XLA runs at one thread like PyTorch (``XLA_FLAGS`` as in ``benchmarks/suite.py``). Medians over the
repeats; the ratios are JAX / PyTorch from the same run. Timings are never asserted by tests.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cogmeta.cli_options import integer

ROOT = Path(__file__).resolve().parents[1]
REPORT = re.compile(r"at step (?P<step>\d+), after (?P<training>[\d.]+) s of training and (?P<start>[\d.]+) s of wall time")
#: the line after it: where the training seconds went (``cogmeta.cli``)
PARTS = re.compile(r"first training call (?P<first>[\d.]+) s.*later calls (?P<later>[\d.]+) s, held-out checks "
                   r"(?P<checks>[\d.]+) s")
#: its first part since 2026-12-07 (a baseline from before prints none; its training clock started after it)
TRAINER = re.compile(r"building the trainer (?P<trainer>[\d.]+) s")
CONFIGURATIONS = ("torch", "jax cold", "jax warm")
COLUMNS = ("configuration", "round", "seed", "step", "training_s", "trainer_s", "first_call_s", "later_calls_s",
           "checks_s", "start_to_target_s", "process_s")
MEASURES = ("step", "training_s", "trainer_s", "first_call_s", "later_calls_s", "checks_s", "start_to_target_s",
            "process_s")


#: a configuration's name: the backend, JAX's cache, the check period where given, the baseline checkout
NAME = re.compile(r"(?P<backend>torch|jax)(?: (?P<cache>cold|warm))?(?: every (?P<every>\d+))?(?P<baseline> \(baseline\))?$")


def configurations_of(args) -> tuple[str, ...]:
    """The measured configurations: PyTorch, cold and warm JAX (``--jax-warm-only``: warm JAX alone), each at every
    check period of ``--until-kl-every`` (named "... every N"; none given: the command's default), then the
    ``--baseline`` checkout's PyTorch and warm JAX at the same periods."""
    kinds = ("jax warm",) if args.jax_warm_only else CONFIGURATIONS
    periods = [f" every {every}" for every in args.until_kl_every] if args.until_kl_every else [""]
    mine = tuple(f"{kind}{period}" for period in periods for kind in kinds)
    if not args.baseline:
        return mine
    theirs = ("jax warm",) if args.jax_warm_only else ("torch", "jax warm")
    return mine + tuple(f"{kind}{period} (baseline)" for period in periods for kind in theirs)


def command(configuration: str, out: Path, seed: int, args) -> list[str]:
    """The measured ``cogmeta train`` command line of ``configuration``."""
    name = NAME.match(configuration)
    backend = name["backend"]
    line = [sys.executable, "-m", "cogmeta", "train", "--task", "gaussian", "--until-kl", str(args.target),
            "--backend", backend, "--seed", str(seed), "--out", str(out), "--no-progress"]
    if name["every"]:
        line += ["--until-kl-every", name["every"]]
    if args.batch_size is not None:
        line += ["--batch-size", str(args.batch_size)]
    if args.learning_rate is not None:
        line += ["--learning-rate", str(args.learning_rate)]
    if backend == "torch":
        line += ["--threads", "1"]
    if args.no_figures:
        line += ["--no-figures"]
    return line


def run_once(configuration: str, seed: int, scratch: Path, warm_cache: Path, args) -> dict:
    """One whole process of ``configuration``; its figures from the printed line and the parent's clock.

    A ``(baseline)`` configuration runs in ``args.baseline`` (``python -m`` imports the checkout it starts in).
    """
    name = NAME.match(configuration)
    baseline = name["baseline"] is not None
    environ = {key: value for key, value in os.environ.items() if not key.startswith("JAX_")}
    environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    if name["cache"] == "cold":
        environ["COGMETA_JAX_CACHE"] = tempfile.mkdtemp(dir=scratch, prefix="cold-cache-")
    elif name["cache"] == "warm":
        environ["COGMETA_JAX_CACHE"] = str(warm_cache.with_name(warm_cache.name + "-baseline") if baseline else warm_cache)
    else:
        environ["COGMETA_JAX_CACHE"] = "off"
    out = Path(tempfile.mkdtemp(dir=scratch, prefix="run-")) / "run"
    began = time.perf_counter()
    done = subprocess.run(command(configuration, out, seed, args), env=environ, capture_output=True, text=True,
                          cwd=args.baseline if baseline else ROOT)
    process = time.perf_counter() - began
    match, parts, trainer = REPORT.search(done.stdout), PARTS.search(done.stdout), TRAINER.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"{configuration}: exit code {done.returncode}, no time-to-quality line\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    # a (baseline) checkout from before the breakdown line prints none: those columns stay empty there
    split = ({"first_call_s": float(parts["first"]), "later_calls_s": float(parts["later"]),
              "checks_s": float(parts["checks"])} if parts else {"first_call_s": math.nan, "later_calls_s": math.nan,
                                                                  "checks_s": math.nan})
    return {"step": int(match["step"]), "training_s": float(match["training"]),
            "trainer_s": float(trainer["trainer"]) if trainer else math.nan, **split,
            "start_to_target_s": float(match["start"]), "process_s": round(process, 3)}


def summarise(rows: list[dict], configurations) -> list[dict]:
    """Medians per configuration (over its seeds and rounds) and the range of its steps."""
    table = []
    for configuration in configurations:
        mine = [row for row in rows if row["configuration"] == configuration]
        steps = [row["step"] for row in mine]
        table.append({"configuration": configuration, "runs": len(mine), "steps": f"{min(steps)}-{max(steps)}",
                      **{key: statistics.median(row[key] for row in mine) for key in MEASURES}})
    return table


def markdown(table: list[dict], args, environment: str) -> str:
    by_name = {row["configuration"]: row for row in table}
    baseline_note = (["`(baseline)`: the same command from the checkout given by `--baseline`.", ""]
                     if any(NAME.match(name)["baseline"] for name in by_name) else [])
    lines = [f"# Time to quality: `cogmeta train --task gaussian --until-kl {args.target}`"
             f"{'' if args.batch_size is None else f' --batch-size {args.batch_size}'}"
             f"{'' if args.learning_rate is None else f' --learning-rate {args.learning_rate:g}'}", "",
             f"{environment}", "", *baseline_note,
             "| configuration | runs | step (range) | training s | of which building the trainer s | first call s "
             "| later calls s | held-out checks s | process start to target s | whole process s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in table:
        lines.append(f"| {row['configuration']} | {row['runs']} | {row['step']:.0f} ({row['steps']}) | {row['training_s']:.2f} | "
                     f"{row['trainer_s']:.2f} | {row['first_call_s']:.2f} | {row['later_calls_s']:.2f} | {row['checks_s']:.2f} | "
                     f"{row['start_to_target_s']:.2f} | {row['process_s']:.2f} |")
    pairs = [(jax_name, re.sub(r"^jax (cold|warm)", "torch", jax_name)) for jax_name in by_name
             if jax_name.startswith("jax")]
    if args.until_kl_every and len(args.until_kl_every) > 1:  # each framework at its fastest check period
        for checkout in (None, " (baseline)"):
            named = {kind: [name for name in by_name if NAME.match(name)["baseline"] == checkout and name.startswith(kind)]
                     for kind in ("jax warm", "torch")}
            if not all(named.values()):
                continue
            best = {kind: min(names, key=lambda name: by_name[name]["training_s"]) for kind, names in named.items()}
            if (best["jax warm"], best["torch"]) not in pairs:  # both fastest at the same period: that row says it
                pairs.append((best["jax warm"], best["torch"]))
    for jax_name, torch_name in pairs:
        if torch_name not in by_name:  # --jax-warm-only
            continue
        ratio = {key: by_name[jax_name][key] / by_name[torch_name][key]
                 for key in ("training_s", "start_to_target_s", "process_s")}
        lines.append(f"| ratio {jax_name} / {torch_name} (same run) | | | {ratio['training_s']:.2f} | | | | | "
                     f"{ratio['start_to_target_s']:.2f} | {ratio['process_s']:.2f} |")
    lines += ["", f"Medians over seeds 0-{args.seeds - 1} and the rounds; each round runs every configuration once per seed, one after another (in the reverse order in odd rounds) "
              "(`benchmarks/time_to_quality.py`). The training seconds split as `cogmeta train` prints them: building "
              "the trainer (the model drawn; JAX compiles its first program on a thread meanwhile), the first training "
              "call (in JAX: its steps, and tracing, lowering and compiling or loading the program where that was not "
              "done ahead), the later calls and the held-out checks made outside the calls (since 2026-12-07's "
              "seventh session the step-0 check only: the others run inside the calls, `Trainer.run_checked`). A "
              "baseline from before 2026-12-07 started its training clock after building the trainer and prints no "
              "such part (nan)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=integer(1), default=3, help="rounds (one run of each configuration per round)")
    parser.add_argument("--seeds", type=integer(1), default=5, help="seeds 0 .. N-1 of every configuration in every round")
    parser.add_argument("--target", type=float, default=1e-3, help="held-out mean KL target, nats")
    parser.add_argument("--batch-size", type=integer(1), default=None, help="override the default recipe's batch size")
    parser.add_argument("--learning-rate", type=float, default=None, help="override the default recipe's peak rate")
    parser.add_argument("--until-kl-every", type=integer(1), nargs="+", default=None, metavar="N",
                        help="time every configuration at each of these held-out check periods (steps; default: the "
                             "command's); with several, the table adds the ratio of each framework at its fastest")
    parser.add_argument("--no-figures", action="store_true", help="pass --no-figures to every run")
    parser.add_argument("--baseline", type=Path, default=None, metavar="PATH",
                        help="also time the command run from this checkout (e.g. a git worktree of the previous commit)")
    parser.add_argument("--jax-warm-only", action="store_true",
                        help="time only the warm JAX run (and its --baseline): a JAX start-up change measured in "
                             "many short rounds, without PyTorch's runs or ratios")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    configurations = configurations_of(args)
    suffix = ("" if args.batch_size is None else f"-b{args.batch_size}") + (
        "" if args.learning_rate is None else f"-lr{args.learning_rate:g}") + (
        "" if not args.until_kl_every else "-every" + "-".join(map(str, args.until_kl_every))) + (
        "-jax-warm" if args.jax_warm_only else "")
    rows = []
    with tempfile.TemporaryDirectory(prefix="cogmeta-ttq-") as scratch_name:
        scratch = Path(scratch_name)
        warm_cache = scratch / "warm-cache"
        # JAX writes the warm cache in untimed runs of the same commands: one seed fills it for every seed (the seed
        # is an argument of the compiled programs), but a baseline from before 2026-12-07 compiled one per seed.
        fills = [(name, 0) for name in configurations if NAME.match(name)["cache"] == "warm"
                 and NAME.match(name)["baseline"] is None]
        fills += [("jax warm (baseline)", seed) for seed in range(args.seeds) if args.baseline]
        for configuration, seed in fills:
            saved = run_once(configuration, seed, scratch, warm_cache, args)
            print(f"filled the warm cache: {configuration}, seed {seed} ({saved['start_to_target_s']:.2f} s to "
                  f"target)", flush=True)
        for index in range(args.repeats):
            for seed in range(args.seeds):
                # odd rounds in the reverse order, so that no configuration always runs right after another
                for configuration in (configurations if index % 2 == 0 else configurations[::-1]):
                    row = {"configuration": configuration, "round": index, "seed": seed,
                           **run_once(configuration, seed, scratch, warm_cache, args)}
                    print(", ".join(f"{key} {row[key]}" for key in COLUMNS), flush=True)
                    rows.append(row)
    import platform

    environment = (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.processor() or platform.machine()}, "
                   f"{len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.2f} at the end; "
                   f"PyTorch 1 thread, XLA 1 thread; `python benchmarks/time_to_quality.py {' '.join(argv or sys.argv[1:])}`")
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"time-to-quality-cpu{suffix}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    report = markdown(summarise(rows, configurations), args, environment)
    (args.out / f"time-to-quality-cpu{suffix}.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
