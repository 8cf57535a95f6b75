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
    cogmeta verify --run RUN | --config FILE | --task gaussian [...] [--steps 20] [--layers]   PyTorch vs JAX

Frameworks are imported only when a backend is used, so ``cogmeta --help`` works without either.
"""

from __future__ import annotations

import argparse
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
from cogmeta.cli_options import (
    OneLineParser,
    add_task_parameters,
    check_out_folder,
    config_from_args,
    given_or_default,
    integer,
    real,
    resumed_config,
    task_count,
)
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
from cogmeta.tasks import TASKS
from cogmeta.weights import trained_with

_EXIT_USAGE, _EXIT_FAILURE = 2, 1
_IMPORTED = time.perf_counter()  # fallback start of the process where /proc is not available


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; errors the user can fix (bad input, files, memory) are one line and exit code 2.

    Every sub-command goes through here (``cogmeta seq2seq`` and the studies included), so this is the one
    boundary where exceptions become messages. Errors of other kinds keep their traceback (they are bugs).
    """
    parser = build_parser()
    args = parser.parse_args(argv)  # a usage error exits here with code 2 (one line: OneLineParser)
    if args.command is None:
        parser.print_help()
        return _EXIT_USAGE
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("\ncogmeta: interrupted; the last checkpoint is intact (resume with `cogmeta train --resume RUN`)", file=sys.stderr)
        return 130
    except _usage_errors() as error:
        print(f"cogmeta: error: {_one_line(error)}", file=sys.stderr)
        return _EXIT_USAGE
    except RuntimeError as error:
        print(f"cogmeta: training failed: {_one_line(error)}", file=sys.stderr)
        return _EXIT_FAILURE


