"""``cogmeta experiment heuristics CONDITION|all``: the options and the handler (registered in ``cli.py``).

    cogmeta experiment heuristics ranking --backend jax --betas 0.03 --seeds 2 [--pretrain-steps 6000
        --finetune-steps 3000 --hidden-size 64 --batch-size 64 --lr 1e-3 --eval-tasks 1000 --out DIR]
"""

from __future__ import annotations

import argparse

from cogmeta.experiments.heuristics import BoundedRecipe

CHOICES = ("ranking", "direction", "none", "all")


def add_heuristics_arguments(experiment: argparse.ArgumentParser) -> None:
    """Options of the heuristics study (``--seed``, ``--lr``, ``--backend``, ``--out`` are shared)."""
    group = experiment.add_argument_group(
        "heuristics (Binz et al. 2022): EXPERIMENT = ranking, direction, none or all; --lr defaults to 1e-3, --seed is the first seed")
    defaults = BoundedRecipe()
    group.add_argument("--betas", type=float, nargs="+", default=list(defaults.betas), help="KL weights of stage 2 (>= 0)")
    group.add_argument("--seeds", type=int, default=1, help="training seeds per condition and beta")
    group.add_argument("--pretrain-steps", type=int, default=defaults.pretrain_steps, help="stage-1 steps at beta = 0")
    group.add_argument("--finetune-steps", type=int, default=defaults.finetune_steps, help="stage-2 steps per beta")
    group.add_argument("--hidden-size", type=int, default=defaults.hidden_size, help="GRU units H")
    group.add_argument("--batch-size", type=int, default=defaults.batch_size, help="tasks per step")
    group.add_argument("--eval-tasks", type=int, default=1000, help="held-out tasks per condition")


def run_heuristics(args: argparse.Namespace) -> int:
    from cogmeta.experiments.heuristics import run_experiment

    if args.name not in CHOICES:
        raise SystemExit(f"cogmeta experiment heuristics: unknown experiment {args.name!r}; choose one of {', '.join(CHOICES)}")
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be >= 1, got {args.seeds}")
    try:
        recipe = BoundedRecipe(
            hidden_size=args.hidden_size, batch_size=args.batch_size,
            learning_rate=args.lr if args.lr is not None else BoundedRecipe.learning_rate,
            pretrain_steps=args.pretrain_steps, finetune_steps=args.finetune_steps, betas=tuple(args.betas),
        )
    except ValueError as error:
        raise SystemExit(f"cogmeta experiment heuristics: {error}") from None
    conditions = ("ranking", "direction", "none") if args.name == "all" else (args.name,)
    seeds = range(args.seed, args.seed + args.seeds)
    run_experiment(conditions, args.backend, recipe, seeds, args.out, eval_tasks=args.eval_tasks, figures=not args.no_figures)
    return 0
