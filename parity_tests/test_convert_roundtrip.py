"""Layer 1: weight conversion. Canonical dict <-> torch <-> JAX is a copy: bit-exact, same names,
shapes and dtypes, both directions, through memory and through a safetensors file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flax import nnx

import jax_impl.weights as jax_weights
import torch_impl.weights as torch_weights
from cogmeta.tasks import model_inputs
from cogmeta.weights import (
    load_weights,
    parameter_shapes,
    save_weights,
    validate_weights,
)
from jax_impl.model import MetaLearner as JaxMetaLearner
from parity_tests._cases import (
    jax_dtype,
    jax_forward,
    jax_model,
    make_config,
    sample_observations,
    torch_model,
    x64,
)
from parity_tests._compare import assert_bitwise, assert_parity

pytestmark = [pytest.mark.parity, pytest.mark.torch, pytest.mark.jax]


@pytest.fixture(params=[1, 2], ids=["1layer", "2layers"])
def num_layers(request) -> int:
    return request.param


def _assert_same_weights(what: str, got: dict, expected: dict) -> None:
    assert list(got) == list(expected), f"{what}: names/order {list(got)} != {list(expected)}"
    for name in expected:
        assert_bitwise(f"{what}: {name}", got[name], expected[name])


def test_torch_to_jax_to_torch_bit_exact(cell, dtype, num_layers, seed):
    config = make_config(cell, dtype, num_layers=num_layers)
    original = torch_weights.model_to_canonical(torch_model(config, seed))
    assert list(original) == list(parameter_shapes(config)), "torch state_dict is not the canonical layout"
    validate_weights(original, config, dtype)
    with x64(dtype):
        jmodel = jax_model(config, original)
        via_jax = jax_weights.model_to_canonical(jmodel)
    _assert_same_weights("torch -> jax", {name: via_jax[name] for name in original}, original)
    assert set(via_jax) == set(original)
    back = torch_model(config, seed + 1)  # different init, overwritten
    torch_weights.load_canonical(back, via_jax)
    _assert_same_weights("torch -> jax -> torch", torch_weights.model_to_canonical(back), original)


def test_jax_to_torch_to_jax_bit_exact(cell, dtype, num_layers, seed):
    config = make_config(cell, dtype, num_layers=num_layers)
    with x64(dtype):
        jmodel = JaxMetaLearner(config, jax_dtype(dtype), rngs=nnx.Rngs(seed))
        original = jax_weights.model_to_canonical(jmodel)
    assert set(original) == set(parameter_shapes(config))
    validate_weights(original, config, dtype)
    tmodel = torch_model(config, seed)
    torch_weights.load_canonical(tmodel, original)
    via_torch = torch_weights.model_to_canonical(tmodel)
    with x64(dtype):
        back = jax_weights.model_to_canonical(jax_model(config, via_torch))
        # the functional path used by training and checkpoints: state <-> canonical
        _, params = nnx.split(jmodel)
        state = jax_weights.canonical_to_state(params, via_torch)
        functional = jax_weights.state_to_canonical(state)
    for name in original:
        assert_bitwise(f"jax -> torch -> jax: {name}", back[name], original[name])
        assert_bitwise(f"jax -> torch -> state: {name}", functional[name], original[name])


def test_safetensors_cross_load_equal_outputs(cell, dtype, num_layers, seed, tmp_path):
    # the configs of test_models_forward.py, so that the compiled JAX programs are shared
    config = make_config(cell, dtype, "gaussian" if num_layers == 1 else "coin", num_layers)
    tmodel = torch_model(config, seed)
    save_weights(tmp_path / "torch.safetensors", torch_weights.model_to_canonical(tmodel), config, "torch")
    loaded = load_weights(tmp_path / "torch.safetensors", config)
    validate_weights(loaded, config, dtype)
    observations = sample_observations(config, np.random.default_rng(seed))
    inputs = model_inputs(observations)
    with torch.no_grad():
        raw_t = tmodel(torch.from_numpy(inputs)).numpy()
    with x64(dtype):
        raw_j = jax_forward(config, loaded, observations)["raw"]
        save_weights(tmp_path / "jax.safetensors", jax_weights.model_to_canonical(jax_model(config, loaded)), config, "jax")
    assert_parity("raw outputs after torch -> safetensors -> jax", raw_j, raw_t, "forward", dtype)
    back = torch_model(config, seed + 1)
    torch_weights.load_canonical(back, load_weights(tmp_path / "jax.safetensors", config))
    _assert_same_weights("torch -> file -> jax -> file -> torch", torch_weights.model_to_canonical(back), torch_weights.model_to_canonical(tmodel))
    with torch.no_grad():
        assert_bitwise("raw outputs after the round trip (torch)", back(torch.from_numpy(inputs)).numpy(), raw_t)


@pytest.mark.parametrize("problem", ["missing", "unexpected", "shape"])
def test_both_loaders_reject_mismatched_weights(problem, seed):
    config = make_config("gru", "float32")
    weights = torch_weights.model_to_canonical(torch_model(config, seed))
    if problem == "missing":
        del weights["core.bias_hh_l0"]
    elif problem == "unexpected":
        weights["core.bias_hh_l1"] = weights["core.bias_hh_l0"]
    else:
        weights["core.weight_hh_l0"] = weights["core.weight_hh_l0"][:, :-1]
    with pytest.raises(ValueError, match=r"bias_hh_l|weight_hh_l0"):
        torch_weights.load_canonical(torch_model(config, seed), weights)
    with x64("float32"):
        with pytest.raises(ValueError, match=r"bias_hh_l|weight_hh_l0"):
            jax_model(config, weights)
