"""Command-line options shared by ``cogmeta train`` and ``cogmeta sweep``: task parameters and the config builder.

Task parameters are generated from the registered task dataclasses (``cogmeta.contract.TASKS``): a new
task's fields become ``--flags`` with no change here; a flag that the chosen task lacks is an error
that lists the task's own.
"""

from __future__ import annotations

import argparse
import dataclasses

from cogmeta.config import JaxOptions, ModelConfig, RunConfig, TorchOptions, TrainConfig
from cogmeta.tasks import TASKS, make_task, task_fields


def add_task_parameters(parser: argparse.ArgumentParser) -> None:
    """One ``--field-name`` per field of any registered task (default None: the task's own default)."""
    group = parser.add_argument_group("task parameters (defaults: the task's own)")
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


def config_from_args(args: argparse.Namespace) -> RunConfig:
    params = {}
    for name in {f.name for cls in TASKS.values() for f in dataclasses.fields(cls)}:
        value = getattr(args, name, None)
        if value is not None:
            if name not in task_fields(args.task):
                raise ValueError(f"--{name.replace('_', '-')} is not a parameter of the {args.task!r} task; "
                                 f"its parameters are: {', '.join('--' + f.replace('_', '-') for f in task_fields(args.task))}")
            params[name] = value
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    train = TrainConfig(**{name: getattr(args, name) for name in train_fields if hasattr(args, name)})
    return RunConfig(
        task=make_task(args.task, **params),
        model=ModelConfig(cell=args.cell, hidden_size=args.hidden_size, num_layers=args.num_layers),
        train=train,
        # `cogmeta sweep` shares this builder and has no device flags (its torch engine is CPU-only)
        torch=TorchOptions(threads=args.threads, device=getattr(args, "torch_device", TorchOptions.device),
                           cuda_graphs=getattr(args, "cuda_graphs", False)),
        jax=JaxOptions(steps_per_call=args.steps_per_call),
    )
