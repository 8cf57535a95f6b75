"""``cogmeta sweep``: train seeds x a grid of settings together and write a summary table.

    cogmeta sweep --task gaussian --backend jax --seeds 16 --grid lr=1e-3,3e-3 [--grid hidden=32,64]
                  [--strategy auto|vmap|map|loop] [--out DIR] [model, training and task options]

Every option of ``cogmeta train`` that sets the model, the training recipe or the task is accepted and
sets the value shared by all members; ``--grid KEY=V1,V2`` varies one setting (keys: see
``cogmeta.sweep.parse_grid``). Seeds are ``--seed``, ``--seed + 1``, ..., ``--seed + N - 1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
from pathlib import Path

from cogmeta.backends import BACKENDS
from cogmeta.cli_options import add_task_parameters, config_from_args
from cogmeta.config import (
    CELLS,
    DTYPES,
    SCHEDULES,
    JaxOptions,
    ModelConfig,
    TorchOptions,
    TrainConfig,
)
from cogmeta.tasks import TASKS

#: Seed strategies of both engines (each backend rejects the ones it does not have).
STRATEGIES = ("auto", "vmap", "map", "loop")


def add_sweep_parser(commands) -> None:
    """Register ``sweep`` on the ``cogmeta`` sub-command parsers."""
    sweep = commands.add_parser("sweep", help="train many seeds and settings together; write a summary table",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sweep.add_argument("--task", choices=sorted(TASKS), default="gaussian", help="environment to meta-train on")
    sweep.add_argument("--backend", choices=sorted(BACKENDS), default="jax", help="framework that trains")
    sweep.add_argument("--seeds", type=int, default=4, help="seeds per grid point (seed, seed + 1, ...)")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                       help="a setting to vary, e.g. lr=1e-3,3e-3 or hidden=32,64 (repeatable)")
    sweep.add_argument("--strategy", choices=STRATEGIES, default="auto",
                       help="how members share the hardware (jax: vmap, map, loop; torch: loop, vmap)")
    sweep.add_argument("--out", type=Path, default=None, help="sweep folder (default: runs/sweep-<task>-<backend>-<time>)")
    sweep.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    group = sweep.add_argument_group("model")
    group.add_argument("--cell", choices=CELLS, default=ModelConfig.cell)
    group.add_argument("--hidden-size", type=int, default=ModelConfig.hidden_size)
    group.add_argument("--num-layers", type=int, default=ModelConfig.num_layers)
    group = sweep.add_argument_group("training (shared by every member)")
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        if field.name in ("schedule", "dtype", "until_kl", "until_kl_every"):  # a sweep trains all its steps
            continue
        kind = type(getattr(defaults, field.name))
        group.add_argument("--" + field.name.replace("_", "-"), type=kind, default=getattr(defaults, field.name))
    group.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule)
    group.add_argument("--dtype", choices=DTYPES, default=defaults.dtype)
    group.add_argument("--threads", type=int, default=TorchOptions.threads, help="torch intra-op threads (0: torch default)")
    group.add_argument("--steps-per-call", type=int, default=JaxOptions.steps_per_call, help="JAX optimizer steps per compiled call")
    add_task_parameters(sweep)
    sweep.set_defaults(handler=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from cogmeta.sweep import parse_grid, run_sweep

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    config = config_from_args(args)
    grid = parse_grid(args.grid, config)
    out = args.out or Path("runs") / f"sweep-{config.task.name}-{args.backend}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    seeds = range(args.seed, args.seed + args.seeds)
    rows = run_sweep(config, out, args.backend, seeds, grid, strategy=args.strategy, progress=not args.no_progress)
    print((out / "summary.md").read_text(), end="")
    print(f"{len(rows)} members; run folders and summary.csv in {out}")
    return 0
