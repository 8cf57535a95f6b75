"""The ``cogmeta`` command.

    cogmeta train --task gaussian --backend torch [--out RUN] [model, training and task options]
    cogmeta train --resume RUN [--steps N]
    cogmeta evaluate RUN [--backend torch|jax] [--num-tasks 20000]
    cogmeta experiment learning-to-infer eu|sample-size --backend torch|jax [--participants 20 --hidden 1 --out DIR]
    cogmeta sweep --task gaussian --backend jax --seeds 16 --grid lr=1e-3,3e-3 [--strategy auto] [--out DIR]
    cogmeta experiment heuristics ranking|direction|none|all --backend torch|jax [--betas 0.03 --seeds 2 --out DIR]

Frameworks are imported only when a backend is used, so ``cogmeta --help`` works without either.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import sys
from pathlib import Path
from typing import Sequence

from cogmeta.cli_distributed import add_devices_argument, prepare_devices
from cogmeta.cli_heuristics import add_heuristics_arguments, run_heuristics
from cogmeta.cli_sweep import add_sweep_parser
from cogmeta.config import CELLS, DTYPES, SCHEDULES, JaxOptions, ModelConfig, RunConfig, TorchOptions, TrainConfig
from cogmeta.tasks import TASKS, make_task, task_fields

_EXIT_USAGE, _EXIT_FAILURE = 2, 1


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
    except (ValueError, TypeError, FileExistsError, FileNotFoundError, ImportError) as error:
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
    train.add_argument("--backend", choices=("torch", "jax"), default="torch", help="framework that trains")
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
    group.add_argument("--threads", type=int, default=TorchOptions.threads, help="torch intra-op threads (0: torch default)")
    group.add_argument("--torch-device", default=TorchOptions.device, metavar="DEVICE",
                       help="torch backend: cpu, cuda or cuda:N")
    group.add_argument("--cuda-graphs", action="store_true",
                       help="torch backend on CUDA: capture the training step in a CUDA graph and replay it")
    group.add_argument("--steps-per-call", type=int, default=JaxOptions.steps_per_call, help="JAX optimizer steps per compiled call")
    add_devices_argument(group)

    group = train.add_argument_group("task parameters (defaults: the task's own)")
    seen: set[str] = set()
    for task_name in sorted(TASKS):
        for field in dataclasses.fields(TASKS[task_name]):
            if field.name in seen:
                continue
            seen.add(field.name)
            owners = [n for n in sorted(TASKS) if field.name in task_fields(n)]
            kind = int if field.type in (int, "int") else float
            group.add_argument("--" + field.name.replace("_", "-"), type=kind, default=None,
                               help=f"{', '.join(owners)} task(s)")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="score a run against the exact Bayes-optimal predictive",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    evaluate.add_argument("run", type=Path, metavar="RUN", help="run folder written by `cogmeta train`")
    evaluate.add_argument("--backend", choices=("torch", "jax"), default=None,
                          help="framework that runs the model (default: the one that trained it)")
    evaluate.add_argument("--num-tasks", type=int, default=20_000, help="held-out tasks")
    evaluate.add_argument("--seed", type=int, default=None, help="seed of the held-out tasks (default: cogmeta's fixed one)")
    evaluate.add_argument("--no-figures", action="store_true", help="do not write the KL figure")
    evaluate.set_defaults(handler=_evaluate)

    experiment = commands.add_parser("experiment", help="reproduce a paper's experiment (tables and figures)",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    experiment.add_argument("study", choices=("learning-to-infer", "heuristics"), help="which paper")
    experiment.add_argument("name", metavar="EXPERIMENT",
                            help="learning-to-infer: eu or sample-size; heuristics: ranking, direction, none or all")
    experiment.add_argument("--backend", choices=("torch", "jax"), default="torch", help="framework that trains")
    experiment.add_argument("--participants", type=int, default=None,
                            help="simulated participants (seeds); default eu 400, sample-size 260 (20 per study)")
    experiment.add_argument("--hidden", type=int, nargs="+", default=None,
                            help="RBF units (eu: one value, default 1; sample-size: one or more, default 1 8)")
    experiment.add_argument("--seed", type=int, default=0, help="first participant seed")
    experiment.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                            help="sgd (the paper's) or adam (torch's defaults)")
    experiment.add_argument("--lr", type=float, default=None,
                            help="learning rate (default: the paper's, eu .05, sample-size .01)")
    experiment.add_argument("--draws", choices=("generative", "paper"), default="generative",
                            help="learning-to-infer: draw the balls as the generative process states, or as the paper's "
                                 "code does (the prior-p urn with the other urn's likelihood)")
    experiment.add_argument("--out", type=Path, default=None, help="folder for the CSV table and the figure")
    experiment.add_argument("--no-figures", action="store_true", help="do not write the figure")
    add_heuristics_arguments(experiment)
    experiment.set_defaults(handler=_experiment)
    add_sweep_parser(commands)
    from cogmeta.cli_seq2seq import add_parser as add_seq2seq_parser

    add_seq2seq_parser(commands)
    return parser


def _experiment(args: argparse.Namespace) -> int:
    if args.study == "heuristics":
        return run_heuristics(args)
    from cogmeta.experiments.learning_to_infer import run_experiment

    run_experiment(args.name, args.backend, args.out, participants=args.participants, hidden=args.hidden,
                   seed=args.seed, figures=not args.no_figures, optimizer=args.optimizer, learning_rate=args.lr,
                   draws=args.draws)
    return 0


def _train(args: argparse.Namespace) -> int:
    from cogmeta.training import train

    if args.resume is not None:
        return _resume(args, train)
    config = _config_from_args(args)
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
    print(f"trained {result.steps} steps in {result.seconds:.1f} s with {backend}; final loss {result.final_loss:.5f} "
          f"(Bayes floor {float(config.task.expected_nll().mean()):.5f})")
    if eval_tasks > 1:
        from cogmeta.evaluation import evaluate
        from cogmeta.weights import load_weights

        from cogmeta.runs import RunDir

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
    backend = args.backend or _trained_with(run.weights) or "torch"
    weights = load_weights(run.weights, config)
    evaluation = evaluate(config, weights, backend, num_tasks=args.num_tasks,
                          seed=HELD_OUT_SEED if args.seed is None else args.seed)
    trained = _trained_with(run.weights) or "unknown"
    print(f"{run.root}: {config.task.name} task, {config.model.cell.upper()}-{config.model.hidden_size}, "
          f"trained with {trained}, evaluated with {backend}")
    print(evaluation.table())
    atomic_write_text(run.evaluation(backend), evaluation.to_csv())
    if not args.no_figures:
        from cogmeta.figures import write_evaluation_figure

        write_evaluation_figure(run, evaluation, backend)
    return 0


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    params = {}
    for name in {f.name for cls in TASKS.values() for f in dataclasses.fields(cls)}:
        value = getattr(args, name, None)
        if value is not None:
            if name not in task_fields(args.task):
                raise ValueError(f"--{name.replace('_', '-')} is not a parameter of the {args.task!r} task; "
                                 f"its parameters are: {', '.join('--' + f.replace('_', '-') for f in task_fields(args.task))}")
            params[name] = value
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    train = TrainConfig(**{name: getattr(args, name) for name in train_fields})
    return RunConfig(
        task=make_task(args.task, **params),
        model=ModelConfig(cell=args.cell, hidden_size=args.hidden_size, num_layers=args.num_layers),
        train=train,
        # `cogmeta sweep` shares this builder and has no device flags (its torch engine is CPU-only)
        torch=TorchOptions(threads=args.threads, device=getattr(args, "torch_device", TorchOptions.device),
                           cuda_graphs=getattr(args, "cuda_graphs", False)),
        jax=JaxOptions(steps_per_call=args.steps_per_call),
    )


def _trained_with(weights_path: Path) -> str | None:
    try:
        from safetensors import safe_open

        with safe_open(str(weights_path), framework="numpy") as handle:
            return (handle.metadata() or {}).get("framework")
    except Exception:  # noqa: BLE001 - the metadata is only a default; load_weights reports real problems
        return None


def _version() -> str:
    from cogmeta import __version__

    return __version__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
