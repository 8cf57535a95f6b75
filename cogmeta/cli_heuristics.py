"""``cogmeta experiment heuristics EXPERIMENT``: the study's parser and handler (registered in ``cli.py``).

    cogmeta experiment heuristics ranking|direction|none|all --backend torch|jax [--betas 0.03 0.01 --seeds 1
        --pretrain-steps 8000 --finetune-steps 3000 --hidden-size 64 --batch-size 64 --lr 1e-3 --seed 0
        --eval-tasks 1000 --exact-samples 65536 --out DIR --no-figures]

Heuristics from bounded meta-learned inference (Binz et al. 2022). Invalid values raise ValueError from
:class:`~cogmeta.experiments.heuristics.BoundedRecipe` (or from the checks here for the options it does
not hold), which ``cogmeta.cli.main`` reports as one ``cogmeta: error: ...`` line with exit code 2.
"""

from __future__ import annotations

import argparse

from cogmeta._validation import require_int
from cogmeta.cli_experiment import add_shared_options, add_study_parser
from cogmeta.experiments.heuristics import EXACT_SAMPLES, BoundedRecipe

CHOICES = ("ranking", "direction", "none", "all")
_CONDITIONS = ("ranking", "direction", "none")


def add_parser(studies) -> argparse.ArgumentParser:
    """Register ``heuristics`` on the ``experiment`` parser's study subcommands."""
    parser = add_study_parser(
        studies, "heuristics", help="Binz et al. 2022: heuristics from bounded meta-learned inference",
        description="Heuristics from bounded meta-learned inference (Binz, Gershman, Schulz & Endres 2022): "
                    "pretrain a GRU at beta = 0, fine-tune it with a description-length bound per beta, and "
                    "compare its choices with take-the-best and equal weighting.",
        experiments=CHOICES, experiment_help="cue condition to train on, or all three")
    defaults = BoundedRecipe()
    add_shared_options(parser, out_help="folder for heuristics.csv, summary.md and the figure "
                                        "(default: runs/heuristics-<backend>)",
                       seed_help="first training seed (seeds SEED .. SEED + SEEDS - 1)",
                       figures_help="do not write the Gini figure")
    parser.add_argument("--betas", type=float, nargs="+", default=list(defaults.betas),
                        help="KL weights of stage 2 (each >= 0)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="training seeds per condition and beta; tables show mean ± sem over them and the bars "
                             "are decided on the mean (JAX trains all seeds in one compiled program per stage)")
    parser.add_argument("--pretrain-steps", type=int, default=defaults.pretrain_steps, help="stage-1 steps at beta = 0")
    parser.add_argument("--finetune-steps", type=int, default=defaults.finetune_steps, help="stage-2 steps per beta")
    parser.add_argument("--hidden-size", type=int, default=defaults.hidden_size, help="GRU units H")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="tasks per step")
    parser.add_argument("--lr", type=float, default=defaults.learning_rate, help="Adam learning rate")
    parser.add_argument("--eval-tasks", type=int, default=1000, help="held-out tasks per condition")
    parser.add_argument("--exact-samples", type=int, default=EXACT_SAMPLES,
                        help="prior samples M of the exact Bayes reference (cached on disk; 0: leave it out)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Handler: validate (ValueError), train the grid, evaluate, write the table and figure."""
    from cogmeta.experiments.heuristics import run_experiment

    recipe = BoundedRecipe(hidden_size=args.hidden_size, batch_size=args.batch_size, learning_rate=args.lr,
                           pretrain_steps=args.pretrain_steps, finetune_steps=args.finetune_steps,
                           betas=tuple(args.betas))
    seeds = require_int("heuristics", "seeds", args.seeds, 1)
    first = require_int("heuristics", "seed", args.seed, 0, 2**31 - seeds)
    eval_tasks = require_int("heuristics", "eval_tasks", args.eval_tasks, 1)
    exact_samples = require_int("heuristics", "exact_samples", args.exact_samples, 0)
    conditions = _CONDITIONS if args.experiment == "all" else (args.experiment,)
    run_experiment(conditions, args.backend, recipe, range(first, first + seeds), args.out, eval_tasks=eval_tasks,
                   figures=not args.no_figures, exact_samples=exact_samples)
    return 0
