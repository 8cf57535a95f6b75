"""The task registry: unknown names and tasks without a backend transform fail with errors that say what to do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

import cogmeta.contract as contract
from cogmeta.contract import TaskSpec, register_task
from cogmeta.tasks import NoiseSpec, TaskBatch, make_task, task_from_dict


def test_every_registered_task_conforms_to_the_contract():
    for name, cls in contract.TASKS.items():
        task = cls()
        assert isinstance(task, TaskSpec), name
        assert task.name == name and task.family in contract.FAMILIES
        batch = task.sample(np.random.default_rng(0), 3)
        assert batch.observations.shape == (task.sequence_length, 3, 1), name
        predictive = task.posterior_predictive(batch.observations)
        assert all(np.shape(value) == (task.sequence_length, 3) for value in predictive.values()), name
        assert np.shape(task.expected_nll()) == (task.sequence_length,), name


def test_unknown_task_name_lists_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown task 'nope'; available tasks: .*coin.*drift.*gaussian"):
        make_task("nope")
    with pytest.raises(ValueError, match=r"unknown task 'nope'"):
        task_from_dict({"name": "nope"})


@pytest.fixture
def unported_task(monkeypatch):
    """A task registered in the core but given no transform by either backend (the registry is restored after)."""
    monkeypatch.setattr(contract, "TASKS", dict(contract.TASKS))

    @register_task
    @dataclass(frozen=True)
    class UnportedTask:
        name: ClassVar[str] = "unported"
        family: ClassVar[str] = "gaussian"
        sequence_length: int = 3

        def noise_spec(self, batch_size):
            return {"observation": NoiseSpec("normal", (self.sequence_length, batch_size))}

        def transform(self, noise):
            return TaskBatch(np.asarray(noise["observation"])[:, :, None], np.zeros(noise["observation"].shape[1]))

    assert make_task("unported") == UnportedTask()
    return UnportedTask()


def test_registration_rejects_a_missing_name_or_family_and_a_clash(monkeypatch):
    monkeypatch.setattr(contract, "TASKS", dict(contract.TASKS))
    with pytest.raises(TypeError, match="needs a class attribute `name`"):
        register_task(type("Nameless", (), {"family": "gaussian"}))
    with pytest.raises(TypeError, match=r"Odd\.family must be one of gaussian, bernoulli, got 'poisson'"):
        register_task(type("Odd", (), {"name": "odd", "family": "poisson"}))
    with pytest.raises(ValueError, match="two tasks are registered as 'drift'"):
        register_task(type("Impostor", (), {"name": "drift", "family": "gaussian"}))


def test_torch_says_which_transform_is_missing(unported_task):
    torch = pytest.importorskip("torch")
    import torch_impl.samplers as samplers

    with pytest.raises(ValueError, match=r"task 'unported' has no torch transform; write one in torch_impl/samplers\.py "
                                         r"with @register_transform\('unported'\)"):
        samplers.sample_batch(unported_task, torch.Generator().manual_seed(0), 2)


def test_jax_says_which_transform_is_missing(unported_task):
    jax = pytest.importorskip("jax")
    import jax_impl.samplers as samplers

    with pytest.raises(ValueError, match=r"task 'unported' has no jax transform; write one in jax_impl/samplers\.py "
                                         r"with @register_transform\('unported'\)"):
        samplers.sample_batch(unported_task, jax.random.key(0), 2)


def test_draws_in_loops_names_exactly_the_tasks_whose_jax_draw_rejects():
    """``jax_impl.samplers.draws_in_loops`` (which the data-parallel trainer reads to keep such a draw whole on every
    device) against the traced draw itself: True exactly where the jaxpr holds the gamma rejection sampler."""
    jax = pytest.importorskip("jax")
    import jax_impl.bandit  # noqa: F401  (registers the bandit transforms)
    from cogmeta.tasks.bandit import BernoulliBanditTask, DependentBanditTask
    from jax_impl.samplers import draws_in_loops, sample_batch

    tasks = [cls() for cls in contract.TASKS.values()] + [BernoulliBanditTask(), DependentBanditTask()]
    found = {}
    for task in tasks:
        jaxpr = str(jax.make_jaxpr(lambda key, task=task: sample_batch(task, key, 4))(jax.random.key(0)))
        assert draws_in_loops(task, 4) == ("random_gamma" in jaxpr), task.name
        found[task.name] = draws_in_loops(task, 4)
    assert found["bandit"] and found["coin"] and not found["gaussian"] and not found["dependent_bandit"]
