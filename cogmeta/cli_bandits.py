"""The command line of the ``rl2`` family: what ``cogmeta train`` / ``evaluate`` print for its runs, and the study

    cogmeta experiment bandits two-armed|dependent|five-armed|all --backend torch|jax [--out DIR --seed 0
        --steps N --num-tasks 10000 --no-figures --no-progress]

which trains each setting's preset through the one pipeline and tables it beside every reference policy
(``cogmeta.studies.meta_rl_bandits``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cogmeta.cli_experiment import add_shared_options, add_study_parser, check_out
from cogmeta.cli_options import integer, task_count
from cogmeta.families import model_family

#: The study's settings (``cogmeta.studies.meta_rl_bandits.SETTINGS``) and "all".
CHOICES = ("two-armed", "dependent", "five-armed", "all")
#: Held-out bandits every policy of the study plays: the rl2 family's evaluation default (``cogmeta.families``).
DEFAULT_TASKS = model_family("rl2").evaluate_tasks


def report_training(result, config, backend: str, eval_tasks: int) -> None:
    """What ``cogmeta train`` prints after an rl2 run: time, final loss and, unless ``eval_tasks`` is 0, the
    policy table on that many held-out bandits."""
    print(f"trained {result.steps} updates in {result.seconds:.1f} s with {backend}; final A2C loss {result.final_loss:.4f}")
    if eval_tasks > 1:
        report_evaluation(result.run_dir, backend, eval_tasks, figures=False)
    print(f"run folder: {result.run_dir}")


def report_evaluation(run: Path, backend: str | None, num_tasks: int, seed: int | None = None,
                      figures: bool = True) -> int:
    """``cogmeta evaluate RUN`` for an rl2 run: the policy table, ``RUN/evaluation-<backend>.csv`` and
    ``RUN/figures/policies-<backend>.png``."""
    from cogmeta.bandit_evaluation import HELD_OUT_SEED, evaluate, write_figures
    from cogmeta.config import RunConfig
    from cogmeta.io import atomic_write_text
    from cogmeta.runs import RunDir
    from cogmeta.weights import load_weights, trained_with

    run_dir = RunDir.at(run)
    config = RunConfig.load(run_dir.config)
    backend = backend or trained_with(run_dir.weights) or "torch"
    evaluation = evaluate(config, load_weights(run_dir.weights, config), backend, num_tasks=num_tasks,
                          seed=HELD_OUT_SEED if seed is None else seed)
    print(f"{run_dir.root}: {config.task.name} task, RL² {config.model.cell.upper()}-{config.model.hidden_size}, "
          f"trained with {trained_with(run_dir.weights) or 'unknown'}, evaluated with {backend}")
    print(evaluation.table())
    atomic_write_text(run_dir.evaluation(backend), evaluation.to_csv())
    if figures:
        for path in write_figures(evaluation, run_dir.figures, backend):
            path.replace(path.with_name(f"policies-{backend}.png"))
    return 0


def add_parser(studies) -> argparse.ArgumentParser:
    """Register ``bandits`` on the ``experiment`` parser's study subcommands."""
    parser = add_study_parser(
        studies, "bandits", help="Duan et al. 2016, Wang et al. 2018: RL² on bandits vs Bayes-optimal",
        description="Meta-reinforcement learning on Bernoulli bandits: an RL² agent trained by A2C (the one "
                    "pipeline, presets rl2-*) beside random, greedy, Thompson, UCB1, Gittins and the exact "
                    "Bayes-optimal policy on the same held-out bandits.",
        experiments=CHOICES, experiment_help="which setting")
    add_shared_options(parser, out_help="folder of the run folders, results.csv, summary.md and figures "
                                        "(default: runs/bandits-<backend>)",
                       seed_help="training seed of every setting", figures_help="do not write figures")
    parser.add_argument("--steps", type=integer(1), default=None, help="updates per setting (default: the preset's)")
    parser.add_argument("--num-tasks", type=task_count("--num-tasks"), default=DEFAULT_TASKS,
                        help="held-out bandits every policy plays")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Train and evaluate the chosen settings; write results.csv, summary.md and figures; print the summary."""
    from cogmeta.io import atomic_write_text
    from cogmeta.studies.meta_rl_bandits import SETTINGS, results_csv, run_setting, summary_markdown

    out = check_out(args.out, Path("runs") / f"bandits-{args.backend}")
    settings = list(SETTINGS) if args.experiment == "all" else [args.experiment]
    results = [run_setting(setting, out, args.backend, seed=args.seed, steps=args.steps, num_tasks=args.num_tasks,
                           progress=not args.no_progress, figures=not args.no_figures) for setting in settings]
    summary = summary_markdown(results, args.backend)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.csv", results_csv(results))
    atomic_write_text(out / "summary.md", summary)
    print(summary)
    print(f"written: {out / 'results.csv'}, {out / 'summary.md'}")
    return 0


__all__ = ["CHOICES", "add_parser", "report_evaluation", "report_training", "run"]
