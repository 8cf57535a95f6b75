"""The contract (``cogmeta.contract``): every registered task and both backends conform to it, and the
registry refuses what would break the pipeline."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pytest

from cogmeta.backends import BACKENDS, load_backend, load_module
from cogmeta.config import ModelConfig, RunConfig, TrainConfig
from cogmeta.contract import (
    FAMILIES,
    TASKS,
    Backend,
    TaskSpec,
    Trainer,
    register_task,
    task_class,
)
from cogmeta.tasks.bandit import BANDIT_TASKS


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_registered_task_conforms_and_samples_its_documented_shapes(name):
    task = task_class(name)()
    assert isinstance(task, TaskSpec) and task.name == name
    batch = task.sample(np.random.default_rng(0), 3)
    assert batch.observations.shape == (task.sequence_length, 3, 1)
    predictive = task.posterior_predictive(batch.observations)
    assert sorted(predictive) == sorted(FAMILIES[task.family])  # what the heads and the KL read
    for value in predictive.values():
        assert value.shape == (task.sequence_length, 3) and np.all(np.isfinite(value))


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_both_backends_conform_and_have_a_transform_for_every_task(backend):
    pytest.importorskip(BACKENDS[backend][1])
    module = load_backend(backend)
    assert isinstance(module, Backend) and module.FRAMEWORK == backend
    # every task of every family that samples through the transforms (the predictive tasks and the bandits)
    load_module(backend, "bandit")  # registers the bandit transforms
    assert sorted(load_module(backend, "samplers").TRANSFORMS) == sorted([*TASKS, *BANDIT_TASKS])
    config = RunConfig(model=ModelConfig(hidden_size=4), train=TrainConfig(steps=2, batch_size=2))
    trainer = load_module(backend, "launch").make_trainer(config)
    assert isinstance(trainer, Trainer)
    metrics = trainer.run(1)
    assert trainer.step == 1 and metrics.loss.shape == (1,) and np.isfinite(metrics.loss[0])


def test_unknown_names_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown task 'nope'; available tasks: .*gaussian"):
        task_class("nope")
    with pytest.raises(ValueError, match="unknown backend 'numpy'; choose one of jax, torch"):
        load_module("numpy", "backend")


def test_the_registry_refuses_tasks_the_pipeline_could_not_use():
    @dataclasses.dataclass(frozen=True)
    class NoName:
        family: ClassVar[str] = "gaussian"

    with pytest.raises(TypeError, match="needs a class attribute `name`"):
        register_task(NoName)

    @dataclasses.dataclass(frozen=True)
    class BadFamily:
        name: ClassVar[str] = "bad-family"
        family: ClassVar[str] = "poisson"

    with pytest.raises(TypeError, match="family must be one of gaussian, bernoulli"):
        register_task(BadFamily)

    @dataclasses.dataclass(frozen=True)
    class Impostor:
        name: ClassVar[str] = "gaussian"
        family: ClassVar[str] = "gaussian"

    with pytest.raises(ValueError, match="two tasks are registered as 'gaussian'"):
        register_task(Impostor)
    assert "bad-family" not in TASKS and TASKS["gaussian"] is not Impostor
