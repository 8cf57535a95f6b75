"""Beta-Bernoulli coin prediction (Ortega et al. 2019; the review's first example beyond the Gaussian).

Generative process, for each task:
    theta ~ Beta(a, b),   x_k | theta ~ Bernoulli(theta),   k = 1..T.

Bayes-optimal posterior predictive after t observations with k_t = sum_{s<=t} x_s heads:
    p(x_{t+1} = 1 | x_{1:t}) = (a + k_t) / (a + b + t).

Expected NLL: k_t follows the beta-binomial distribution BetaBin(t, a, b) under the environment, and
given k_t the next outcome is Bernoulli(p_t), so E[NLL_t] = sum_k BetaBin(k; t, a, b) * H(p_{t,k}),
with H the binary entropy in nats.

Sampling via gammas: theta = g_a / (g_a + g_b) with g_a ~ Gamma(a, 1), g_b ~ Gamma(b, 1) is
Beta(a, b); x_k = 1[u_k < theta] with u_k ~ U[0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import numpy as np

from cogmeta._validation import require_in_range, require_int
from cogmeta.contract import register_task
from cogmeta.tasks.base import NoiseSpec, TaskBatch, check_observations

# Below ~0.1 the gamma draws of a float32 sampler underflow to 0 often enough to give 0/0.
_MIN_CONCENTRATION, _MAX_CONCENTRATION = 0.1, 1000.0


@register_task
@dataclass(frozen=True)
class CoinTask:
    """Predict the next flip of a coin whose bias is drawn per task from Beta(alpha, beta).

    Attributes:
        alpha: a in [0.1, 1000], pseudo-count of heads.
        beta: b in [0.1, 1000], pseudo-count of tails.
        sequence_length: T >= 1, flips per task.
    """

    name: ClassVar[str] = "coin"
    family: ClassVar[str] = "bernoulli"

    alpha: float = 1.0
    beta: float = 1.0
    sequence_length: int = 10

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for field in ("alpha", "beta"):
            value = require_in_range(owner, field, getattr(self, field), _MIN_CONCENTRATION, _MAX_CONCENTRATION)
            object.__setattr__(self, field, value)
        object.__setattr__(
            self, "sequence_length", require_int(owner, "sequence_length", self.sequence_length, 1, 100_000)
        )

    # ------------------------------------------------------------------ sampling
    def noise_spec(self, batch_size: int) -> dict[str, NoiseSpec]:
        """Base noise: ``gamma_a [B]``, ``gamma_b [B]`` (unit-rate gammas) and ``uniform [T, B]``."""
        return {
            "gamma_a": NoiseSpec("gamma", (batch_size,), self.alpha),
            "gamma_b": NoiseSpec("gamma", (batch_size,), self.beta),
            "uniform": NoiseSpec("uniform", (self.sequence_length, batch_size)),
        }

    def transform(self, noise: Mapping[str, np.ndarray]) -> TaskBatch:
        """theta = g_a / (g_a + g_b);  x = 1[u < theta], in the dtype of the noise.

        Returns:
            TaskBatch with observations ``[T, B, 1]`` in {0, 1} and latent theta ``[B]``.
        """
        gamma_a, gamma_b = np.asarray(noise["gamma_a"]), np.asarray(noise["gamma_b"])
        uniform = np.asarray(noise["uniform"])
        latent = gamma_a / (gamma_a + gamma_b)
        observations = (uniform < latent[None, :]).astype(uniform.dtype)
        return TaskBatch(observations[:, :, None], latent)

    def sample(self, rng: np.random.Generator, batch_size: int, dtype=np.float64) -> TaskBatch:
        """Reference sampler: draw the base noise with ``rng`` and transform it."""
        from cogmeta.tasks.noise import draw_noise

        return self.transform(draw_noise(self.noise_spec(batch_size), rng, dtype))

    # ------------------------------------------------------------------ exact Bayes
    def posterior_predictive(self, observations: np.ndarray) -> dict[str, np.ndarray]:
        """Exact p(x_{t+1} = 1 | x_{1:t}) for t = 0..T-1, float64.

        Args:
            observations: ``[T, B, 1]`` with values in {0, 1}.

        Returns:
            ``{"prob": [T, B]}``.
        """
        x = check_observations(observations, self.sequence_length)[..., 0].astype(np.float64)
        if not np.all((x == 0) | (x == 1)):
            raise ValueError("coin observations must be 0 or 1")
        heads = np.concatenate([np.zeros_like(x[:1]), np.cumsum(x, axis=0)[:-1]], axis=0)
        seen = np.arange(x.shape[0], dtype=np.float64)[:, None]
        return {"prob": (self.alpha + heads) / (self.alpha + self.beta + seen)}

    def expected_nll(self) -> np.ndarray:
        """E[-log p(x_{t+1} | x_{1:t})] under the environment, ``[T]`` nats (exact beta-binomial sum)."""
        from scipy import stats  # here, not at the top: scipy.stats costs ~0.6 s of every command's start-up

        result = np.empty(self.sequence_length)
        for t in range(self.sequence_length):
            heads = np.arange(t + 1)
            weight = stats.betabinom.pmf(heads, t, self.alpha, self.beta)
            prob = (self.alpha + heads) / (self.alpha + self.beta + t)
            entropy = -(prob * np.log(prob) + (1 - prob) * np.log1p(-prob))
            result[t] = np.sum(weight * entropy)
        return result
