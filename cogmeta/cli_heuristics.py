"""The command line of the ``bounded_gru`` family: what ``cogmeta train`` / ``evaluate`` print for its runs, and the
study ``cogmeta experiment heuristics EXPERIMENT`` (registered in ``cli.py``).

    cogmeta experiment heuristics ranking|direction|none|all --backend torch|jax [--betas 0.03 0.01 --seeds 1
        --pretrain-steps 8000 --finetune-steps 3000 --hidden-size 64 --batch-size 64 --lr 1e-3 --seed 0
        --eval-tasks 1000 --exact-samples 65536 --out DIR --no-figures]

Heuristics from bounded meta-learned inference (Binz et al. 2022): stage 1 is preset ``heuristics-<condition>``
with the sizes given here, stage 2 fine-tunes it per beta (``cogmeta.experiments.heuristics``). Numbers are
parsed strictly, with upper bounds (and, for the sizes, a memory estimate) while parsing; values below their
ranges raise ValueError from the run config (or from the checks here for the study's own options), with the
option named, and ``--out`` and the memory of the grid are checked before any training:
``cogmeta.cli.main`` reports each as one ``cogmeta: error: ...`` line with exit code 2.
"""

from __future__ import annotations

import argparse

from cogmeta._validation import require_int
from cogmeta.cli_experiment import MAX_SEED, add_shared_options, add_study_parser, check_out
from cogmeta.cli_options import fitting_count, integer, naming_options, real, workers_option
from cogmeta.config import MAX_COUNT
from cogmeta.experiments.heuristics import BETAS, EXACT_SAMPLES, FINETUNE_STEPS, base_config

CHOICES = ("ranking", "direction", "none", "all")
_CONDITIONS = ("ranking", "direction", "none")
#: Most training seeds (a seed is a member of every stage: 3 conditions x betas of them per seed).
MAX_SEEDS = 10_000
#: Largest GRU (``ModelConfig.hidden_size``'s bound).
MAX_HIDDEN = 65_536
#: Most prior samples of the exact reference (its time grows with them: 2^16 take minutes per condition,
#: 2^24 about a day; its memory is bounded by blocks).
MAX_EXACT_SAMPLES = 2**24
#: Trials and cues of the study's task (``PairedComparisonTask()``), for the memory estimates.
_TRIALS, _CUES = 10, 4
#: Config fields whose option is named otherwise.
_FLAGS = {"learning_rate": "--lr", "steps": "--pretrain-steps"}


def _training_estimate(hidden_size: int = 1, batch_size: int = 1):
    from cogmeta.memory import bounded_gru_bytes

    return bounded_gru_bytes(hidden_size, batch_size, _TRIALS, _CUES)


def _evaluation_estimate(eval_tasks: int, hidden_size: int = 1):
    """Held-out tasks: 16 float64 arrays of [T, N] (cues, predictions, baselines, references), + the hidden states."""
    from cogmeta.memory import evaluation_bytes, gib

    nbytes, arithmetic = evaluation_bytes(eval_tasks, _TRIALS)
    states = eval_tasks * _TRIALS * hidden_size * 4
    return nbytes + states, f"{arithmetic}, + hidden states of hidden_size={hidden_size} = {gib(states)}"


