"""Task specs: frozen dataclasses with a numpy reference sampler and exact Bayes-optimal predictives."""

from __future__ import annotations

import dataclasses
from typing import Any

from cogmeta.contract import TASKS, TaskSpec, build_task, task_class
from cogmeta.tasks.base import NoiseSpec, TaskBatch, model_inputs
from cogmeta.tasks.coin import CoinTask
from cogmeta.tasks.drift import DriftingMeanTask
from cogmeta.tasks.gaussian import GaussianMeanTask
from cogmeta.tasks.noise import draw_noise

# Importing a task module registers it (``cogmeta.contract.register_task``); a new task adds its import above.
Task = TaskSpec


def task_fields(name: str) -> tuple[str, ...]:
    """The parameter names of task ``name``."""
    return tuple(f.name for f in dataclasses.fields(task_class(name)))


def make_task(name: str, **params: Any) -> Task:
    """Build task ``name`` from keyword parameters, with errors for unknown names and fields."""
    return build_task(task_class(name), **params)


def task_to_dict(task: Task) -> dict[str, Any]:
    """``{"name": ..., **fields}``, the JSON form stored in a run's config."""
    return {"name": task.name, **dataclasses.asdict(task)}


def task_from_dict(data: dict[str, Any]) -> Task:
    """Inverse of :func:`task_to_dict`."""
    data = dict(data)
    if "name" not in data:
        raise ValueError("a task dictionary needs a 'name' entry, e.g. {'name': 'gaussian'}")
    return make_task(data.pop("name"), **data)


__all__ = [
    "CoinTask",
    "DriftingMeanTask",
    "GaussianMeanTask",
    "NoiseSpec",
    "TASKS",
    "Task",
    "TaskBatch",
    "draw_noise",
    "make_task",
    "model_inputs",
    "task_fields",
    "task_from_dict",
    "task_to_dict",
]
