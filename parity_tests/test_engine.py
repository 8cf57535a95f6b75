"""The sweep engines in float64: a member trained inside a vmapped program equals its single run.

JAX: ``jax_impl.engine`` (vmap over members, several compiled chunks) against ``jax_impl.trainer.Trainer``,
bitwise. PyTorch: ``torch_impl.engine``'s ``torch.func`` path (stacked parameters, its own clipping and
Adam) against ``torch_impl.trainer.Trainer`` (``nn.GRU`` + ``torch.optim.Adam``) to 1e-12. The
cross-framework link is layer 7 of this suite (``test_train_steps.py``: the two trainers agree on
identical batches); here the JAX member's float64 weights also give torch the same predictive.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cogmeta.config import JaxOptions, ModelConfig, RunConfig, TrainConfig
from parity_tests._cases import x64
from parity_tests._compare import assert_bitwise_on_cpu

pytestmark = [pytest.mark.parity, pytest.mark.torch, pytest.mark.jax]

CONFIG = RunConfig(model=ModelConfig(cell="lstm", hidden_size=8),
                   train=TrainConfig(steps=10, batch_size=4, dtype="float64", learning_rate=1e-2, clip_norm=0.5,
                                     final_lr_fraction=0.1),
                   jax=JaxOptions(steps_per_call=4))
SEEDS, RATES = [2, 7], [1e-2, 2e-2]


def test_jax_engine_member_equals_trainer_float64():
    from jax_impl.backend import make_tutorial_trainer as Trainer
    from jax_impl.engine import Engine
    from torch_impl.backend import predict as torch_predict

    with x64("float64"):
        runs = Engine(CONFIG, "vmap").train(SEEDS, RATES, progress=False)
        member = dataclasses.replace(CONFIG, train=dataclasses.replace(CONFIG.train, seed=SEEDS[1], learning_rate=RATES[1]))
        trainer = Trainer(member)
        while trainer.step < member.train.steps:
            trainer.run(min(trainer.chunk_size, member.train.steps - trainer.step))
        expected = trainer.weights()
        observations = np.random.default_rng(1).normal(size=(7, 5, 1))
        jax_predictive = trainer.predictive(observations)
    assert runs[1].steps == member.train.steps
    for name, value in expected.items():
        assert runs[1].weights[name].dtype == np.float64
        # bit for bit on CPU; a GPU sums the vmapped members in another order (5.6e-17 on an H200)
        assert_bitwise_on_cpu(f"member {name}", runs[1].weights[name], value, "train_steps", "float64")
    torch_predictive = torch_predict(member, runs[1].weights, observations)
    for key, value in jax_predictive.items():
        np.testing.assert_allclose(torch_predictive[key], value, rtol=1e-12, atol=1e-13)


def test_torch_func_engine_member_equals_trainer_float64():
    from torch_impl.backend import make_tutorial_trainer as Trainer
    from torch_impl.engine import train_members

    runs = train_members(CONFIG, SEEDS, RATES, strategy="vmap", progress=False)
    member = dataclasses.replace(CONFIG, train=dataclasses.replace(CONFIG.train, seed=SEEDS[1], learning_rate=RATES[1]))
    trainer = Trainer(member)
    metrics = trainer.run(member.train.steps)
    np.testing.assert_allclose(runs[1].metrics.grad_norm, metrics.grad_norm, rtol=1e-12)
    for name, value in trainer.weights().items():
        np.testing.assert_allclose(runs[1].weights[name], value, rtol=1e-11, atol=1e-13, err_msg=name)