def add_parser(studies) -> argparse.ArgumentParser:
    """Register ``heuristics`` on the ``experiment`` parser's study subcommands."""
    parser = add_study_parser(
        studies, "heuristics", help="Binz et al. 2022: heuristics from bounded meta-learned inference",
        description="Heuristics from bounded meta-learned inference (Binz, Gershman, Schulz & Endres 2022): "
                    "pretrain a GRU at beta = 0, fine-tune it with a description-length bound per beta, and "
                    "compare its choices with take-the-best and equal weighting.",
        experiments=CHOICES, experiment_help="cue condition to train on, or all three")
    defaults = base_config()
    add_shared_options(parser, out_help="folder for heuristics.csv, summary.md and the figure "
                                        "(default: runs/heuristics-<backend>)",
                       seed_help="first training seed (seeds SEED .. SEED + SEEDS - 1)",
                       figures_help="do not write the Gini figure")
    parser.add_argument("--betas", type=real(), nargs="+", default=list(BETAS),
                        help="KL weights of stage 2 (each >= 0)")
    parser.add_argument("--seeds", type=integer(None, MAX_SEEDS), default=1,
                        help="training seeds per condition and beta; tables show mean ± sem over them and the bars "
                             "are decided on the mean (JAX trains all seeds in one compiled program per stage)")
    parser.add_argument("--pretrain-steps", type=integer(None, MAX_COUNT), default=defaults.train.steps,
                        help="stage-1 steps at beta = 0")
    parser.add_argument("--finetune-steps", type=integer(None, MAX_COUNT), default=FINETUNE_STEPS,
                        help="stage-2 steps per beta")
    parser.add_argument("--hidden-size", type=fitting_count("--hidden-size", MAX_HIDDEN, _training_estimate),
                        default=defaults.model.hidden_size, help="GRU units H")
    parser.add_argument("--batch-size", default=defaults.train.batch_size, help="tasks per step",
                        type=fitting_count("--batch-size", MAX_COUNT, lambda b: _training_estimate(batch_size=b)))
    parser.add_argument("--lr", type=real(), default=defaults.train.learning_rate, help="Adam learning rate")
    parser.add_argument("--eval-tasks", type=fitting_count("--eval-tasks", MAX_COUNT, _evaluation_estimate),
                        default=1000, help="held-out tasks per condition")
    parser.add_argument("--exact-samples", type=integer(None, MAX_EXACT_SAMPLES), default=EXACT_SAMPLES,
                        help="prior samples M of the exact Bayes reference (cached on disk; 0: leave it out)")
    parser.add_argument("--workers", type=workers_option, default="auto",
                        help="torch: processes that share each stage's cells, one CPU each, or auto (one per CPU once "
                             "a stage has 4,000 member-steps); JAX trains a stage in one program over one device per "
                             "CPU (default: auto)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Handler: validate (ValueError naming the option), check --out and memory, train the grid, evaluate,
    write the table and figure."""
    from cogmeta.cpu_workers import require_workers
    from cogmeta.experiments.heuristics import check_betas, run_experiment

    with naming_options(args, _FLAGS):
        base = base_config(hidden_size=args.hidden_size, batch_size=args.batch_size, learning_rate=args.lr,
                           pretrain_steps=args.pretrain_steps)
        betas = check_betas(args.betas)
        finetune_steps = require_int("heuristics", "finetune_steps", args.finetune_steps, 0)
        seeds = require_int("heuristics", "seeds", args.seeds, 1)
        first = require_int("heuristics", "seed", args.seed, 0)
        eval_tasks = require_int("heuristics", "eval_tasks", args.eval_tasks, 1)
        exact_samples = require_int("heuristics", "exact_samples", args.exact_samples, 0)
    if first + seeds - 1 > MAX_SEED:
        raise ValueError(f"argument --seeds {seeds}: seeds {first}..{first + seeds - 1} go beyond the largest seed "
                         f"{MAX_SEED}; lower --seed or --seeds")
    require_workers(args.workers, "argument --workers")  # before the output folder is made
    conditions = _CONDITIONS if args.experiment == "all" else (args.experiment,)
    out = check_out(args.out, f"runs/heuristics-{args.backend}")
    _require_fits(base, betas, args.backend, len(conditions), seeds, eval_tasks)
    run_experiment(conditions, args.backend, base, range(first, first + seeds), out, betas=betas,
                   finetune_steps=finetune_steps, eval_tasks=eval_tasks, figures=not args.no_figures,
                   exact_samples=exact_samples, workers=args.workers)
    return 0


def _require_fits(base, betas, backend: str, conditions: int, seeds: int, eval_tasks: int) -> None:
    """Refuse a grid whose training stage (JAX: every member of a stage in one program; torch: one member at a
    time) or evaluation cannot fit in the memory available now, with the arithmetic."""
    from cogmeta.memory import bounded_gru_bytes, require_fits

    members = 1
    if backend == "jax":
        members = conditions * seeds * max(1, sum(beta > 0 for beta in betas))
    hidden_size = base.model.hidden_size
    nbytes, arithmetic = bounded_gru_bytes(hidden_size, base.train.batch_size, _TRIALS, _CUES, members)
    require_fits(nbytes, f"training needs at least {arithmetic}",
                 "lower --hidden-size or --batch-size" + (" (or --seeds, --betas: JAX trains a stage's members "
                                                          "together)" if backend == "jax" else ""))
    nbytes, arithmetic = _evaluation_estimate(eval_tasks, hidden_size)
    require_fits(nbytes, f"--eval-tasks {eval_tasks}: {arithmetic}", "lower --eval-tasks")


def report_training(result, config, backend: str, eval_tasks: int) -> None:
    """What ``cogmeta train`` prints after a bounded_gru run: time, final loss and, unless ``eval_tasks`` is 0,
    the evaluation table on that many held-out tasks."""
    print(f"trained {result.steps} steps in {result.seconds:.2f} s with {backend}; final loss (NLL + w KL) "
          f"{result.final_loss:.4f}")
    if eval_tasks > 1:
        report_evaluation(result.run_dir, backend, eval_tasks, figures=False)
    print(f"run folder: {result.run_dir}")


def report_evaluation(run, backend: str | None, num_tasks: int, seed: int | None = None, figures: bool = True) -> int:
    """``cogmeta evaluate RUN`` for a bounded_gru run: Gini per trial, accuracy and KL to each heuristic of the
    pruned model beside the heuristics on the same held-out tasks of its condition (the study's tasks and
    table, without the Monte-Carlo exact reference); ``RUN/evaluation-<backend>.csv``."""
    from cogmeta.config import RunConfig
    from cogmeta.experiments.heuristics import EVAL_SEED, evaluate_grid, format_cells, write_csv
    from cogmeta.runs import RunDir
    from cogmeta.weights import load_weights, trained_with

    del figures  # the table is the evaluation; the learning curve is written at the end of training
    run_dir = RunDir.at(run)
    config = RunConfig.load(run_dir.config)
    backend = backend or trained_with(run_dir.weights) or "torch"
    cell = (config.task.condition, config.bound.beta, config.train.seed)
    rows = evaluate_grid({cell: load_weights(run_dir.weights, config)}, config.task, [config.task.condition], backend,
                         config.model.hidden_size, num_tasks, exact_samples=0, echo=lambda *_: None,
                         seed=EVAL_SEED if seed is None else seed)
    print(f"{run_dir.root}: {config.task.condition} condition, bounded GRU-{config.model.hidden_size}, beta "
          f"{config.bound.beta:g}, trained with {trained_with(run_dir.weights) or 'unknown'}, evaluated with {backend} "
          f"on {num_tasks} held-out tasks")
    print(format_cells(rows))
    write_csv(rows, run_dir.evaluation(backend))
    return 0
