"""Layer 3: the heads alone, then the full model: raw outputs, elementwise NLL, the mean loss, and the
user-facing ``backend.predict`` of each framework. Both predictive families (Gaussian task, coin task)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jax_impl.backend as jax_backend
import jax_impl.heads as jax_heads
import torch_impl.backend as torch_backend
import torch_impl.heads as torch_heads
import torch_impl.weights as torch_weights
from cogmeta.predictive import OUTPUT_SIZE
from parity_tests._cases import (
    TASKS,
    forward_case,
    make_config,
    sample_observations,
    torch_model,
    x64,
)
from parity_tests._compare import assert_all, assert_parity

pytestmark = [pytest.mark.parity, pytest.mark.torch, pytest.mark.jax]


@pytest.fixture(params=sorted(TASKS))
def task_name(request) -> str:
    return request.param


def test_heads_alone(task_name, dtype, seed):
    """Same raw outputs (wide range, incl. large |logit| and small std) -> same NLL and predictive params."""
    task = TASKS[task_name]
    rng = np.random.default_rng(seed)
    shape = (task.sequence_length, 8, OUTPUT_SIZE[task.family])
    raw = (3.0 * rng.standard_normal(shape)).astype(dtype)
    targets = task.sample(rng, 8, np.dtype(dtype)).observations
    nll_t = torch_heads.nll(task.family, torch.from_numpy(raw), torch.from_numpy(targets)).numpy()
    params_t = torch_heads.predictive_params(task.family, torch.from_numpy(raw))
    with x64(dtype):
        nll = jax.jit(jax_heads.nll, static_argnums=0)
        nll_j = np.asarray(nll(task.family, jnp.asarray(raw), jnp.asarray(targets)))
        params_j = jax_heads.predictive_params(task.family, jnp.asarray(raw))
    assert_parity(f"{task.family} nll", nll_j, nll_t, "forward", dtype)
    assert set(params_j) == set(params_t)
    for name in params_t:
        assert_parity(f"{task.family} predictive {name}", params_j[name], params_t[name], "forward", dtype)


#: Every registered task (``_cases.TASKS`` is built from the registry), at one or two layers.
FORWARD_CASES = [(name, 2 if name == "coin" else 1) for name in sorted(TASKS)]


@pytest.mark.parametrize("task_name, num_layers", FORWARD_CASES,
                         ids=[f"{name}-{layers}layer{'s' if layers > 1 else ''}" for name, layers in FORWARD_CASES])
def test_model_forward_and_loss(cell, dtype, task_name, num_layers, seed, record):
    groups = forward_case(make_config(cell, dtype, task_name, num_layers), seed)
    record("model", cell, dtype, assert_all(groups["model"], "forward", dtype))
    record("loss", cell, dtype, assert_all(groups["loss"], "forward", dtype))


def test_backend_predict(cell, dtype, seed):
    """``torch_impl.backend.predict`` vs ``jax_impl.backend.predict`` (jitted forward) on canonical weights.

    Gaussian task only (the coin head is covered above): fewer compilations.
    """
    config = make_config(cell, dtype, "gaussian")
    weights = torch_weights.model_to_canonical(torch_model(config, seed))
    observations = sample_observations(config, np.random.default_rng(seed))
    expected = torch_backend.predict(config, weights, observations)
    with x64(dtype):
        got = jax_backend.predict(config, weights, observations)
    assert set(got) == set(expected)
    assert_all([(f"predict {name}", got[name], expected[name]) for name in expected], "forward", dtype)
