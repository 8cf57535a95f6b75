"""``cogmeta sweep``: train seeds x a grid of settings together and write a summary table.

    cogmeta sweep [--preset tutorial-coin | --task gaussian] --backend jax --seeds 16 --grid lr=1e-3,3e-3
                  [--grid hidden=32,64] [--strategy auto|vmap|map|loop] [--workers auto|N] [--out DIR] [config options]

Every config option of ``cogmeta train`` (generated from the config: ``cogmeta.cli_config``) is accepted and
sets the value shared by all members; ``--grid KEY=V1,V2`` varies one setting (keys: see
``cogmeta.sweep.parse_grid``). Seeds are ``--seed``, ``--seed + 1``, ..., ``--seed + N - 1``. Every registered
model family sweeps: the families with ``engine_members`` (``cogmeta.families``) train a group's members together,
the others (seq2seq, amortized) one after another through the run-folder loop (``--strategy`` does not apply).
"""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

from cogmeta.backends import BACKENDS
from cogmeta.cli_config import add_config_options, config_from_args
from cogmeta.cli_options import check_out_folder, integer, workers_option

#: Seed strategies of both engines (each backend rejects the ones it does not have).
STRATEGIES = ("auto", "vmap", "map", "loop")
#: Most seeds per grid point (a sweep writes a run folder per member), and the largest seed (TrainConfig.seed).
MAX_SEEDS, MAX_SEED = 100_000, 2**31 - 1



def add_sweep_parser(commands) -> None:
    """Register ``sweep`` on the ``cogmeta`` sub-command parsers."""
    sweep = commands.add_parser("sweep", help="train many seeds and settings together; write a summary table",
                                description="Train seeds x a grid of settings of the tutorial meta-learner together "
                                            "(JAX: in one compiled program) and write a run folder per member and a "
                                            "summary table. Every config option of `cogmeta train` sets the value "
                                            "shared by all members.")
    sweep.add_argument("--backend", choices=sorted(BACKENDS), default="jax", help="framework that trains (default: jax)")
    sweep.add_argument("--seeds", type=integer(1, MAX_SEEDS), default=4,
                       help=f"seeds per grid point (seed, seed + 1, ...; at most {MAX_SEEDS}) (default: 4)")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                       help="a setting to vary, e.g. lr=1e-3,3e-3 or hidden=32,64 (repeatable)")
    sweep.add_argument("--strategy", choices=STRATEGIES, default="auto",
                       help="how members share the hardware (jax: vmap, map, loop; torch: loop, vmap) (default: auto)")
    sweep.add_argument("--workers", type=workers_option, default="auto",
                       help="processes that share the members, one CPU each (at most the CPUs this process may use), "
                            "or auto: every core, JAX's engine in one process over one device per CPU, otherwise one "
                            "process per CPU once the sweep has 4,000 member-steps (docs/performance.md) (default: auto)")
    sweep.add_argument("--out", type=Path, default=None, help="sweep folder (default: runs/sweep-<task>-<backend>-<time>)")
    sweep.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    # a sweep trains all its steps (no --until-kl) on the CPU (its torch engine has no device options)
    add_config_options(sweep, sections=("model", "train", "rl", "bound", "torch", "jax"),
                       skip=("until_kl", "until_kl_every", "device", "cuda_graphs"))
    sweep.set_defaults(handler=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from cogmeta.sweep import parse_grid, run_sweep

    config = config_from_args(args)
    if args.steps_per_call is not None and args.steps_per_call > config.train.steps:
        raise ValueError(f"argument --steps-per-call {args.steps_per_call}: more than the {config.train.steps} steps of "
                         f"each member (--steps); give at most {config.train.steps}")
    if config.train.seed + args.seeds - 1 > MAX_SEED:
        first = config.train.seed
        raise ValueError(f"argument --seeds {args.seeds}: seeds {first}..{first + args.seeds - 1} go beyond the "
                         f"largest seed {MAX_SEED}; lower --seed or --seeds")
    grid = parse_grid(args.grid, config)
    out = args.out or Path("runs") / f"sweep-{config.task.name}-{args.backend}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    check_out_folder(out)
    if config.family.engine_members:  # the others train one member at a time, as `cogmeta train` does
        _require_sweep_fits(config, grid, args.seeds, args.strategy)
    seeds = range(config.train.seed, config.train.seed + args.seeds)
    rows = run_sweep(config, out, args.backend, seeds, grid, strategy=args.strategy, progress=not args.no_progress,
                     workers=args.workers)
    print((out / "summary.md").read_text(), end="")
    print(f"{len(rows)} members; run folders and summary.csv in {out}")
    return 0


def _require_sweep_fits(config, grid, seeds: int, strategy: str) -> None:
    """Refuse a sweep whose members cannot be held in memory: all of them at once (the sum over grid points of
    ``cogmeta.memory.training_bytes``, times the seeds) unless ``strategy`` is "loop" (one member at a time)."""
    from cogmeta.memory import require_fits, training_bytes
    from cogmeta.sweep import expand

    points = expand(config, [config.train.seed], grid)
    estimates = [training_bytes(member.config) for member in points]
    largest = max(estimates, key=lambda estimate: estimate[0])
    if strategy == "loop":
        require_fits(largest[0], f"the largest member needs at least {largest[1]}", "lower --hidden-size or --batch-size")
        return
    require_fits(seeds * sum(nbytes for nbytes, _ in estimates),
                 f"{seeds} seeds x {len(points)} grid point(s) trained together; the largest member needs at least "
                 f"{largest[1]}", "lower --seeds, the grid, --hidden-size or --batch-size (or use --strategy loop)")
