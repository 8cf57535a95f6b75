"""Drifting-mean Gaussian: learning in a changing environment (the random walk tracked by a Kalman filter).

Generative process, for each task:
    mu_1 ~ N(m0, s0^2),   mu_{t+1} = mu_t + d * e_t,   x_t = mu_t + sigma * n_t,   t = 1..T,
with e_t, n_t independent standard normals, d the drift (process-noise) std and sigma the observation
noise std. With d = 0 it is the stationary :class:`cogmeta.tasks.GaussianMeanTask`.

Bayes-optimal predictive p(x_{t+1} | x_{1:t}) = N(a_t, P_t + sigma^2) by the Kalman filter, where
(a_t, P_t) is the predicted mean and variance of mu_{t+1} given x_{1:t}:
    t = 0:   a_0 = m0,   P_0 = s0^2                         (the prior; predictive variance s0^2 + sigma^2)
    after observing x_{t+1}:
        gain      K   = P_t / (P_t + sigma^2)
        filtered  m   = a_t + K (x_{t+1} - a_t),   F = (1 - K) P_t = P_t sigma^2 / (P_t + sigma^2)
        predict   a_{t+1} = m,   P_{t+1} = F + d^2            (the mean drifts before the next draw)
The variances P_t do not depend on the data, so neither does the predictive variance v_t = P_t + sigma^2,
and the innovation x_{t+1} - a_t is N(0, v_t) under the environment: E[NLL_t] = 0.5 log(2 pi v_t) + 0.5,
closed form as for the stationary task. (P_t tends to the fixed point of P = P sigma^2 / (P + sigma^2) + d^2:
the model can never become certain, unlike in the stationary task.)

Sampling: ``latent [B]`` gives mu_1 = m0 + s0 z, ``drift [T-1, B]`` the increments, ``observation [T, B]``
the observation noise; the mean path is accumulated by an explicit loop over t (the same sums in the
same order in numpy, torch and jax: their ``cumsum`` functions do not agree bitwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Mapping

import numpy as np

from cogmeta._validation import (
    require_in_range,
    require_int,
    require_positive,
    require_real,
)
from cogmeta.contract import register_task
from cogmeta.tasks.base import NoiseSpec, TaskBatch, check_observations

#: Largest drift std accepted: far beyond it the task is "every draw is new" and the predictive is the prior's.
_MAX_DRIFT_STD = 1e6


@register_task
@dataclass(frozen=True)
class DriftingMeanTask:
    """Predict the next draw from a Gaussian whose mean follows a random walk within each task.

    Attributes:
        prior_mean: m0, mean of the prior over the first mean mu_1.
        prior_std: s0 > 0, standard deviation of the prior over mu_1.
        noise_std: sigma > 0, observation noise.
        drift_std: d in [0, 1e6], standard deviation of each step mu_{t+1} - mu_t (0: a stationary mean).
        sequence_length: T >= 1, observations per task; the model makes T predictions (t = 0..T-1).
    """

    name: ClassVar[str] = "drift"
    family: ClassVar[str] = "gaussian"

    prior_mean: float = 0.0
    prior_std: float = 1.0
    noise_std: float = 1.0
    drift_std: float = 0.3
    sequence_length: int = 10

    def __post_init__(self) -> None:
        owner = type(self).__name__
        object.__setattr__(self, "prior_mean", require_real(owner, "prior_mean", self.prior_mean))
        object.__setattr__(self, "prior_std", require_positive(owner, "prior_std", self.prior_std))
        object.__setattr__(self, "noise_std", require_positive(owner, "noise_std", self.noise_std))
        object.__setattr__(self, "drift_std", require_in_range(owner, "drift_std", self.drift_std, 0.0, _MAX_DRIFT_STD))
        object.__setattr__(
            self, "sequence_length", require_int(owner, "sequence_length", self.sequence_length, 1, 100_000)
        )

    # ------------------------------------------------------------------ sampling
    def noise_spec(self, batch_size: int) -> dict[str, NoiseSpec]:
        """Base noise, all standard normal: ``latent [B]``, ``drift [T-1, B]`` and ``observation [T, B]``."""
        return {
            "latent": NoiseSpec("normal", (batch_size,)),
            "drift": NoiseSpec("normal", (self.sequence_length - 1, batch_size)),
            "observation": NoiseSpec("normal", (self.sequence_length, batch_size)),
        }

    def transform(self, noise: Mapping[str, np.ndarray]) -> TaskBatch:
        """mu_1 = m0 + s0 * z;  mu_{t+1} = mu_t + d * e_t;  x_t = mu_t + sigma * n_t, in the dtype of the noise.

        Returns:
            TaskBatch with observations ``[T, B, 1]`` and latent mean path mu_1..mu_T ``[T, B]`` (time-major).
        """
        z_latent, z_drift = np.asarray(noise["latent"]), np.asarray(noise["drift"])
        z_observation = np.asarray(noise["observation"])
        cast = z_latent.dtype.type
        mean = cast(self.prior_mean) + cast(self.prior_std) * z_latent
        path = [mean]
        for t in range(z_drift.shape[0]):
            mean = mean + cast(self.drift_std) * z_drift[t]
            path.append(mean)
        latent = np.stack(path)
        observations = latent + cast(self.noise_std) * z_observation
        return TaskBatch(observations[:, :, None], latent)

    def sample(self, rng: np.random.Generator, batch_size: int, dtype=np.float64) -> TaskBatch:
        """Reference sampler: draw the base noise with ``rng`` and transform it."""
        from cogmeta.tasks.noise import draw_noise

        return self.transform(draw_noise(self.noise_spec(batch_size), rng, dtype))

    # ------------------------------------------------------------------ exact Bayes
    def prior_variances(self) -> np.ndarray:
        """P_t = Var(mu_{t+1} | x_{1:t}) for t = 0..T-1, ``[T]`` (the Kalman filter's, data-independent)."""
        variances = np.empty(self.sequence_length, dtype=np.float64)
        variance = self.prior_std**2
        for t in range(self.sequence_length):
            variances[t] = variance
            filtered = variance * self.noise_std**2 / (variance + self.noise_std**2)
            variance = filtered + self.drift_std**2
        return variances

    def posterior_predictive(self, observations: np.ndarray) -> dict[str, np.ndarray]:
        """Exact p(x_{t+1} | x_{1:t}) for t = 0..T-1 by the Kalman filter, in float64.

        Args:
            observations: ``[T, B, 1]``.

        Returns:
            ``{"mean": [T, B], "std": [T, B]}``.
        """
        x = check_observations(observations, self.sequence_length)[..., 0].astype(np.float64)
        variances = self.prior_variances()
        noise_variance = self.noise_std**2
        mean = np.empty_like(x)
        current = np.full(x.shape[1], self.prior_mean, dtype=np.float64)
        for t in range(x.shape[0]):
            mean[t] = current
            gain = variances[t] / (variances[t] + noise_variance)
            current = current + gain * (x[t] - current)  # the drift adds variance, not a shift of the mean
        std = np.sqrt(variances + noise_variance)[:, None]
        return {"mean": mean, "std": np.broadcast_to(std, mean.shape).copy()}

    def predictive_variance(self) -> np.ndarray:
        """v_t = P_t + sigma^2 for t = 0..T-1, ``[T]`` (it does not depend on the data)."""
        return self.prior_variances() + self.noise_std**2

    def expected_nll(self) -> np.ndarray:
        """E[-log p(x_{t+1} | x_{1:t})] under the environment, ``[T]`` nats."""
        return 0.5 * np.log(2.0 * math.pi * self.predictive_variance()) + 0.5