def _usage_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input, an unusable file or too little memory (exit code 2), not a bug."""
    from cogmeta.runs import RunFolderLockedError  # a RuntimeError, so it must be caught before those

    errors: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, OSError, MemoryError, ImportError,
                                               RunFolderLockedError)
    try:
        from safetensors import SafetensorError  # a plain Exception: unreadable safetensors files
    except ImportError:  # pragma: no cover - safetensors is a core dependency
        return errors
    return (*errors, SafetensorError)


def _one_line(error: BaseException) -> str:
    """The error as one line: its message (newlines folded), with its kind where the message alone is unclear."""
    if isinstance(error, KeyError):
        text = f"missing entry {error.args[0]!r}" if error.args else "missing entry"
    elif isinstance(error, MemoryError):
        text = f"out of memory ({error or 'no details'}); lower --hidden-size, --batch-size, --num-tasks or --eval-tasks"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="cogmeta", description="Meta-learned models of cognition in PyTorch and JAX.")
    parser.add_argument("--version", action="version", version=f"cogmeta {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    # Every model, task and training option defaults to None ("not given"), so that an explicit value always
    # counts: on --resume it is compared with the stored config, for a new run None takes the config default.
    train = commands.add_parser("train", help="meta-train a model and write a run folder",
                                description="Meta-train a model and write a run folder. With --resume RUN every model, "
                                            "task and training option given must equal RUN's config; only --steps "
                                            "(the total) may change, and must exceed the steps already trained.")
    train.add_argument("--task", choices=sorted(TASKS), default=None,
                       help=given_or_default("environment to meta-train on", "gaussian; with --resume: the run's"))
    train.add_argument("--backend", choices=sorted(BACKENDS), default=None,
                       help=given_or_default("framework that trains", "torch; with --resume: the one that wrote the "
                                                                       "checkpoint"))
    train.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<task>-<backend>-<time>)")
    train.add_argument("--resume", type=Path, default=None, metavar="RUN", help="continue the run in RUN from its checkpoint")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--no-figures", action="store_true", help="do not write figures")
    train.add_argument("--summary-tasks", type=task_count("--summary-tasks", zero=True), default=2_000,
                       help="held-out tasks for the KL summary printed at the end (0: skip) (default: 2000)")

    defaults = TrainConfig()
    group = train.add_argument_group("model")
    group.add_argument("--cell", choices=CELLS, default=None, help=given_or_default("", ModelConfig.cell))
    group.add_argument("--hidden-size", type=integer(), default=None, help=given_or_default("", ModelConfig.hidden_size))
    group.add_argument("--num-layers", type=integer(), default=None, help=given_or_default("", ModelConfig.num_layers))
    group = train.add_argument_group("training")
    for name, kind in (("steps", integer()), ("batch_size", integer()), ("learning_rate", real()),
                       ("final_lr_fraction", real()), ("clip_norm", real()), ("adam_beta1", real()),
                       ("adam_beta2", real()), ("adam_eps", real()), ("seed", integer()), ("log_every", integer()),
                       ("checkpoint_every", integer()), ("eval_every", integer()), ("eval_tasks", integer())):
        group.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                           help=given_or_default("", getattr(defaults, name)))
    group.add_argument("--schedule", choices=SCHEDULES, default=None, help=given_or_default("", defaults.schedule))
    group.add_argument("--dtype", choices=DTYPES, default=None, help=given_or_default("", defaults.dtype))
    group.add_argument("--until-kl", type=real(), default=None, metavar="TARGET",
                       help="stop as soon as the held-out mean KL(Bayes || model) is below TARGET nats and report the "
                            "time it took (time to quality)")
    group.add_argument("--until-kl-every", type=integer(), default=None, metavar="N",
                       help=given_or_default("steps between the held-out checks of --until-kl", defaults.until_kl_every))
    group.add_argument("--threads", type=integer(), default=None,
                       help=given_or_default("torch intra-op threads (0: torch default)", TorchOptions.threads))
    group.add_argument("--torch-device", default=None, metavar="DEVICE",
                       help=given_or_default("torch backend: cpu, cuda or cuda:N", TorchOptions.device))
    group.add_argument("--cuda-graphs", action="store_true", default=None,
                       help="torch backend on CUDA: capture the training step in a CUDA graph and replay it")
    group.add_argument("--steps-per-call", type=integer(), default=None,
                       help=f"JAX optimizer steps per compiled call, at most --steps (default: {JaxOptions.steps_per_call}; "
                            f"with --until-kl, --until-kl-every so that every check ends a whole call)")
    add_devices_argument(group)

    add_task_parameters(train)
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="score a run against the exact Bayes-optimal predictive")
    evaluate.add_argument("run", type=Path, metavar="RUN", help="run folder written by `cogmeta train`")
    evaluate.add_argument("--backend", choices=sorted(BACKENDS), default=None,
                          help="framework that runs the model (default: the one that trained it)")
    evaluate.add_argument("--num-tasks", type=task_count("--num-tasks"), default=20_000,
                          help="held-out tasks (default: 20000)")
    evaluate.add_argument("--seed", type=integer(0), default=None,
                          help="seed of the held-out tasks (default: cogmeta's fixed one)")
    evaluate.add_argument("--no-figures", action="store_true", help="do not write the KL figure")
    evaluate.set_defaults(handler=_evaluate)

    experiment = commands.add_parser("experiment", help="reproduce a paper's experiment (tables and figures)",
                                     description="Reproduce a paper's experiment; each study has its own options "
                                                 "(`cogmeta experiment STUDY --help`).")
    studies = experiment.add_subparsers(dest="study", metavar="STUDY", required=True, parser_class=StudyParser)
    add_learning_to_infer_parser(studies)
    add_heuristics_parser(studies)
    from cogmeta.cli_heuristics_fitting import add_parser as add_heuristics_fitting_parser

    add_heuristics_fitting_parser(studies)
    add_sweep_parser(commands)
    from cogmeta.cli_seq2seq import add_parser as add_seq2seq_parser

    add_seq2seq_parser(commands)
    from cogmeta.cli_verify import add_parser as add_verify_parser

    add_verify_parser(commands)
    return parser


def _train(args: argparse.Namespace) -> int:
    from cogmeta.training import train

    if args.resume is not None:
        return _resume(args, train)
    steps_per_call = args.steps_per_call  # None unless given
    if args.steps_per_call is None and args.until_kl is not None:
        # every check ends a whole call (a period beyond the run's end would only make the calls longer)
        every, steps = args.until_kl_every or TrainConfig.until_kl_every, args.steps or TrainConfig.steps
        args.steps_per_call = min(every, steps)
    config = config_from_args(args)
    if steps_per_call is not None and steps_per_call > config.train.steps:
        raise ValueError(f"argument --steps-per-call {steps_per_call}: more than the run's {config.train.steps} steps "
                         f"(--steps); give at most {config.train.steps}")
    backend = args.backend or "torch"
    out = args.out or Path("runs") / f"{config.task.name}-{backend}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    check_out_folder(out)
    _require_training_fits(config, args.summary_tasks)
    args.backend = backend  # prepare_devices reads it (JAX: simulated CPU devices)
    prepare_devices(args)
    result = train(config, out, backend, progress=not args.no_progress, figures=not args.no_figures,
                   devices=args.devices)
    if result.is_writer:  # data-parallel runs: rank / process 0 reports
        _report(result, config, backend, args.summary_tasks)
    return 0


def _resume(args: argparse.Namespace, train) -> int:
    """``--resume RUN``: the stored config, where every option given must agree with it except ``--steps``."""
    from cogmeta.runs import RunDir

    run = RunDir.at(args.resume)
    if args.out is not None and Path(args.out).resolve() != run.root.resolve():
        raise ValueError(f"--out {args.out} and --resume {args.resume} exclude each other: a resumed run stays in "
                         f"its folder; leave --out out")
    if not run.config.is_file():
        raise FileNotFoundError(f"cannot resume: {run.config} does not exist")
    config = resumed_config(args, RunConfig.load(run.config), run.config)
    check_out_folder(run.root, "--resume")
    backend = args.backend or trained_with(run.checkpoint) or "torch"
    args.backend = backend  # prepare_devices reads it (JAX: simulated CPU devices)
    prepare_devices(args)
    result = train(config, run.root, backend, resume=True, progress=not args.no_progress, figures=not args.no_figures,
                   devices=args.devices)
    if result.is_writer:
        _report(result, config, backend, args.summary_tasks)
    return 0


def _require_training_fits(config: RunConfig, summary_tasks: int) -> None:
    """Refuse a model whose training (and final summary) cannot fit in this machine's memory, with the arithmetic."""
    from cogmeta.memory import evaluation_bytes, require_fits, training_bytes

    nbytes, arithmetic = training_bytes(config)
    summary, summary_arithmetic = evaluation_bytes(summary_tasks, config.task.sequence_length)
    require_fits(nbytes + summary, f"training needs at least {arithmetic}, + the summary's {summary_arithmetic}",
                 "lower --hidden-size or --batch-size (or --eval-tasks, --summary-tasks)")


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
    from cogmeta.memory import require_evaluation_fits

    require_evaluation_fits("--num-tasks", args.num_tasks, config.task.sequence_length)
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
