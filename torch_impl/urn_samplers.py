"""Two-urn query samplers in PyTorch: base noise from a ``torch.Generator``, then the spec's transform.

:func:`transform` repeats ``cogmeta.tasks.urn.UrnQueryDistribution.transform`` operation for operation,
so identical noise gives bit-identical queries (``parity_tests/test_amortized.py``).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from cogmeta.tasks.urn import UrnQueries, UrnQueryDistribution
from torch_impl.samplers import draw_noise


def transform(spec: UrnQueryDistribution, noise: Mapping[str, torch.Tensor]) -> UrnQueries:
    """Noise -> queries: inputs ``[B, 6]``, log_odds, prior, likelihood, heads, draws ``[B]``."""
    u_prior, u_lik, u_size = noise["prior"], noise["likelihood"], noise["size"]
    u_hyp, u_draws = noise["hypothesis"], noise["draws"]
    dtype = u_prior.dtype
    tables = {name: torch.from_numpy(value) for name, value in spec.tables(np.dtype(str(dtype).removeprefix("torch."))).items()}

    def pick(u, size):
        return torch.clamp(torch.floor(u * size).to(torch.int64), max=size - 1)

    i_prior, i_lik, i_size = pick(u_prior, len(spec.priors)), pick(u_lik, len(spec.likelihoods)), pick(u_size, len(spec.sizes))
    prior, likelihood, size = tables["prior"][i_prior], tables["likelihood"][i_lik], tables["size"][i_size]
    is_b = u_hyp < prior
    theta = torch.where(is_b != spec.swapped_draws, likelihood, 1 - likelihood)
    position = torch.arange(spec.max_draws, dtype=dtype)[:, None]
    hits = (u_draws < theta[None, :]) & (position < size[None, :])
    heads = torch.sum(hits.to(dtype), dim=0)
    n = 2 * heads - size
    log_odds = tables["prior_log_odds"][i_prior] + n * tables["likelihood_log_odds"][i_lik]
    if spec.summary_only:
        draw, strength = -torch.ones_like(heads), n / size
    else:  # a single draw is shown as itself, with no summary (strength 0)
        shown = size == 1
        draw = torch.where(shown, heads, -torch.ones_like(heads))
        strength = torch.where(shown, torch.zeros_like(n), n / size)
    weight = tables["weight"][i_size]
    inputs = torch.stack([draw, 1 - likelihood, likelihood, prior, strength, weight], dim=-1)
    return UrnQueries(inputs, log_odds, prior, likelihood, heads, size)


def sample_queries(spec: UrnQueryDistribution, generator: torch.Generator, batch_size: int,
                   dtype: torch.dtype = torch.float32) -> UrnQueries:
    """Draw B queries natively: base noise from ``generator``, then :func:`transform`."""
    return transform(spec, draw_noise(spec.noise_spec(batch_size), generator, dtype))


def seed_generator(seed: int, *stream: int) -> torch.Generator:
    """The generator of simulated participant ``seed`` (and sub-stream ``stream``): ``SeedSequence([seed, *stream])``."""
    state = np.random.SeedSequence([int(seed), *map(int, stream)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
