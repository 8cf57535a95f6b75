"""``jax_impl.host_random``: JAX's threefry keys, bits and uniform draws computed in numpy, checked bit for bit against
JAX itself, and the models built from them equal to models built with ``nnx.Rngs``."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from cogmeta import ModelConfig, RunConfig, TrainConfig  # noqa: E402
from cogmeta.presets import preset  # noqa: E402
from jax_impl import host_random  # noqa: E402
from jax_impl.host_random import HostKey, HostRngs, fold_in, initial_rngs, random_bits, seed_key, symmetric_uniform  # noqa: E402
from jax_impl.weights import model_to_canonical  # noqa: E402

SEEDS = (0, 1, 12345, 2**31 - 1)


def _data(key) -> np.ndarray:
    return np.asarray(jax.random.key_data(key))


@pytest.mark.parametrize("seed", SEEDS)
def test_keys_and_fold_in_are_jaxs(seed):
    np.testing.assert_array_equal(seed_key(seed), _data(jax.random.key(seed)))
    for data in (0, 1, 5, 2**32 - 1):
        np.testing.assert_array_equal(fold_in(seed_key(seed), data),
                                      _data(jax.random.fold_in(jax.random.key(seed), np.uint32(data))))


def test_seeds_up_to_two_to_the_32_in_64_bit_mode():
    with jax.enable_x64(True):
        for seed in (2**31, 2**32 - 1):
            np.testing.assert_array_equal(seed_key(seed), _data(jax.random.key(seed)))
    with pytest.raises(ValueError, match="seed must lie in"):
        seed_key(2**32)


@pytest.mark.parametrize("width", [32, 64])
def test_bits_are_jaxs(width):
    key = jax.random.fold_in(jax.random.key(3), np.uint32(4))
    with jax.enable_x64(width == 64):
        want = np.asarray(jax.random.bits(key, (5000,), jnp.uint32 if width == 32 else jnp.uint64))
    np.testing.assert_array_equal(random_bits(_data(key), 5000, width), want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_symmetric_uniform_is_jaxs_bit_for_bit_eagerly_and_under_jit(dtype):
    """Bounds that are not powers of two are the point: XLA fuses the uniform's multiply and add into one rounding
    (a separate multiply and add in numpy differs in a few percent of the numbers), which b (2f - 1) reproduces."""
    with jax.enable_x64(dtype == "float64"):
        for index, (shape, fan_in) in enumerate([((192, 64), 64), ((1000, 7), 11), ((48,), 48), ((3, 5, 2), 3)]):
            bound = 1 / math.sqrt(fan_in)
            key = jax.random.fold_in(jax.random.key(index), np.uint32(index + 1))
            want = np.asarray(jax.random.uniform(key, shape, dtype, -bound, bound))
            traced = np.asarray(jax.jit(lambda k, shape=shape: jax.random.uniform(k, shape, dtype, -bound, bound))(key))
            got = symmetric_uniform(_data(key), shape, dtype, bound)
            assert got.dtype == np.dtype(dtype) and got.shape == shape
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(got, traced)
    with pytest.raises(ValueError, match="float32 or float64"):
        symmetric_uniform(seed_key(0), (2,), np.float16, 1.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_host_rngs_hand_out_flaxs_keys_in_flaxs_order(seed):
    flax_rngs, ours = nnx.Rngs(seed), HostRngs(seed)
    for draw in ("params", "params", "default", "dropout", "params"):  # one counter for every stream name
        theirs = getattr(flax_rngs, draw)()
        mine = getattr(ours, draw)()
        np.testing.assert_array_equal(mine.data, _data(theirs))
    np.testing.assert_array_equal(_data(HostKey(seed_key(seed)).device()), _data(jax.random.key(seed)))


def _configs():
    tutorial = RunConfig(model=ModelConfig(cell="lstm", hidden_size=9, num_layers=2))
    return [RunConfig(), tutorial, preset("rl2-bandit"), preset("rl2-bandit-k5")]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("index", range(4), ids=["gru-64", "lstm-2-layers", "rl2", "rl2-k5"])
def test_models_built_on_the_host_equal_models_built_with_nnx_rngs(index, dtype):
    from cogmeta.backends import load_module
    from jax_impl.numerics import configure, resolve_dtype

    config = _configs()[index]
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, dtype=dtype))
    module = load_module("jax", "rl2" if config.model.family == "rl2" else "backend")
    configure(dtype=dtype)
    for seed in (0, 3):
        assert isinstance(initial_rngs(seed), HostRngs)
        built = module.build_model(config, seed)
        reference = type(built)(config, resolve_dtype(dtype), rngs=nnx.Rngs(seed))
        ours, theirs = model_to_canonical(built), model_to_canonical(reference)
        assert ours.keys() == theirs.keys()
        for name in theirs:
            assert ours[name].dtype == theirs[name].dtype
            np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


def test_building_a_model_runs_no_jax_random_operation(monkeypatch):
    """What the host draw is for: no eager JAX program (each one compiled, or loaded from the cache, per process)."""
    from jax_impl.backend import build_model

    def refuse(*args, **kwargs):
        raise AssertionError("a JAX random operation ran while building the model")

    for name in ("key", "PRNGKey", "fold_in", "split", "uniform", "bits", "wrap_key_data"):
        monkeypatch.setattr(jax.random, name, refuse)
    weights = model_to_canonical(build_model(RunConfig(train=TrainConfig(seed=5))))
    assert np.abs(weights["head.weight"]).max() <= 1 / math.sqrt(64)


def test_other_prngs_fall_back_to_nnx_rngs():
    assert host_random.host_rngs_supported(0) and not host_random.host_rngs_supported(2**32)
    jax.config.update("jax_threefry_partitionable", False)
    try:
        assert not host_random.host_rngs_supported(0)
        assert isinstance(initial_rngs(0), nnx.Rngs)
    finally:
        jax.config.update("jax_threefry_partitionable", True)


def test_uniform_init_draws_a_host_key_on_the_host():
    from jax_impl.linear import uniform_init

    key = jax.random.fold_in(jax.random.key(8), np.uint32(2))
    got = uniform_init(HostKey(_data(key)), (30, 7), jnp.float32, 0.2)
    assert isinstance(got, jax.Array) and got.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(got), np.asarray(jax.random.uniform(key, (30, 7), jnp.float32, -0.2, 0.2)))


def test_a_learning_to_infer_participant_built_on_the_host_equals_flaxs():
    from jax_impl.amortized import AmortizedPosterior

    for hidden, seed in ((1, 0), (4, 17)):
        ours = model_to_canonical(AmortizedPosterior(hidden, rngs=initial_rngs(seed)))
        theirs = model_to_canonical(AmortizedPosterior(hidden, rngs=nnx.Rngs(seed)))
        for name in theirs:
            np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
