"""Checkpoint interchange: a training state written by one backend resumes in the other.

Two trainers cannot be compared step by step (each samples its batches with its own RNG), so the test
is on the state itself: a torch ``Trainer`` runs 20 steps, its checkpoint goes through a safetensors
file into ``jax_impl.backend.make_tutorial_trainer(config, checkpoint)``, whose own ``checkpoint()`` must reproduce
step, parameters and both Adam moments bit for bit (and back into a torch ``Trainer``). Then both
continue from that state on identical numpy batches: equal results need the restored step count too
(Adam's bias correction and the schedule depend on it).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import jax_impl.backend as jax_backend
import torch_impl.backend as torch_backend
from cogmeta.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from parity_tests._cases import jax_train_steps, make_config, sample_observations, x64
from parity_tests._compare import assert_all, assert_bitwise, assert_same_keys

pytestmark = [pytest.mark.parity, pytest.mark.torch, pytest.mark.jax]

TRAINED, CONTINUED = 20, 5


def _assert_same_checkpoint(what: str, got: Checkpoint, expected: Checkpoint) -> None:
    assert got.step == expected.step, f"{what}: step {got.step} != {expected.step}"
    for group in ("params", "exp_avg", "exp_avg_sq"):
        got_group, expected_group = getattr(got, group), getattr(expected, group)
        assert_same_keys(got_group, expected_group, f"{what}: {group}")  # dict order is not part of the format
        for name in expected_group:
            assert_bitwise(f"{what}: {group}.{name}", got_group[name], expected_group[name])


def test_torch_checkpoint_resumes_in_jax(cell, dtype, seed, tmp_path):
    config = make_config(cell, dtype)
    torch_trainer = torch_backend.make_tutorial_trainer(config)
    metrics = torch_trainer.run(TRAINED)
    assert np.isfinite(metrics.loss).all() and torch_trainer.step == TRAINED
    written = torch_trainer.checkpoint()
    assert written.framework == "torch" and any(np.any(v != 0) for v in written.exp_avg.values())
    save_checkpoint(tmp_path / "torch.safetensors", written, config)
    loaded = load_checkpoint(tmp_path / "torch.safetensors", config)
    _assert_same_checkpoint("torch checkpoint after the file", loaded, written)

    with x64(dtype):
        jax_trainer = jax_backend.make_tutorial_trainer(config, loaded)
        resumed = jax_trainer.checkpoint()
    _assert_same_checkpoint("jax Trainer(config, torch checkpoint).checkpoint()", resumed, loaded)
    assert resumed.framework == "jax"

    save_checkpoint(tmp_path / "jax.safetensors", resumed, config)
    back = torch_backend.make_tutorial_trainer(config, load_checkpoint(tmp_path / "jax.safetensors", config))
    _assert_same_checkpoint("torch -> jax -> torch", back.checkpoint(), loaded)

    # Continue both from step 20 on identical numpy batches.
    batches = sample_observations(config, np.random.default_rng(seed), count=CONTINUED)
    losses_t = torch_trainer.run_on([torch.from_numpy(b) for b in batches]).loss
    with x64(dtype):
        params, opt_state, losses_j = jax_train_steps(
            config, jax_trainer.objective.graphdef, jax_trainer.params, jax_trainer.opt_state, batches, TRAINED
        )
        jax_trainer.params, jax_trainer.opt_state, jax_trainer.step = params, opt_state, TRAINED + CONTINUED
        continued = jax_trainer.checkpoint()
    expected = torch_trainer.checkpoint()
    assert continued.step == expected.step == TRAINED + CONTINUED
    assert_all([("loss after resuming", losses_j.astype(losses_t.dtype), losses_t)], "loss_curve", dtype)
    pairs = [
        (f"{group}.{name}", getattr(continued, group)[name], getattr(expected, group)[name])
        for group in ("params", "exp_avg", "exp_avg_sq")
        for name in expected.params
    ]
    assert_all(pairs, "train_steps", dtype)


def test_fresh_torch_checkpoint_resumes_in_jax(tmp_path):
    """Step 0: torch has no Adam state yet; the neutral checkpoint holds zeros and optax's count is 0."""
    config = make_config("gru", "float32")
    written = torch_backend.make_tutorial_trainer(config).checkpoint()
    assert written.step == 0 and all(np.all(v == 0) for v in written.exp_avg_sq.values())
    save_checkpoint(tmp_path / "fresh.safetensors", written, config)
    with x64("float32"):
        resumed = jax_backend.make_tutorial_trainer(config, load_checkpoint(tmp_path / "fresh.safetensors", config)).checkpoint()
    _assert_same_checkpoint("fresh torch checkpoint in jax", resumed, written)
