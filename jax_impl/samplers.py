"""Task samplers in JAX: base noise from a PRNG key, then the spec's transform (jit- and vmap-safe).

The transforms repeat ``cogmeta.tasks.*.transform`` operation for operation. Run op by op they give
bit-identical batches for identical noise; under ``jax.jit`` XLA's CPU backend contracts ``a * b + c``
into a fused multiply-add, which skips one rounding per multiply-add of the Gaussian transform (at most 1 ulp of the largest term; see
docs/framework-differences.md#fused-multiply-add and ``parity_tests/test_samplers.py``).
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp

from cogmeta.tasks import (
    CoinTask,
    DriftingMeanTask,
    GaussianMeanTask,
    NoiseSpec,
    Task,
    TaskBatch,
)


def draw_noise(spec: Mapping[str, NoiseSpec], key: jax.Array, dtype=jnp.float32) -> dict[str, jax.Array]:
    """Draw every base-noise array of ``spec`` from ``key`` (one sub-key per array)."""
    keys = jax.random.split(key, len(spec))
    noise = {}
    for sub, (name, item) in zip(keys, spec.items()):
        if item.kind == "normal":
            noise[name] = jax.random.normal(sub, item.shape, dtype)
        elif item.kind == "uniform":
            noise[name] = jax.random.uniform(sub, item.shape, dtype)
        elif item.kind == "gamma":
            noise[name] = jax.random.gamma(sub, item.concentration, item.shape, dtype)
        else:
            raise ValueError(f"unknown noise kind {item.kind!r} for {name!r}")
    return noise


#: Noise kinds that JAX draws with a data-dependent loop: ``jax.random.gamma`` is Marsaglia and Tsang's rejection
#: sampler, a ``while`` loop that runs until every element of the array has accepted.
LOOPED_KINDS = frozenset({"gamma"})


def draws_in_loops(task: Task, batch_size: int = 1) -> bool:
    """Whether drawing a batch of ``task`` runs a data-dependent loop (a noise kind in :data:`LOOPED_KINDS`).

    Such a draw should not be partitioned over devices: each iteration's "all accepted?" test would become a
    collective (``jax_impl.distributed``)."""
    return any(item.kind in LOOPED_KINDS for item in task.noise_spec(batch_size).values())


#: task name -> its jax transform; every task registered in ``cogmeta.contract.TASKS`` needs one.
TRANSFORMS: dict[str, Callable] = {}


def register_transform(name: str) -> Callable[[Callable], Callable]:
    """Decorator: the jax noise -> batch transform of the registered task ``name``."""

    def add(function: Callable) -> Callable:
        TRANSFORMS[name] = function
        return function

    return add


@register_transform("gaussian")
def gaussian_transform(task: GaussianMeanTask, noise: Mapping[str, jax.Array]) -> TaskBatch:
    """mu = m0 + s0 * z_mu;  x = mu + sigma * z_x  (observations ``[T, B, 1]``, latent ``[B]``)."""
    z_latent, z_observation = noise["latent"], noise["observation"]
    dtype = z_latent.dtype
    latent = jnp.asarray(task.prior_mean, dtype) + jnp.asarray(task.prior_std, dtype) * z_latent
    observations = latent[None, :] + jnp.asarray(task.noise_std, dtype) * z_observation
    return TaskBatch(observations[:, :, None], latent)


@register_transform("coin")
def coin_transform(task: CoinTask, noise: Mapping[str, jax.Array]) -> TaskBatch:
    """theta = g_a / (g_a + g_b);  x = 1[u < theta]  (observations ``[T, B, 1]``, latent ``[B]``)."""
    gamma_a, gamma_b, uniform = noise["gamma_a"], noise["gamma_b"], noise["uniform"]
    latent = gamma_a / (gamma_a + gamma_b)
    observations = (uniform < latent[None, :]).astype(uniform.dtype)
    return TaskBatch(observations[:, :, None], latent)


@register_transform("drift")
def drift_transform(task: DriftingMeanTask, noise: Mapping[str, jax.Array]) -> TaskBatch:
    """mu_1 = m0 + s0 * z;  mu_{t+1} = mu_t + d * e_t;  x_t = mu_t + sigma * n_t  (observations ``[T, B, 1]``, latent ``[T, B]``)."""
    z_latent, z_drift, z_observation = noise["latent"], noise["drift"], noise["observation"]
    dtype = z_latent.dtype
    mean = jnp.asarray(task.prior_mean, dtype) + jnp.asarray(task.prior_std, dtype) * z_latent
    path = [mean]
    for t in range(z_drift.shape[0]):  # unrolled under jit; jnp.cumsum sums in a different order than numpy's
        mean = mean + jnp.asarray(task.drift_std, dtype) * z_drift[t]
        path.append(mean)
    latent = jnp.stack(path)
    observations = latent + jnp.asarray(task.noise_std, dtype) * z_observation
    return TaskBatch(observations[:, :, None], latent)


def transform(task: Task, noise: Mapping[str, jax.Array]) -> TaskBatch:
    """The task's deterministic noise -> batch map."""
    if task.name not in TRANSFORMS:
        raise ValueError(f"task {task.name!r} has no jax transform; write one in jax_impl/samplers.py "
                         f"with @register_transform({task.name!r}) (docs/extending.md)")
    return TRANSFORMS[task.name](task, noise)


def sample_batch(task: Task, key: jax.Array, batch_size: int, dtype=jnp.float32) -> TaskBatch:
    """Draw B tasks natively: base noise from ``key``, then :func:`transform`."""
    return transform(task, draw_noise(task.noise_spec(batch_size), key, dtype))


def step_key(seed: int | jax.Array, step: int | jax.Array) -> jax.Array:
    """The key of training step ``step``: ``fold_in(key(seed), step)``.

    The batch of step k depends only on (seed, k), so a resumed run sees the same batches as an
    uninterrupted one.
    """
    return jax.random.fold_in(jax.random.key(seed), step)


def model_inputs(observations: jax.Array) -> jax.Array:
    """``[T, B, 1]`` observations -> ``[T, B, 2]`` inputs: [1, 0] at t = 0, [0, x_t] after."""
    if observations.ndim != 3 or observations.shape[-1] != 1:
        raise ValueError(f"observations must have shape [T, B, 1], got {tuple(observations.shape)}")
    start = jnp.zeros((1, observations.shape[1], 2), observations.dtype).at[..., 0].set(1)
    previous = jnp.concatenate([jnp.zeros_like(observations[:-1]), observations[:-1]], axis=-1)
    return jnp.concatenate([start, previous], axis=0)
