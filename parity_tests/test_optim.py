"""Layer 5: the optimizer alone, on identical numpy gradients (no model, no autodiff in the way).

torch: ``p.grad = g``, ``torch_impl.optim.clip_and_step`` (``clip_grad_norm_`` + ``torch.optim.Adam``);
JAX: ``jax_impl.optim.make_optimizer`` (torch-style clip, Adam) + ``apply_update`` at
``learning_rate(k)``. Parameters *and* Adam moments are compared after 1 and after 100 steps, with
clipping acting on every step (``clip_norm`` far below the gradient norm) and never acting. The
learning-rate schedule is compared separately, including steps past its end.
"""

from __future__ import annotations

import optax
import pytest

import jax_impl.optim as jax_optim
from parity_tests._cases import make_config, optim_case, schedule_case
from parity_tests._compare import assert_all

pytestmark = [pytest.mark.parity, pytest.mark.torch, pytest.mark.jax]

CLIPS = {"clipped": 0.05, "unclipped": 1e3}


@pytest.mark.parametrize("clip", sorted(CLIPS))
@pytest.mark.parametrize("steps, kind", [(1, "optim_step"), (100, "optim_steps")], ids=["1step", "100steps"])
def test_adam_with_clipping(cell, dtype, clip, steps, kind, seed, record):
    config = make_config(cell, dtype, steps=100, clip_norm=CLIPS[clip])
    groups = optim_case(config, seed, steps)
    clipped = groups["info"]["clipped fraction"]
    assert clipped == (1.0 if clip == "clipped" else 0.0), f"clipping acted on {clipped:.0%} of the steps"
    record(f"optim {steps} step{'s' if steps > 1 else ''}", cell, dtype, assert_all(groups["optim"], kind, dtype))


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_learning_rate_schedule(dtype, schedule):
    """jnp ``learning_rate`` (eager and jitted) vs ``cogmeta.schedules.learning_rate``, k = 0 .. K + 5."""
    train = make_config("gru", dtype, steps=40, schedule=schedule, learning_rate=3e-3, final_lr_fraction=0.05).train
    pairs = schedule_case(train)
    assert_all(pairs, "forward", dtype)
    _, jitted, _ = pairs[1]
    assert (jitted[40:] == jitted[40]).all(), "the schedule must stay flat past its last step"
    if schedule == "cosine":
        assert jitted[0] > jitted[20] > jitted[40] and abs(float(jitted[40]) - 1.5e-4) < 1e-9


def test_detects_optax_clip_without_eps(monkeypatch, seed):
    """optax's ``clip_by_global_norm`` divides by ||g|| instead of ||g|| + 1e-6: visible in float64."""

    def optax_clip(train):
        return optax.chain(
            optax.clip_by_global_norm(train.clip_norm),
            jax_optim.scale_by_adam_torch(train.adam_beta1, train.adam_beta2, train.adam_eps),
        )

    config = make_config("gru", "float64", steps=100, clip_norm=CLIPS["clipped"])
    assert_all(optim_case(config, seed, 1)["optim"], "optim_step", "float64")  # the library's own chain passes
    monkeypatch.setattr(jax_optim, "make_optimizer", optax_clip)
    with pytest.raises(AssertionError, match="exp_avg"):
        assert_all(optim_case(config, seed, 1)["optim"], "optim_step", "float64")


def test_detects_float32_bias_correction_of_optax_adam(monkeypatch, seed):
    """``optax.scale_by_adam`` evaluates 1 - 0.999**k in float32 (1.3e-5 relative error at k = 1; torch uses
    Python floats): one float32 step already breaks the one-step tolerance, hence ``scale_by_adam_torch``."""

    def optax_adam(train):
        return optax.chain(
            jax_optim.clip_by_global_norm_torch(train.clip_norm),
            optax.scale_by_adam(b1=train.adam_beta1, b2=train.adam_beta2, eps=train.adam_eps),
        )

    config = make_config("gru", "float32", steps=100, clip_norm=CLIPS["unclipped"])
    assert_all(optim_case(config, seed, 1)["optim"], "optim_step", "float32")
    monkeypatch.setattr(jax_optim, "make_optimizer", optax_adam)
    with pytest.raises(AssertionError, match="param"):
        assert_all(optim_case(config, seed, 1)["optim"], "optim_step", "float32")

