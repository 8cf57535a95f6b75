"""Layer 0: the task transforms (noise -> batch) and the model-input layout.

The three samplers draw base noise with their own RNGs, which cannot match; the deterministic
transforms are compared on identical numpy noise. Op by op (torch eager, JAX eager) they must be
bit-identical to the numpy reference. Under ``jax.jit`` XLA's CPU backend contracts ``a * b + c``
into a fused multiply-add, which rounds once instead of twice: the coin transform has no multiply-add
and stays bit-identical; each Gaussian multiply-add may differ by one rounding, at most one ulp of its
largest term (with cancellation that is many ulps of the *result*, so the bound is per operation).

The transform tests are parametrized over the task registry (``cogmeta.contract.TASKS``): a newly
registered task is covered without editing this file (``_cases.TASKS`` holds one instance of each).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jax_impl.samplers as jax_samplers
import torch_impl.samplers as torch_samplers
from cogmeta.contract import TASKS as REGISTERED_TASKS
from cogmeta.tasks import (
    CoinTask,
    DriftingMeanTask,
    GaussianMeanTask,
    draw_noise,
    model_inputs,
)
from parity_tests._cases import TASK_PARAMETERS, TASKS, x64
from parity_tests._compare import assert_bitwise, assert_bitwise_on_cpu

pytestmark = [pytest.mark.parity, pytest.mark.torch, pytest.mark.jax]

BATCH = 8


@pytest.fixture(params=sorted(REGISTERED_TASKS))
def task(request):
    return TASKS[request.param]


def test_every_registered_task_has_a_parity_case():
    assert sorted(TASKS) == sorted(REGISTERED_TASKS)
    assert all(type(TASKS[name]) is REGISTERED_TASKS[name] for name in TASKS)


def _noise(task, dtype: str, seed: int) -> dict[str, np.ndarray]:
    return draw_noise(task.noise_spec(BATCH), np.random.default_rng(seed), np.dtype(dtype))


def test_torch_transform_bit_identical(task, dtype, seed):
    noise = _noise(task, dtype, seed)
    reference = task.transform(noise)
    batch = torch_samplers.transform(task, {name: torch.from_numpy(value) for name, value in noise.items()})
    assert_bitwise(f"{task.name} observations (torch)", batch.observations.numpy(), reference.observations)
    assert_bitwise(f"{task.name} latent (torch)", batch.latent.numpy(), reference.latent)


def test_jax_eager_transform_matches_numpy(task, dtype, seed):
    """Bit for bit on CPU; elsewhere within the forward tolerance (``assert_bitwise_on_cpu`` says why)."""
    noise = _noise(task, dtype, seed)
    reference = task.transform(noise)
    with x64(dtype):
        batch = jax_samplers.transform(task, {name: jnp.asarray(value) for name, value in noise.items()})
        observations, latent = np.asarray(batch.observations), np.asarray(batch.latent)
    assert_bitwise_on_cpu(f"{task.name} observations (jax eager)", observations, reference.observations, "forward", dtype)
    assert_bitwise_on_cpu(f"{task.name} latent (jax eager)", latent, reference.latent, "forward", dtype)


def test_jax_jit_coin_matches_numpy(dtype, seed):
    """Bit for bit on CPU; elsewhere within the forward tolerance."""
    task = TASKS["coin"]
    noise = _noise(task, dtype, seed)
    reference = task.transform(noise)
    with x64(dtype):
        batch = jax.jit(lambda noise: jax_samplers.transform(task, noise))(jax.tree.map(jnp.asarray, noise))
        observations, latent = np.asarray(batch.observations), np.asarray(batch.latent)
    assert_bitwise_on_cpu("coin observations (jax jit)", observations, reference.observations, "forward", dtype)
    assert_bitwise_on_cpu("coin latent (jax jit)", latent, reference.latent, "forward", dtype)


def _assert_one_rounding(name: str, got: np.ndarray, product: np.ndarray, addend, unfused: np.ndarray) -> None:
    """``got`` = round(product + addend) vs ``unfused`` = round(round(product) + addend): <= 1 ulp of the largest term."""
    assert got.dtype == unfused.dtype and got.shape == unfused.shape, name
    largest = np.maximum(np.maximum(np.abs(product), np.abs(addend)), np.abs(unfused)).astype(unfused.dtype)
    ulps = np.abs(got.astype(np.float64) - unfused.astype(np.float64)) / np.spacing(largest).astype(np.float64)
    worst = int(np.argmax(ulps))
    assert ulps.flat[worst] <= 1.0, (
        f"{name}: {ulps.flat[worst]:.2f} ulp of the largest term at flat index {worst} "
        f"(got {got.flat[worst]!r}, unfused {unfused.flat[worst]!r})"
    )


def test_jax_jit_gaussian_within_one_rounding(dtype, seed):
    task = TASKS["gaussian"]
    noise = _noise(task, dtype, seed)
    reference = task.transform(noise)
    cast = np.dtype(dtype).type
    with x64(dtype):
        batch = jax.jit(lambda noise: jax_samplers.transform(task, noise))(jax.tree.map(jnp.asarray, noise))
        observations, latent = np.asarray(batch.observations)[..., 0], np.asarray(batch.latent)
    # mu = m0 + s0 * z_mu against the numpy reference
    _assert_one_rounding(
        "gaussian latent (jax jit)", latent, task.prior_std * noise["latent"].astype(np.float64), task.prior_mean, reference.latent
    )
    # x = mu + sigma * z_x from the jitted mu (so that the latent's rounding is not counted twice)
    unfused = latent[None, :] + cast(task.noise_std) * noise["observation"]
    product = task.noise_std * noise["observation"].astype(np.float64)
    _assert_one_rounding("gaussian observations (jax jit)", observations, product, latent[None, :], unfused)


def test_jax_jit_gaussian_default_prior_bit_identical(dtype, seed):
    """With m0 = 0, s0 = sigma = 1 there is nothing to fuse: jit is bit-identical again."""
    task = GaussianMeanTask(sequence_length=7)
    noise = _noise(task, dtype, seed)
    reference = task.transform(noise)
    with x64(dtype):
        batch = jax.jit(lambda noise: jax_samplers.transform(task, noise))(jax.tree.map(jnp.asarray, noise))
        observations = np.asarray(batch.observations)
    assert_bitwise("gaussian observations, default prior (jax jit)", observations, reference.observations)


def test_jax_jit_drift_within_one_rounding(dtype, seed):
    """Each step of the mean path and each observation is one multiply-add: at most one rounding apart."""
    task = TASKS["drift"]
    noise = _noise(task, dtype, seed)
    reference = task.transform(noise)
    cast = np.dtype(dtype).type
    with x64(dtype):
        batch = jax.jit(lambda noise: jax_samplers.transform(task, noise))(jax.tree.map(jnp.asarray, noise))
        observations, path = np.asarray(batch.observations)[..., 0], np.asarray(batch.latent)
    assert path.shape == reference.latent.shape == (task.sequence_length, BATCH)
    # mu_1 = m0 + s0 * z_mu against the numpy reference
    product = task.prior_std * noise["latent"].astype(np.float64)
    _assert_one_rounding("drift mu_1 (jax jit)", path[0], product, task.prior_mean, reference.latent[0])
    # mu_{t+1} = mu_t + d * e_t and x_t = mu_t + sigma * n_t, each from the jitted mu_t
    unfused = path[:-1] + cast(task.drift_std) * noise["drift"]
    product = task.drift_std * noise["drift"].astype(np.float64)
    _assert_one_rounding("drift mean path (jax jit)", path[1:], product, path[:-1], unfused)
    unfused = path + cast(task.noise_std) * noise["observation"]
    product = task.noise_std * noise["observation"].astype(np.float64)
    _assert_one_rounding("drift observations (jax jit)", observations, product, path, unfused)


@pytest.mark.parametrize("task_name", sorted(REGISTERED_TASKS))
def test_model_inputs_bit_identical(task_name, dtype, seed):
    task = TASKS[task_name]
    observations = task.sample(np.random.default_rng(seed), BATCH, np.dtype(dtype)).observations
    reference = model_inputs(observations)
    assert reference.shape == (task.sequence_length, BATCH, 2)
    assert_bitwise("model inputs (torch)", torch_samplers.model_inputs(torch.from_numpy(observations)).numpy(), reference)
    with x64(dtype):
        inputs = np.asarray(jax_samplers.model_inputs(jnp.asarray(observations)))
        jitted = np.asarray(jax.jit(jax_samplers.model_inputs)(jnp.asarray(observations)))
    assert_bitwise("model inputs (jax)", inputs, reference)
    assert_bitwise("model inputs (jax jit)", jitted, reference)


def test_task_parameters_are_not_defaults():
    """The fixtures must exercise every term of the transforms (a default prior hides m0 and s0)."""
    gaussian, coin, drift = TASKS["gaussian"], TASKS["coin"], TASKS["drift"]
    assert isinstance(gaussian, GaussianMeanTask) and isinstance(coin, CoinTask) and isinstance(drift, DriftingMeanTask)
    assert gaussian.prior_mean != 0 and gaussian.prior_std != 1 and gaussian.noise_std != 1
    assert coin.alpha != coin.beta
    assert drift.prior_mean != 0 and drift.prior_std != 1 and drift.noise_std != 1 and drift.drift_std not in (0, 0.3)
    for name, parameters in TASK_PARAMETERS.items():  # every override must actually change something
        defaults = REGISTERED_TASKS[name]()
        changed = [field for field, value in parameters.items() if value != getattr(defaults, field)]
        assert changed, f"TASK_PARAMETERS[{name!r}] repeats the defaults"
