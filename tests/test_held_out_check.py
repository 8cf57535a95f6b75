"""``Trainer.run_checked``: the held-out check of ``train.until_kl`` between the steps (PyTorch) or inside the
compiled call (JAX) stops where checks made between plain ``run`` calls, scored in float64 numpy
(``cogmeta.evaluation.score_predictions``), stop: at the same step, with the same KLs and weights.

The reference trains with ``run`` in calls of one check period and scores the model after each; the target is then
put between the KL of one check and the lowest before it, so that check is the first below it. The checked
trainer runs calls of 20 steps against a period of 7, so that checks fall inside calls, calls start between
multiples of the period and a check falls on a call's last step.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest

from cogmeta import GaussianMeanTask, ModelConfig, RunConfig, TrainConfig
from cogmeta.backends import load_module
from cogmeta.config import JaxOptions
from cogmeta.evaluation import score_predictions
from cogmeta.held_out_check import held_out_set

EVERY, CALL, CHECKS = 7, 20, 10
CONFIG = RunConfig(task=GaussianMeanTask(), model=ModelConfig(hidden_size=8),
                   train=TrainConfig(steps=200, batch_size=16, learning_rate=1e-2, log_every=CALL, eval_tasks=50,
                                     dtype="float64", until_kl_every=EVERY),
                   jax=JaxOptions(steps_per_call=CALL))


def float64(backend: str):
    """JAX's 64-bit mode for a JAX test (no test flips JAX's global flag)."""
    if backend != "jax":
        return contextlib.nullcontext()
    import jax

    return jax.enable_x64(True)


def reference(backend: str) -> tuple[list[float], list[dict]]:
    """The exact float64 KL and the weights after every EVERY steps, trained by plain ``run`` calls."""
    trainer = load_module(backend, "backend").make_tutorial_trainer(CONFIG)
    observations = held_out_set(CONFIG)
    kls, weights = [], []
    for _ in range(CHECKS):
        trainer.run(EVERY)
        kls.append(score_predictions(CONFIG.task, observations, trainer.predictive(observations)).mean_kl)
        weights.append(trainer.weights())
    return kls, weights


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_checks_inside_training_stop_where_checks_between_calls_stop(backend):
    pytest.importorskip(backend)
    with float64(backend):
        checked(backend)


def checked(backend: str) -> None:
    kls, weights = reference(backend)
    # the last check that is lower than every one before it (at least the third): the target goes just above it
    stop = max(i for i in range(2, CHECKS) if kls[i] < min(kls[:i]))
    target = (kls[stop] + min(kls[:stop])) / 2
    config = dataclasses.replace(CONFIG, train=dataclasses.replace(CONFIG.train, until_kl=target))
    trainer = load_module(backend, "backend").make_tutorial_trainer(config)
    assert (trainer.until.every, trainer.until.target) == (EVERY, target)
    checks, steps = [], 0
    while not checks or checks[-1][1] >= target:
        metrics, made = trainer.run_checked(CALL)
        steps += len(metrics.loss)
        checks += made
        assert steps == trainer.step <= CALL * CHECKS
    assert [step for step, _ in checks] == [EVERY * (i + 1) for i in range(stop + 1)]
    assert trainer.step == EVERY * (stop + 1), "no step past the check that reached the target"
    np.testing.assert_allclose([kl for _, kl in checks], kls[:stop + 1], rtol=1e-10, atol=0)
    for name, value in trainer.weights().items():
        np.testing.assert_allclose(value, weights[stop][name], rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_trainer_without_a_check_says_how_to_get_one(backend):
    pytest.importorskip(backend)
    with float64(backend):
        trainer = load_module(backend, "backend").make_tutorial_trainer(CONFIG)
        assert trainer.until is None
        with pytest.raises(ValueError, match=r"no held-out check: build it with until=HeldOutCheck\.of\(config\)"):
            trainer.run_checked(EVERY)
