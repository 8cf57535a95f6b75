"""Two-urn query samplers in JAX: base noise from a PRNG key, then the spec's transform (jit- and vmap-safe).

:func:`transform` repeats ``cogmeta.tasks.urn.UrnQueryDistribution.transform`` operation for operation.
Op by op the queries are bit-identical to numpy's for identical noise; under ``jax.jit`` the log-odds
``logit(p) + n logit(l)`` may be fused into one multiply-add (one rounding fewer; the inputs, which
have no inexact multiply-add, stay bit-identical).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from cogmeta.tasks.urn import UrnQueries, UrnQueryDistribution
from jax_impl.samplers import draw_noise


def transform(spec: UrnQueryDistribution, noise: Mapping[str, jax.Array]) -> UrnQueries:
    """Noise -> queries: inputs ``[B, 6]``, log_odds, prior, likelihood, heads, draws ``[B]``."""
    u_prior, u_lik, u_size = noise["prior"], noise["likelihood"], noise["size"]
    u_hyp, u_draws = noise["hypothesis"], noise["draws"]
    dtype = u_prior.dtype
    tables = {name: jnp.asarray(value) for name, value in spec.tables(np.dtype(dtype)).items()}

    def pick(u, size):
        return jnp.minimum(jnp.floor(u * size).astype(jnp.int32), size - 1)

    i_prior, i_lik, i_size = pick(u_prior, len(spec.priors)), pick(u_lik, len(spec.likelihoods)), pick(u_size, len(spec.sizes))
    prior, likelihood, size = tables["prior"][i_prior], tables["likelihood"][i_lik], tables["size"][i_size]
    is_b = u_hyp < prior
    theta = jnp.where(is_b != spec.swapped_draws, likelihood, 1 - likelihood)
    position = jnp.arange(spec.max_draws, dtype=dtype)[:, None]
    hits = (u_draws < theta[None, :]) & (position < size[None, :])
    heads = jnp.sum(hits.astype(dtype), axis=0)
    n = 2 * heads - size
    log_odds = tables["prior_log_odds"][i_prior] + n * tables["likelihood_log_odds"][i_lik]
    if spec.summary_only:
        draw, strength = -jnp.ones_like(heads), n / size
    else:  # a single draw is shown as itself, with no summary (strength 0)
        shown = size == 1
        draw = jnp.where(shown, heads, -jnp.ones_like(heads))
        strength = jnp.where(shown, jnp.zeros_like(n), n / size)
    weight = tables["weight"][i_size]
    inputs = jnp.stack([draw, 1 - likelihood, likelihood, prior, strength, weight], axis=-1)
    return UrnQueries(inputs, log_odds, prior, likelihood, heads, size)


def sample_queries(spec: UrnQueryDistribution, key: jax.Array, batch_size: int, dtype=jnp.float32) -> UrnQueries:
    """Draw B queries natively: base noise from ``key``, then :func:`transform`."""
    return transform(spec, draw_noise(spec.noise_spec(batch_size), key, dtype))


def seed_key(seed: int | jax.Array) -> jax.Array:
    """The key of simulated participant ``seed``: ``key(seed)``."""
    return jax.random.key(seed)
