"""Layer 5: the optimizer alone, on identical numpy gradients (no model, no autodiff in the way).

Both frameworks through the mirrored functions of ``torch_impl.optim`` and ``jax_impl.optim``:
``clip_by_global_norm`` then ``adam_step`` at ``learning_rate(k)`` (the torch functions equal
``clip_grad_norm_`` + ``torch.optim.Adam`` bit for bit: ``tests/test_functional_adam.py``). Parameters *and* Adam moments are compared after 1 and after 100 steps, with
clipping acting on every step (``clip_norm`` far below the gradient norm) and never acting. The
learning-rate schedule is compared separately, including steps past its end.
"""

from __future__ import annotations

import jax
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

    def optax_clip(grads, max_norm, eps=jax_optim.CLIP_EPS):
        clipped, _ = optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
        return clipped, optax.tree.norm(grads)

    config = make_config("gru", "float64", steps=100, clip_norm=CLIPS["clipped"])
    assert_all(optim_case(config, seed, 1)["optim"], "optim_step", "float64")  # the library's own clip passes
    monkeypatch.setattr(jax_optim, "clip_by_global_norm", optax_clip)
    with pytest.raises(AssertionError, match="exp_avg"):
        assert_all(optim_case(config, seed, 1)["optim"], "optim_step", "float64")


def test_detects_float32_bias_correction_of_optax_adam(monkeypatch, seed):
    """``optax.scale_by_adam`` evaluates 1 - 0.999**k in float32 (1.3e-5 relative error at k = 1; torch uses
    Python floats): one float32 step already breaks the one-step tolerance, hence ``jax_impl.optim.adam_step``'s
    -expm1(c log b)."""

    def optax_adam(params, grads, state, lr, train, apply=None):
        tx = optax.scale_by_adam(b1=train.adam_beta1, b2=train.adam_beta2, eps=train.adam_eps)
        direction, new = tx.update(grads, optax.ScaleByAdamState(state.count, state.exp_avg, state.exp_avg_sq))
        params = jax.tree.map(lambda p, d: p - lr.astype(p.dtype) * d, params, direction)
        return params, jax_optim.AdamState(new.count, new.mu, new.nu)

    config = make_config("gru", "float32", steps=100, clip_norm=CLIPS["unclipped"])
    assert_all(optim_case(config, seed, 1)["optim"], "optim_step", "float32")
    monkeypatch.setattr(jax_optim, "adam_step", optax_adam)
    with pytest.raises(AssertionError, match="param"):
        assert_all(optim_case(config, seed, 1)["optim"], "optim_step", "float32")

