"""Layers 6-7: end-to-end training on identical numpy batches from identical weights.

One step (``make_train_step``: torch eager, JAX jitted): loss, learning rate, pre-clip
gradient norm, Adam moments and parameters. Then 1000 steps (``make_train_on_batches``: torch one
Python step each, JAX one ``lax.scan``) with lr 1e-2, a cosine schedule and
clipping that acts on about half of the steps: float64 parameters agree to a normalized 1e-10; float32
loss curves agree to 1e-5 relative (float32 parameters drift more, bounded loosely by 1e-3, as in
parity.md §4). The worst errors are recorded (``record_property``) and printed in the summary.

``test_merged_biases_*`` shows why the JAX cells keep both biases: merging them is invisible to a
forward check and obvious after a few Adam steps.
"""

from __future__ import annotations

import pytest

from parity_tests._cases import (
    long_run_seed,
    make_config,
    merged_bias_case,
    train_run_case,
    train_step_case,
)
from parity_tests._compare import assert_all

pytestmark = [pytest.mark.parity, pytest.mark.torch, pytest.mark.jax]

LONG_RUN = 1000


def test_one_train_step(cell, dtype, seed, record):
    config = make_config(cell, dtype)
    groups = train_step_case(config, seed)
    assert_all(groups["loss"], "forward", dtype)  # loss and learning rate
    assert_all(groups["grad"], "grad", dtype)  # pre-clip gradient norm and Adam moments after the step
    record("train 1 step", cell, dtype, assert_all(groups["1-step"], "train_step", dtype, lr=config.train.learning_rate))


@pytest.fixture(scope="session")
def long_runs():
    """``long_runs(cell, dtype)``: the 1000-step comparison, computed once per (cell, dtype) per session."""
    cache = {}

    def get(cell: str, dtype: str):
        if (cell, dtype) not in cache:
            cache[cell, dtype] = train_run_case(make_config(cell, dtype, steps=LONG_RUN), long_run_seed(cell, dtype), LONG_RUN)
        return cache[cell, dtype]

    return get


def test_long_run_parameters(cell, dtype, long_runs, record):
    groups = long_runs(cell, dtype)
    clipped = groups["info"]["clipped fraction"]
    assert 0.05 < clipped < 0.95, f"clipping acted on {clipped:.0%} of the steps; the run should exercise both branches"
    record(f"train {LONG_RUN} steps: params", cell, dtype, assert_all(groups["params"], "train_steps", dtype))


def test_long_run_loss_curve(cell, dtype, long_runs, record):
    groups = long_runs(cell, dtype)
    (_, losses_j, losses_t), = groups["loss curve"]
    assert losses_t.shape == (LONG_RUN,)
    assert losses_t[-100:].mean() < losses_t[:100].mean(), "the run should actually learn something"
    record(f"train {LONG_RUN} steps: loss", cell, dtype, assert_all(groups["loss curve"], "loss_curve", dtype))


def test_merged_biases_forward_equal_but_training_differs(seed):
    """Flax-style merged GRU biases (b_ir + b_hr, b_iz + b_hz): the float64 forward check passes (~4e-16),
    5 Adam steps later the summed biases are off by ~7e-2 normalized (torch moves each copy by ~lr)."""
    groups = merged_bias_case(make_config("gru", "float64"), seed, steps=5)
    assert_all(groups["forward"], "forward", "float64")
    with pytest.raises(AssertionError, match="effective param core.bias_ih_l0"):
        assert_all(groups["trained"], "train_steps", "float32")  # fails even the loose float32 bound
