"""Gaussian mean inference: the running example of the tutorial (Binz, KogWis 2022).

Generative process, for each task:
    mu ~ N(m0, s0^2),   x_k | mu ~ N(mu, sigma^2),   k = 1..T.
The tutorial uses m0 = 0, s0 = 1, sigma = 1 and T = 7 (the default here).

Bayes-optimal posterior predictive after t observations (conjugate normal-normal update):
    precision  tau_t = 1/s0^2 + t/sigma^2
    mean       m_t   = (m0/s0^2 + sum_{k<=t} x_k / sigma^2) / tau_t
    predictive p(x_{t+1} | x_{1:t}) = N(m_t, v_t),   v_t = sigma^2 + 1/tau_t.
For the tutorial's prior this is N(sum x / (t+1), 1 + 1/(t+1)).

Its expected negative log-likelihood (expectation over the environment) is closed form because
x_{t+1} - m_t ~ N(0, v_t) under the marginal:  E[NLL_t] = 0.5 log(2 pi v_t) + 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Mapping

import numpy as np

from cogmeta._validation import require_int, require_positive, require_real
from cogmeta.contract import register_task
from cogmeta.tasks.base import NoiseSpec, TaskBatch, check_observations


@register_task
@dataclass(frozen=True)
class GaussianMeanTask:
    """Predict the next draw from a Gaussian whose mean is drawn per task.

    Attributes:
        prior_mean: m0, mean of the prior over mu.
        prior_std: s0 > 0, standard deviation of the prior over mu.
        noise_std: sigma > 0, observation noise.
        sequence_length: T >= 1, observations per task; the model makes T predictions (t = 0..T-1).
    """

    name: ClassVar[str] = "gaussian"
    family: ClassVar[str] = "gaussian"

    prior_mean: float = 0.0
    prior_std: float = 1.0
    noise_std: float = 1.0
    sequence_length: int = 7

    def __post_init__(self) -> None:
        owner = type(self).__name__
        object.__setattr__(self, "prior_mean", require_real(owner, "prior_mean", self.prior_mean))
        object.__setattr__(self, "prior_std", require_positive(owner, "prior_std", self.prior_std))
        object.__setattr__(self, "noise_std", require_positive(owner, "noise_std", self.noise_std))
        object.__setattr__(
            self, "sequence_length", require_int(owner, "sequence_length", self.sequence_length, 1, 100_000)
        )

    # ------------------------------------------------------------------ sampling
    def noise_spec(self, batch_size: int) -> dict[str, NoiseSpec]:
        """Base noise: ``latent [B]`` and ``observation [T, B]``, both standard normal."""
        return {
            "latent": NoiseSpec("normal", (batch_size,)),
            "observation": NoiseSpec("normal", (self.sequence_length, batch_size)),
        }

    def transform(self, noise: Mapping[str, np.ndarray]) -> TaskBatch:
        """mu = m0 + s0 * z_mu;  x = mu + sigma * z_x, in the dtype of the noise.

        Returns:
            TaskBatch with observations ``[T, B, 1]`` and latent mu ``[B]``.
        """
        z_latent, z_observation = np.asarray(noise["latent"]), np.asarray(noise["observation"])
        cast = z_latent.dtype.type
        latent = cast(self.prior_mean) + cast(self.prior_std) * z_latent
        observations = latent[None, :] + cast(self.noise_std) * z_observation
        return TaskBatch(observations[:, :, None], latent)

    def sample(self, rng: np.random.Generator, batch_size: int, dtype=np.float64) -> TaskBatch:
        """Reference sampler: draw the base noise with ``rng`` and transform it."""
        from cogmeta.tasks.noise import draw_noise

        return self.transform(draw_noise(self.noise_spec(batch_size), rng, dtype))

    # ------------------------------------------------------------------ exact Bayes
    def posterior_predictive(self, observations: np.ndarray) -> dict[str, np.ndarray]:
        """Exact p(x_{t+1} | x_{1:t}) for t = 0..T-1, in float64.

        Args:
            observations: ``[T, B, 1]``.

        Returns:
            ``{"mean": [T, B], "std": [T, B]}``.
        """
        x = check_observations(observations, self.sequence_length)[..., 0].astype(np.float64)
        steps = x.shape[0]
        seen = np.arange(steps, dtype=np.float64)[:, None]  # t observations before prediction t
        prefix_sum = np.concatenate([np.zeros_like(x[:1]), np.cumsum(x, axis=0)[:-1]], axis=0)
        precision = 1.0 / self.prior_std**2 + seen / self.noise_std**2
        mean = (self.prior_mean / self.prior_std**2 + prefix_sum / self.noise_std**2) / precision
        std = np.sqrt(self.noise_std**2 + 1.0 / precision)
        return {"mean": mean, "std": np.broadcast_to(std, mean.shape).copy()}

    def predictive_variance(self) -> np.ndarray:
        """v_t for t = 0..T-1, ``[T]`` (it does not depend on the data)."""
        seen = np.arange(self.sequence_length, dtype=np.float64)
        return self.noise_std**2 + 1.0 / (1.0 / self.prior_std**2 + seen / self.noise_std**2)

    def expected_nll(self) -> np.ndarray:
        """E[-log p(x_{t+1} | x_{1:t})] under the environment, ``[T]`` nats."""
        return 0.5 * np.log(2.0 * math.pi * self.predictive_variance()) + 0.5
