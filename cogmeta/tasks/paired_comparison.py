"""Paired comparison with correlated cues (Binz, Gershman, Schulz & Endres 2022, "Heuristics from bounded
meta-learned inference"; environment of marcelbinz/HeuristicsFromBMLI ``environments.py``).

Generative process, for each task (K cues, T trials):

    w ~ N(0, I_K), then by condition
        "ranking":   cues reordered so that |w_1| >= |w_2| >= ... >= |w_K| (signs stay random)
        "direction": w <- |w| (every cue points towards the better option; see the sign convention below)
        "none":      unchanged
    L ~ LKJCholesky(K, eta)                               (cogmeta.lkj; correlations R = L L^T)
    for trial t = 1..T, options o in {a, b}:
        x_o = L z_o,  z_o ~ N(0, I_K)                     (unit-variance cues with correlation R)
        c_o = w . x_o + sigma * eps_o,  eps_o ~ N(0, 1)   (criterion, sigma = noise_std = 0.1)
    y_t = 1[c_a > c_b],  model input dx_t = x_a - x_b

so p(y_t = 1 | w, dx_t) = Phi(w . dx_t / (sqrt(2) sigma)), the probit choice rule of the paper
(``0.5 * erfc(-w.dx / (2 sigma))``). The criterion noise is drawn explicitly instead of thresholding a
uniform at Phi(.), so that the three samplers compare only dot products and never evaluate Phi.

Sign convention of "direction": here the weights are positive and targets are not flipped, so larger
cue values favour an option. The original code additionally flips the targets in this condition
(y <- 1 - y, "hack for an earlier bug"), which makes every weight effectively negative; set
``flip_direction_targets=True`` to reproduce that (e.g. to compare with the released human data). The
two conventions are mirror images: a model trained on one reaches the same accuracy on the other
after negating the cues.

Noise layout (see ``cogmeta.tasks.base``): ``weights [B, K]``, ``cues [T, B, 2, K]`` and
``criterion [T, B, 2]`` standard normals, plus the LKJ gammas of :func:`cogmeta.lkj.lkj_noise_spec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, NamedTuple

import numpy as np

from cogmeta._validation import require_choice, require_int, require_positive
from cogmeta.lkj import lkj_cholesky, lkj_noise_spec
from cogmeta.tasks.base import NoiseSpec

CONDITIONS = ("ranking", "direction", "none")


class ComparisonBatch(NamedTuple):
    """B paired-comparison tasks of T trials.

    Attributes:
        cues: ``[T, B, K]``, dx_t = x_a - x_b.
        targets: ``[T, B]`` in {0, 1}, 1 when option a has the larger criterion.
        weights: ``[B, K]``, the task's criterion weights w (after the condition's transform).
    """

    cues: Any
    targets: Any
    weights: Any


@dataclass(frozen=True)
class PairedComparisonTask:
    """Choose the option with the larger noisy weighted sum of K correlated cues.

    Attributes:
        condition: "ranking", "direction" or "none" (what is known about the weights, see module doc).
        num_cues: K >= 2 (paper: 4; 2 in its Experiment 3).
        eta: LKJ concentration > 0 of the cue correlations (paper: 2).
        noise_std: sigma > 0 of the criterion noise (paper: 0.1).
        num_trials: T >= 1 comparisons per task (paper: 10).
        flip_direction_targets: reproduce the original code's target flip in "direction".
    """

    name: ClassVar[str] = "paired_comparison"

    condition: str = "none"
    num_cues: int = 4
    eta: float = 2.0
    noise_std: float = 0.1
    num_trials: int = 10
    flip_direction_targets: bool = False

    def __post_init__(self) -> None:
        owner = type(self).__name__
        object.__setattr__(self, "condition", require_choice(owner, "condition", self.condition, CONDITIONS))
        object.__setattr__(self, "num_cues", require_int(owner, "num_cues", self.num_cues, 2, 64))
        object.__setattr__(self, "eta", require_positive(owner, "eta", self.eta))
        object.__setattr__(self, "noise_std", require_positive(owner, "noise_std", self.noise_std))
        object.__setattr__(self, "num_trials", require_int(owner, "num_trials", self.num_trials, 1, 100_000))
        if not isinstance(self.flip_direction_targets, bool):
            raise ValueError(
                f"{owner}.flip_direction_targets must be True or False, got {self.flip_direction_targets!r}"
            )

    @property
    def condition_index(self) -> int:
        """Position of the condition in :data:`CONDITIONS` (the JAX sampler selects by index under vmap)."""
        return CONDITIONS.index(self.condition)

    @property
    def flips_targets(self) -> bool:
        """Whether the targets are flipped (only in "direction" with ``flip_direction_targets``)."""
        return self.flip_direction_targets and self.condition == "direction"

    @property
    def input_size(self) -> int:
        """K + 2: the model input [dx_t, y_t, 1 - y_t]."""
        return self.num_cues + 2

    # ------------------------------------------------------------------ sampling
    def noise_spec(self, batch_size: int) -> dict[str, NoiseSpec]:
        """Base noise of B tasks (module doc)."""
        steps, cues = self.num_trials, self.num_cues
        return {
            "weights": NoiseSpec("normal", (batch_size, cues)),
            "cues": NoiseSpec("normal", (steps, batch_size, 2, cues)),
            "criterion": NoiseSpec("normal", (steps, batch_size, 2)),
            **lkj_noise_spec(cues, self.eta, batch_size),
        }

    def transform(self, noise: Mapping[str, np.ndarray]) -> ComparisonBatch:
        """Noise -> batch in the dtype of the noise (module doc); the torch and JAX twins repeat it."""
        weights = condition_weights(np.asarray(noise["weights"]), self.condition)
        chol = lkj_cholesky(noise, self.num_cues)
        options = correlate(chol, np.asarray(noise["cues"]))  # [T, B, 2, K]
        criterion = weighted_sum(weights[None, :, None, :], options) + self.noise_std * np.asarray(noise["criterion"])
        targets = (criterion[..., 0] > criterion[..., 1]).astype(options.dtype)
        if self.flips_targets:
            targets = 1 - targets
        return ComparisonBatch(options[..., 0, :] - options[..., 1, :], targets, weights)

    def sample(self, rng: np.random.Generator, batch_size: int, dtype=np.float64) -> ComparisonBatch:
        """Reference sampler: draw the base noise with ``rng`` and transform it."""
        from cogmeta.tasks.noise import draw_noise

        return self.transform(draw_noise(self.noise_spec(batch_size), rng, dtype))

    # ------------------------------------------------------------------ references
    def choice_probability(self, weights: np.ndarray, cues: np.ndarray) -> np.ndarray:
        """p(y_t = 1 | w, dx_t) = Phi(w . dx_t / (sqrt(2) sigma)) (flipped when the targets are), ``[T, B]``."""
        from scipy import special  # here: scipy.special costs ~0.25 s of every command's start-up

        z = np.einsum("bk,tbk->tb", np.asarray(weights, np.float64), np.asarray(cues, np.float64))
        prob = special.ndtr(z / (np.sqrt(2.0) * self.noise_std))
        return 1 - prob if self.flips_targets else prob


def model_inputs(cues: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``[T, B, K + 2]`` inputs [dx_t, y_t, 1 - y_t]; the model reads its prediction of trial t from the
    hidden state *before* step t, so the input of step t is only seen by trials after t."""
    cues, targets = np.asarray(cues), np.asarray(targets)
    return np.concatenate([cues, targets[..., None], 1 - targets[..., None]], axis=-1)


