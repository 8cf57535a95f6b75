"""Online Bayesian probit regression by assumed-density filtering (Minka 2001, ch. 3; Rasmussen &
Williams 2006, s. 3.9): after each trial the posterior is projected onto a Gaussian with its exact
mean and covariance.

Likelihood of a choice y in {0, 1} with features x ``[D]`` and weights w, s = 2y - 1:
    p(y | w, x) = Phi(s * x.w / tau),   tau = sqrt(2) * sigma        (paired comparison: criterion noise sigma)
Given the Gaussian belief N(m, S):
    mu = x.m,  v = x^T S x,  c = sqrt(tau^2 + v),  z = s * mu / c,  rho = phi(z) / Phi(z)
    p(y = 1 | x) = Phi(mu / c)                                                    (the predictive)
    m' = m + S x * s * rho / c
    S' = S - (S x)(S x)^T * rho * (z + rho) / c^2
which are the exact first two moments of p(w | y, x) ∝ N(w; m, S) p(y | w, x).

The paper's baselines (``baselines.py``) fit the same projection by stochastic variational inference
(diagonal Gaussian, 100 Monte-Carlo samples, Adam); this closed form is exact, deterministic and
keeps the full covariance, so it is the better of the two approximations.

Neither is the paired-comparison task's ideal observer: with the N(0, I) prior of the paper's baselines this
is a probit learner with an isotropic Gaussian prior, whereas the task draws its weights from a
condition-specific prior; the exact Bayes predictive under that prior is :mod:`cogmeta.baselines.exact_bayes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special


def probit_update(mean: np.ndarray, cov: np.ndarray, x: np.ndarray, y: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """One ADF step for B beliefs: ``mean [B, D]``, ``cov [B, D, D]``, ``x [B, D]``, ``y [B]`` -> (mean', cov')."""
    sx = np.einsum("bij,bj->bi", cov, x)
    c = np.sqrt(tau**2 + np.einsum("bi,bi->b", x, sx))
    sign = 2 * np.asarray(y, np.float64) - 1
    z = sign * np.einsum("bi,bi->b", x, mean) / c
    rho = np.exp(-0.5 * z**2 - 0.5 * np.log(2 * np.pi) - special.log_ndtr(z))  # phi(z) / Phi(z), stable for z << 0
    mean = mean + sx * (sign * rho / c)[:, None]
    cov = cov - np.einsum("bi,bj->bij", sx, sx) * (rho * (z + rho) / c**2)[:, None, None]
    return mean, cov


def probit_predict(mean: np.ndarray, cov: np.ndarray, x: np.ndarray, tau: float) -> np.ndarray:
    """p(y = 1 | x) = Phi(x.m / sqrt(tau^2 + x^T S x)), ``[B]``."""
    v = np.einsum("bi,bij,bj->b", x, cov, x)
    return special.ndtr(np.einsum("bi,bi->b", x, mean) / np.sqrt(tau**2 + v))


@dataclass(frozen=True)
class ProbitFilter:
    """Run the filter over sequences: prior N(0, prior_var * I), criterion noise ``noise_std``."""

    noise_std: float = 0.1
    prior_var: float = 1.0

    @property
    def tau(self) -> float:
        return float(np.sqrt(2.0) * self.noise_std)

    def run(self, features: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``features [T, B, D]``, ``targets [T, B]`` -> (p(y_t = 1 | past) ``[T, B]``, means before trial t ``[T, B, D]``)."""
        features = np.asarray(features, np.float64)
        steps, batch, dim = features.shape
        mean = np.zeros((batch, dim))
        cov = np.broadcast_to(self.prior_var * np.eye(dim), (batch, dim, dim)).copy()
        probs, means = np.empty((steps, batch)), np.empty((steps, batch, dim))
        for t in range(steps):
            probs[t], means[t] = probit_predict(mean, cov, features[t], self.tau), mean
            mean, cov = probit_update(mean, cov, features[t], targets[t], self.tau)
        return probs, means
