"""The ``cogmeta`` command.

    cogmeta train --task gaussian --backend torch [--out RUN] [model, training and task options]
    cogmeta train --resume RUN [--steps N]
    cogmeta evaluate RUN [--backend torch|jax] [--num-tasks 20000]
    cogmeta sweep --task gaussian --backend jax --seeds 16 --grid lr=1e-3,3e-3 [--strategy auto] [--out DIR]
    cogmeta experiment STUDY EXPERIMENT [the study's options]     one subcommand per paper:
        cogmeta experiment learning-to-infer eu|sample-size --backend torch|jax [--participants 400 --hidden 1
            --optimizer sgd|adam --lr LR --draws generative|paper --seed 0 --out DIR --no-figures]
        cogmeta experiment heuristics ranking|direction|none|all --backend torch|jax [--betas 0.03 0.01 --seeds 1
            --pretrain-steps 8000 --finetune-steps 3000 --hidden-size 64 --batch-size 64 --lr 1e-3 --seed 0
            --eval-tasks 1000 --out DIR --no-figures]
    cogmeta seq2seq train|evaluate|translate|figure ...

Frameworks are imported only when a backend is used, so ``cogmeta --help`` works without either.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import sys
import time
from pathlib import Path
from typing import Sequence

from cogmeta.backends import BACKENDS
from cogmeta.cli_distributed import add_devices_argument, prepare_devices
from cogmeta.cli_experiment import StudyParser
from cogmeta.cli_heuristics import add_parser as add_heuristics_parser
from cogmeta.cli_learning_to_infer import add_parser as add_learning_to_infer_parser
from cogmeta.cli_options import add_task_parameters, config_from_args
from cogmeta.cli_sweep import add_sweep_parser
from cogmeta.config import (
    CELLS,
    DTYPES,
    SCHEDULES,
    JaxOptions,
    ModelConfig,
    RunConfig,
    TorchOptions,
    TrainConfig,
)
from cogmeta.runs import RunFolderLockedError
from cogmeta.tasks import TASKS
from cogmeta.weights import trained_with

_EXIT_USAGE, _EXIT_FAILURE = 2, 1
_IMPORTED = time.perf_counter()  # fallback start of the process where /proc is not available


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return _EXIT_USAGE
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("\ncogmeta: interrupted; the last checkpoint is intact (resume with `cogmeta train --resume RUN`)", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileExistsError, FileNotFoundError, ImportError, RunFolderLockedError) as error:
        print(f"cogmeta: error: {error}", file=sys.stderr)
        return _EXIT_USAGE
    except RuntimeError as error:
        print(f"cogmeta: training failed: {error}", file=sys.stderr)
        return _EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cogmeta", description="Meta-learned models of cognition in PyTorch and JAX.")
    parser.add_argument("--version", action="version", version=f"cogmeta {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="meta-train a model and write a run folder",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--task", choices=sorted(TASKS), default="gaussian", help="environment to meta-train on")
    train.add_argument("--backend", choices=sorted(BACKENDS), default="torch", help="framework that trains")
    train.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<task>-<backend>-<time>)")
    train.add_argument("--resume", type=Path, default=None, metavar="RUN", help="continue the run in RUN from its checkpoint")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--no-figures", action="store_true", help="do not write figures")
    train.add_argument("--summary-tasks", type=int, default=2_000, help="held-out tasks for the KL summary printed at the end (0: skip)")

    defaults = TrainConfig()
    group = train.add_argument_group("model")
    group.add_argument("--cell", choices=CELLS, default=ModelConfig.cell)
    group.add_argument("--hidden-size", type=int, default=ModelConfig.hidden_size)
    group.add_argument("--num-layers", type=int, default=ModelConfig.num_layers)
    group = train.add_argument_group("training")
    for name, kind in (("steps", int), ("batch_size", int), ("learning_rate", float), ("final_lr_fraction", float),
                       ("clip_norm", float), ("adam_beta1", float), ("adam_beta2", float), ("adam_eps", float),
                       ("seed", int), ("log_every", int), ("checkpoint_every", int), ("eval_every", int),
                       ("eval_tasks", int)):
        group.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(defaults, name))
    group.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule)
    group.add_argument("--dtype", choices=DTYPES, default=defaults.dtype)
    group.add_argument("--until-kl", type=float, default=None, metavar="TARGET",
                       help="stop as soon as the held-out mean KL(Bayes || model) is below TARGET nats and report the "
                            "time it took (time to quality)")
    group.add_argument("--until-kl-every", type=int, default=defaults.until_kl_every, metavar="N",
                       help="steps between the held-out checks of --until-kl")
    group.add_argument("--threads", type=int, default=TorchOptions.threads, help="torch intra-op threads (0: torch default)")
    group.add_argument("--torch-device", default=TorchOptions.device, metavar="DEVICE",
                       help="torch backend: cpu, cuda or cuda:N")
    group.add_argument("--cuda-graphs", action="store_true",
                       help="torch backend on CUDA: capture the training step in a CUDA graph and replay it")
    group.add_argument("--steps-per-call", type=int, default=None,
                       help=f"JAX optimizer steps per compiled call (default: {JaxOptions.steps_per_call}; "
                            f"with --until-kl, --until-kl-every so that every check ends a whole call)")
    add_devices_argument(group)

    add_task_parameters(train)
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="score a run against the exact Bayes-optimal predictive",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    evaluate.add_argument("run", type=Path, metavar="RUN", help="run folder written by `cogmeta train`")
    evaluate.add_argument("--backend", choices=sorted(BACKENDS), default=None,
                          help="framework that runs the model (default: the one that trained it)")
    evaluate.add_argument("--num-tasks", type=int, default=20_000, help="held-out tasks")
    evaluate.add_argument("--seed", type=int, default=None, help="seed of the held-out tasks (default: cogmeta's fixed one)")
    evaluate.add_argument("--no-figures", action="store_true", help="do not write the KL figure")
    evaluate.set_defaults(handler=_evaluate)

    experiment = commands.add_parser("experiment", help="reproduce a paper's experiment (tables and figures)",
                                     description="Reproduce a paper's experiment; each study has its own options "
                                                 "(`cogmeta experiment STUDY --help`).")
    studies = experiment.add_subparsers(dest="study", metavar="STUDY", required=True, parser_class=StudyParser)
    add_learning_to_infer_parser(studies)
    add_heuristics_parser(studies)
    add_sweep_parser(commands)
    from cogmeta.cli_seq2seq import add_parser as add_seq2seq_parser

    add_seq2seq_parser(commands)
    return parser


def _train(args: argparse.Namespace) -> int:
    from cogmeta.training import train

    if args.resume is not None:
        return _resume(args, train)
    if args.steps_per_call is None:
        args.steps_per_call = args.until_kl_every if args.until_kl is not None else JaxOptions.steps_per_call
    config = config_from_args(args)
    out = args.out or Path("runs") / f"{config.task.name}-{args.backend}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    prepare_devices(args)
    result = train(config, out, args.backend, progress=not args.no_progress, figures=not args.no_figures,
                   devices=args.devices)
    if result.is_writer:  # data-parallel runs: rank / process 0 reports
        _report(result, config, args.backend, args.summary_tasks)
    return 0


def _resume(args: argparse.Namespace, train) -> int:
    from cogmeta.runs import RunDir

    run = RunDir.at(args.resume)
    config = RunConfig.load(run.config)
    if args.steps != TrainConfig.steps:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=args.steps))
    backend = args.backend
    prepare_devices(args)
    result = train(config, run.root, backend, resume=True, progress=not args.no_progress, figures=not args.no_figures,
                   devices=args.devices)
    if result.is_writer:
        _report(result, config, backend, args.summary_tasks)
    return 0


def _report(result, config: RunConfig, backend: str, eval_tasks: int) -> None:
    process_seconds = _process_seconds()  # train() has just returned
    print(f"trained {result.steps} steps in {result.seconds:.1f} s with {backend}; final loss {result.final_loss:.5f} "
          f"(Bayes floor {float(config.task.expected_nll().mean()):.5f})")
    target = config.train.until_kl
    if target is not None and result.until_kl_step is not None:
        at_target = process_seconds - (result.seconds - result.until_kl_seconds)
        print(f"time to quality: held-out mean KL {result.until_kl_value:.6f} < {target:g} nats at step "
              f"{result.until_kl_step}, after {result.until_kl_seconds:.2f} s of training and {at_target:.2f} s of "
              f"wall time since the process started ({backend}; run folder written by {process_seconds:.2f} s)")
    elif target is not None:
        print(f"time to quality: the held-out mean KL never fell below {target:g} nats in {result.steps} steps "
              f"(checked every {config.train.until_kl_every}); train longer (--steps, or --resume RUN --steps N) "
              f"or change the recipe")
    if eval_tasks > 1:
        from cogmeta.evaluation import evaluate
        from cogmeta.runs import RunDir
        from cogmeta.weights import load_weights

        run = RunDir.at(result.run_dir)
        evaluation = evaluate(config, load_weights(run.weights, config), backend, num_tasks=eval_tasks)
        print(f"mean KL(Bayes || model) over t = 0..{config.task.sequence_length - 1}: {evaluation.mean_kl:.6f} nats "
              f"({eval_tasks} held-out tasks; `cogmeta evaluate {result.run_dir}` for the full table)")
    print(f"run folder: {result.run_dir}")


def _evaluate(args: argparse.Namespace) -> int:
    from cogmeta.evaluation import HELD_OUT_SEED, evaluate
    from cogmeta.io import atomic_write_text
    from cogmeta.runs import RunDir
    from cogmeta.weights import load_weights

    run = RunDir.at(args.run)
    run.require_run()
    from cogmeta.cli_seq2seq import is_seq2seq_run, report_evaluation

    if is_seq2seq_run(run.config):  # a `cogmeta seq2seq train` run: its accuracy table
        return report_evaluation(run.root, args.backend)
    config = RunConfig.load(run.config)
    backend = args.backend or trained_with(run.weights) or "torch"
    weights = load_weights(run.weights, config)
    evaluation = evaluate(config, weights, backend, num_tasks=args.num_tasks,
                          seed=HELD_OUT_SEED if args.seed is None else args.seed)
    trained = trained_with(run.weights) or "unknown"
    print(f"{run.root}: {config.task.name} task, {config.model.cell.upper()}-{config.model.hidden_size}, "
          f"trained with {trained}, evaluated with {backend}")
    print(evaluation.table())
    atomic_write_text(run.evaluation(backend), evaluation.to_csv())
    if not args.no_figures:
        from cogmeta.figures import write_evaluation_figure

        write_evaluation_figure(run, evaluation, backend)
    return 0


def _process_seconds() -> float:
    """Wall seconds since this process started (interpreter start-up and imports included)."""
    try:
        import os

        with open(f"/proc/{os.getpid()}/stat") as stat:
            started_ticks = float(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            return float(uptime.read().split()[0]) - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED


def _version() -> str:
    from cogmeta import __version__

    return __version__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