def condition_weights(weights: np.ndarray, condition: str) -> np.ndarray:
    """Apply a condition to standard-normal weights ``[B, K]``: sort by magnitude, take |w| or keep."""
    if condition == "ranking":
        order = np.argsort(-np.abs(weights), axis=-1, kind="stable")
        return np.take_along_axis(weights, order, axis=-1)
    if condition == "direction":
        return np.abs(weights)
    return weights


def correlate(chol: np.ndarray, z: np.ndarray) -> np.ndarray:
    """x = L z per task: ``chol [B, K, K]``, ``z [T, B, 2, K]`` -> ``[T, B, 2, K]``.

    Summed term by term in a fixed order (j = 0..i) so that the three samplers round identically.
    """
    dim = chol.shape[-1]
    columns = []
    for i in range(dim):
        total = chol[None, :, None, i, 0] * z[..., 0]
        for j in range(1, i + 1):
            total = total + chol[None, :, None, i, j] * z[..., j]
        columns.append(total)
    return np.stack(columns, axis=-1)


def weighted_sum(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """sum_k w_k x_k over the last axis, in a fixed order (see :func:`correlate`)."""
    total = weights[..., 0] * x[..., 0]
    for k in range(1, x.shape[-1]):
        total = total + weights[..., k] * x[..., k]
    return total
