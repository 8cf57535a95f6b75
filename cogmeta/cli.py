"""The ``cogmeta`` command.

    cogmeta train [--preset NAME | --family F | --task T] --backend torch [--out RUN] [--seeds N] [config options]
    cogmeta train --resume RUN [--steps N]
    cogmeta evaluate RUN [--backend torch|jax] [--num-tasks 20000]
    cogmeta sweep --task gaussian --backend jax --seeds 16 --grid lr=1e-3,3e-3 [--strategy auto] [--out DIR]
    cogmeta experiment STUDY EXPERIMENT [the study's options]     one subcommand per paper:
        cogmeta experiment learning-to-infer eu|sample-size --backend torch|jax [--participants 400 --hidden 1
            --optimizer sgd|adam --lr LR --draws generative|paper --seed 0 --out DIR --no-figures]
        cogmeta experiment heuristics ranking|direction|none|all --backend torch|jax [--betas 0.03 0.01 --seeds 1
            --pretrain-steps 8000 --finetune-steps 3000 --hidden-size 64 --batch-size 64 --lr 1e-3 --seed 0
            --eval-tasks 1000 --out DIR --no-figures]
        cogmeta experiment bandits two-armed|dependent|five-armed|all --backend torch|jax [--steps N --seed 0
            --num-tasks 10000 --out DIR --no-figures]
    cogmeta seq2seq translate|figure RUN ...                   tools for seq2seq-family runs
    cogmeta verify --run RUN | --config FILE | --task gaussian [...] [--steps 20] [--layers]   PyTorch vs JAX

Frameworks are imported only when a backend is used, so ``cogmeta --help`` works without either.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import sys
import time
from pathlib import Path
from typing import Sequence

from cogmeta.backends import BACKENDS
from cogmeta.cli_config import add_config_options, config_from_args, resumed_config
from cogmeta.cli_distributed import add_devices_argument, prepare_devices
from cogmeta.cli_experiment import StudyParser
from cogmeta.cli_heuristics import add_parser as add_heuristics_parser
from cogmeta.cli_learning_to_infer import add_parser as add_learning_to_infer_parser
from cogmeta.cli_options import OneLineParser, check_out_folder, given_or_default, integer, task_count
from cogmeta.cli_sweep import add_sweep_parser
from cogmeta.compilation_cache import enable_for_command as enable_compilation_cache
from cogmeta.config import RunConfig
from cogmeta.host_devices import enable_for_command as enable_host_devices
from cogmeta.weights import trained_with

_EXIT_USAGE, _EXIT_FAILURE = 2, 1
#: Most seeds of one ``cogmeta train --seeds`` (each is a full run, trained one after another).
MAX_SEEDS = 1_000
_IMPORTED = time.perf_counter()  # fallback start of the process where /proc is not available


#: What the time-to-quality breakdown says about a JAX run's first training program (``TrainResult.program_source``).
_PROGRAM_SOURCES = {
    "prefetched": "; the training program and the held-out forward pass loaded from the executable store during "
                  "start-up, beside the imports",
    "store": "; the training program loaded from the executable store",
    "stored": "; the training program compiled and kept in the executable store",
    "compiled": "; the training program compiled, or loaded from JAX's cache, ahead of the first call",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; errors the user can fix (bad input, files, memory) are one line and exit code 2.

    Every sub-command goes through here (``cogmeta seq2seq`` and the studies included), so this is the one
    boundary where exceptions become messages. Errors of other kinds keep their traceback (they are bugs).
    """
    enable_compilation_cache()  # before any backend imports JAX: JAX reads its cache settings then
    parser = build_parser()
    args = parser.parse_args(argv)  # a usage error exits here with code 2 (one line: OneLineParser)
    if args.command is None:
        parser.print_help()
        return _EXIT_USAGE
    # one JAX device per usable CPU (sweeps split their members, single runs their batch, over them), or the
    # --devices N of a data-parallel run; before any backend imports JAX
    enable_host_devices(cpus=getattr(args, "devices", None))
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

    # Every config option defaults to None ("not given"; generated from the config dataclasses by
    # ``cogmeta.cli_config``), so that an explicit value always counts: on --resume it is compared with the
    # stored config, for a new run it overrides the preset or the family's defaults.
    train = commands.add_parser("train", help="meta-train a model of any family and write a run folder",
                                description="Meta-train a model and write a run folder. Start from a preset "
                                            "(--preset, a paper's recipe) or the defaults of a model family "
                                            "(--family, or the family of --task); every option given overrides "
                                            "it. With --resume RUN every option given must equal RUN's config; "
                                            "only --steps (the total) may change, and must exceed the steps "
                                            "already trained.")
    train.add_argument("--backend", choices=sorted(BACKENDS), default=None,
                       help=given_or_default("framework that trains", "torch; with --resume: the one that wrote the "
                                                                       "checkpoint"))
    train.add_argument("--out", type=Path, default=None,
                       help="run folder (default: runs/<preset or task>-<backend>-<time>); with --seeds N the folder of "
                            "the N run folders OUT/seed-S")
    train.add_argument("--resume", type=Path, default=None, metavar="RUN", help="continue the run in RUN from its checkpoint")
    train.add_argument("--seeds", type=integer(1, MAX_SEEDS), default=1, metavar="N",
                       help="train seeds SEED .. SEED + N - 1 (SEED: --seed or the preset's), one run folder each "
                            "(OUT/seed-S), and report the final scores as mean +- sem over them (default: 1)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--no-figures", action="store_true", help="do not write figures")
    train.add_argument("--summary-tasks", type=task_count("--summary-tasks", zero=True), default=None, metavar="N",
                       help="held-out tasks (seq2seq: episodes; rl2: bandits) scored at the end (0: skip) (default: "
                            "2000; seq2seq: 200, the test set for SCAN; rl2: 10000)")
    add_config_options(train)
    add_devices_argument(train.add_argument_group("devices"))
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="score a run against its exact reference (the Bayes-optimal predictive; "
                                                     "for rl2 runs the Bayes-optimal and classic bandit policies)")
    evaluate.add_argument("run", type=Path, metavar="RUN", help="run folder written by `cogmeta train`")
    evaluate.add_argument("--backend", choices=sorted(BACKENDS), default=None,
                          help="framework that runs the model (default: the one that trained it)")
    evaluate.add_argument("--num-tasks", type=task_count("--num-tasks"), default=None,
                          help="held-out tasks (default: 20000; seq2seq: 200 ME episodes, SCAN: its test set; rl2: "
                               "10000 bandits)")
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
    from cogmeta.cli_bandits import add_parser as add_bandits_parser

    add_bandits_parser(studies)
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
    config = config_from_args(args)
    if args.steps_per_call is not None and args.steps_per_call > config.train.steps:
        raise ValueError(f"argument --steps-per-call {args.steps_per_call}: more than the run's {config.train.steps} "
                         f"steps (--steps); give at most {config.train.steps}")
    backend = args.backend or "torch"
    label = args.preset or config.task.name
    out = args.out or Path("runs") / f"{label}-{backend}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    check_out_folder(out)
    summary = _summary_tasks(args, config)
    if config.model.family == "meta_learner":
        _require_training_fits(config, summary)
    args.backend = backend  # prepare_devices reads it (JAX: simulated CPU devices)
    prepare_devices(args)
    if args.seeds > 1:
        from cogmeta.cli_seeds import train_seeds

        return train_seeds(config, out, backend, args.seeds, summary, progress=not args.no_progress,
                           figures=not args.no_figures)
    result = train(config, out, backend, progress=not args.no_progress, figures=not args.no_figures,
                   devices=args.devices)
    if result.is_writer:  # data-parallel runs: rank / process 0 reports
        _report(result, config, backend, summary)
    return 0


