"""Statistical checks of a sample against its task spec, shared by the numpy, torch and JAX sampler tests.

All arrays are float64 numpy: observations ``x`` ``[T, B]`` and the latent ``[B]``. Tests use fixed
seeds, so the checks are deterministic; alpha = 1e-3 per KS test and 5 standard errors for moments.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

KS_ALPHA = 1e-3


def assert_gaussian_sample(task, x: np.ndarray, mu: np.ndarray) -> None:
    """mu ~ N(m0, s0^2); x_t ~ N(m0, s0^2 + sigma^2); x - mu ~ N(0, sigma^2); corr(x_s, x_t) = s0^2 / (s0^2 + sigma^2)."""
    batch = mu.shape[0]
    assert stats.kstest(mu, stats.norm(task.prior_mean, task.prior_std).cdf).pvalue > KS_ALPHA
    marginal_std = math.hypot(task.prior_std, task.noise_std)
    for t in range(task.sequence_length):
        assert stats.kstest(x[t], stats.norm(task.prior_mean, marginal_std).cdf).pvalue > KS_ALPHA, t
        assert abs(x[t].mean() - task.prior_mean) < 5 * marginal_std / math.sqrt(batch), t
    residual = (x - mu[None, :]).ravel()
    assert stats.kstest(residual, stats.norm(0.0, task.noise_std).cdf).pvalue > KS_ALPHA
    if task.sequence_length >= 2:
        rho = task.prior_std**2 / marginal_std**2
        assert abs(np.corrcoef(x[0], x[-1])[0, 1] - rho) < 5 * (1 - rho**2) / math.sqrt(batch)


def assert_coin_sample(task, x: np.ndarray, theta: np.ndarray) -> None:
    """theta ~ Beta(a, b); x in {0, 1} with P(x = 1) = a / (a + b); E[x_s x_t] = a (a + 1) / ((a + b)(a + b + 1))."""
    batch = theta.shape[0]
    assert set(np.unique(x)) <= {0.0, 1.0}
    a, b = task.alpha, task.beta
    assert stats.kstest(theta, stats.beta(a, b).cdf).pvalue > KS_ALPHA
    p = a / (a + b)
    for t in range(task.sequence_length):
        assert abs(x[t].mean() - p) < 5 * math.sqrt(p * (1 - p) / batch), t
    if task.sequence_length >= 2:
        # Flips of one task share theta.
        second = a * (a + 1) / ((a + b) * (a + b + 1))
        assert abs((x[0] * x[-1]).mean() - second) < 5 * math.sqrt(second * (1 - second) / batch)
    # Given theta, x ~ Bernoulli(theta): x - theta has mean 0.
    residual = (x - theta[None, :]).ravel()
    assert abs(residual.mean()) < 5 * residual.std() / math.sqrt(residual.size / task.sequence_length)
