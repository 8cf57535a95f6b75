"""A finite loss with a NaN gradient must not be applied either; the driver stops with the last good state.

The driver part uses a fake backend (numpy only); the framework parts poison one gradient for real.
"""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

from cogmeta import GaussianMeanTask, JaxOptions, ModelConfig, RunConfig, TrainConfig
from cogmeta.checkpoint import Checkpoint, load_checkpoint
from cogmeta.contract import NonFiniteLossError, StepMetrics
from cogmeta.training import train
from cogmeta.weights import parameter_shapes

CONFIG = RunConfig(
    task=GaussianMeanTask(),
    model=ModelConfig(hidden_size=4),
    train=TrainConfig(steps=30, batch_size=4, log_every=5, checkpoint_every=10, eval_every=10, eval_tasks=20),
    jax=JaxOptions(steps_per_call=10),
)
BAD_STEP = 17


class _FakeTrainer:
    """Steps are counted, weights are step-valued constants; the gradient norm is NaN at BAD_STEP."""

    def __init__(self, config, checkpoint=None):
        self.config, self.step, self.chunk_size = config, 0 if checkpoint is None else checkpoint.step, 5

    def run(self, count):
        losses, norms = [], []
        for _ in range(count):
            losses.append(1.0)
            norms.append(math.nan if self.step == BAD_STEP else 1.0)
            if self.step == BAD_STEP:
                break
            self.step += 1
        return StepMetrics(np.array(losses), np.array(norms), np.full(len(losses), 1e-3))

    def weights(self):
        return {name: np.full(shape, float(self.step), np.float32) for name, shape in parameter_shapes(self.config).items()}

    def checkpoint(self):
        zeros = {name: np.zeros_like(value) for name, value in self.weights().items()}
        return Checkpoint(self.step, self.weights(), zeros, zeros, "fake")

    def predictive(self, observations):
        return self.config.task.posterior_predictive(observations)


def test_driver_stops_on_a_nan_gradient_with_a_finite_loss(tmp_path, monkeypatch):
    fake = types.ModuleType("fake_launch")
    fake.make_trainer = lambda config, checkpoint=None, devices=None: _FakeTrainer(config, checkpoint)
    monkeypatch.setattr("cogmeta.training.load_module", lambda name, module: fake)
    with pytest.raises(NonFiniteLossError, match=rf"gradient norm nan\) at step {BAD_STEP};"):
        train(CONFIG, tmp_path / "run", "fake", progress=False, figures=False)
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors", CONFIG)
    assert saved.step == BAD_STEP
    assert all(np.all(value == BAD_STEP) for value in saved.params.values())
    assert not (tmp_path / "run" / "weights.safetensors").exists()


def test_torch_skips_an_update_whose_gradient_is_nan():
    pytest.importorskip("torch")
    from torch_impl.backend import make_tutorial_trainer as Trainer

    trainer = Trainer(CONFIG)
    before = {name: value.copy() for name, value in trainer.weights().items()}
    trainer.model.head.bias.register_hook(lambda grad: grad * float("nan"))
    metrics = trainer.run(5)
    assert len(metrics.loss) == 1 and np.isfinite(metrics.loss[0]) and np.isnan(metrics.grad_norm[0])
    assert trainer.step == 0
    for name, value in trainer.weights().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    assert float(trainer.opt_state.count) == 0.0, "a skipped update must not advance Adam's count"
    assert not any(bool(m.any()) for m in (*trainer.opt_state.exp_avg.values(), *trainer.opt_state.exp_avg_sq.values()))


def test_jax_skips_an_update_whose_gradient_is_nan(monkeypatch):
    pytest.importorskip("jax")
    import jax.numpy as jnp

    from jax_impl.backend import MetaLearnerObjective
    from jax_impl.backend import make_tutorial_trainer as Trainer

    real_loss = MetaLearnerObjective.loss

    def poisoned_loss(self, params, observations, step, member):
        value, aux = real_loss(self, params, observations, step, member)
        bias = params["head"]["bias"][...]
        # where() keeps the value finite, but the untaken sqrt(-1) branch puts NaN into the gradient.
        return jnp.where(True, value, jnp.sqrt(-1.0 - jnp.sum(bias**2))), aux

    monkeypatch.setattr(MetaLearnerObjective, "loss", poisoned_loss)
    trainer = Trainer(CONFIG)
    before = trainer.weights()
    metrics = trainer.run(5)
    assert len(metrics.loss) == 1 and np.isfinite(metrics.loss[0]) and np.isnan(metrics.grad_norm[0])
    assert trainer.step == 0
    for name, value in trainer.weights().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