def _summary_tasks(args: argparse.Namespace, config: RunConfig) -> int:
    """``--summary-tasks``, or the family's default (2000 held-out tasks; seq2seq: 200 episodes; rl2: 10000
    bandits)."""
    if args.summary_tasks is not None:
        return args.summary_tasks
    return config.family.summary_tasks


def _resume(args: argparse.Namespace, train) -> int:
    """``--resume RUN``: the stored config, where every option given must agree with it except ``--steps``."""
    from cogmeta.runs import RunDir

    run = RunDir.at(args.resume)
    if args.out is not None and Path(args.out).resolve() != run.root.resolve():
        raise ValueError(f"--out {args.out} and --resume {args.resume} exclude each other: a resumed run stays in "
                         f"its folder; leave --out out")
    if args.seeds != 1:
        raise ValueError("--seeds and --resume exclude each other: resume each seed's run folder (OUT/seed-S)")
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
        _report(result, config, backend, _summary_tasks(args, config))
    return 0


def _require_training_fits(config: RunConfig, summary_tasks: int) -> None:
    """Refuse a model whose training (and final summary) cannot fit in this machine's memory, with the arithmetic."""
    from cogmeta.memory import evaluation_bytes, require_fits, training_bytes

    nbytes, arithmetic = training_bytes(config)
    summary, summary_arithmetic = evaluation_bytes(summary_tasks, config.task.sequence_length)
    require_fits(nbytes + summary, f"training needs at least {arithmetic}, + the summary's {summary_arithmetic}",
                 "lower --hidden-size or --batch-size (or --eval-tasks, --summary-tasks)")


def _report(result, config: RunConfig, backend: str, eval_tasks: int) -> None:
    if config.family.reports is not None:  # the family's own tables (seq2seq accuracies, rl2 policies)
        importlib.import_module(config.family.reports).report_training(result, config, backend, eval_tasks)
        return
    process_seconds = _process_seconds()  # train() has just returned
    print(f"trained {result.steps} steps in {result.seconds:.2f} s with {backend}; final loss {result.final_loss:.5f} "
          f"(Bayes floor {float(config.task.expected_nll().mean()):.5f})")
    target = config.train.until_kl
    if target is not None and result.until_kl_step is not None:
        at_target = process_seconds - (result.seconds - result.until_kl_seconds)
        print(f"time to quality: held-out mean KL {result.until_kl_value:.6f} < {target:g} nats at step "
              f"{result.until_kl_step}, after {result.until_kl_seconds:.2f} s of training and {at_target:.2f} s of "
              f"wall time since the process started ({backend}; run folder written by {process_seconds:.2f} s)")
        if result.until_kl_parts is not None:
            parts = result.until_kl_parts
            rest = result.until_kl_seconds - sum(parts.values())
            drawn = (" (its first program compiling on a thread from here on)"
                     if backend == "jax" and result.program_source != "prefetched" else "")
            print(f"  of the {result.until_kl_seconds:.2f} s: building the trainer {parts['trainer']:.2f} s{drawn}, "
                  f"first training call {parts['first_call']:.2f} s, later calls {parts['later_calls']:.2f} s, "
                  f"held-out checks {parts['checks']:.2f} s (the one at the start; the others ran inside the calls), "
                  f"logging and checkpoints {max(rest, 0.0):.2f} s{_PROGRAM_SOURCES.get(result.program_source, '')}")
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
    config = RunConfig.load(run.config)
    if args.num_tasks is None:
        args.num_tasks = config.family.evaluate_tasks
    if config.family.reports is not None:  # the family's own tables (seq2seq accuracies, rl2 policies)
        return importlib.import_module(config.family.reports).report_evaluation(
            run.root, args.backend, args.num_tasks, args.seed, not args.no_figures)
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
