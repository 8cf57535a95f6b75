"""Exact Bayes reference of the paired-comparison task: the posterior predictive under the condition's own
prior over the cue weights, by self-normalised importance sampling from that prior (numpy/scipy only).

Model (the generative process of :mod:`cogmeta.tasks.paired_comparison`, K cues, T trials):

    w = g(z),  z ~ N(0, I_K),  g by condition      (:func:`cogmeta.tasks.paired_comparison.condition_weights`)
        "ranking":   reorder so that |w_1| >= ... >= |w_K|  (prior density K! prod_k N(w_k; 0, 1) on that cone)
        "direction": w = |z|                                (prior density 2^K prod_k N(w_k; 0, 1) on w >= 0)
        "none":      w = z                                  (N(0, I_K))
    p(y_t = 1 | w, dx_t) = Phi(w . dx_t / tau),  tau = sqrt(2) sigma     (criterion noise sigma on both options)
                         = Phi(-w . dx_t / tau) when the task flips the targets ("direction" with
                           ``flip_direction_targets``)

The cue correlations (LKJ) and the cue values dx_t are drawn independently of w, so they carry no
information about w: the exact posterior after trials s < t is

    p(w | D_<t) ∝ p(w) prod_{s<t} Phi(a_s w . dx_s / tau),    a_s = (2 y_s - 1) * (-1 if flipped else 1)

and the exact predictive is p(y_t = 1 | dx_t, D_<t) = E_{p(w | D_<t)}[p(y_t = 1 | w, dx_t)].

Estimator. Draw w_1..w_M from the prior (exactly the task sampler's transform of standard normals) and
weight them by their likelihood of the past trials, accumulated in the log domain with
``scipy.special.log_ndtr`` (no underflow however sharp the likelihood):

    l_{t,i} = sum_{s<t} log Phi(a_s w_i . dx_s / tau),   W_{t,i} = exp(l_{t,i}) / sum_j exp(l_{t,j})
    q_{t,i} = Phi(a_t w_i . dx_t / tau)                  (probability of the observed y_t given w_i)
    p_obs_t = sum_i W_{t,i} q_{t,i},  p(y_t = 1) = p_obs_t if y_t = 1 else 1 - p_obs_t

(``y_t`` only selects which of two complementary numbers is returned; the prediction of trial t uses the
trials before t alone.) It is consistent as M -> infinity for every condition; at t = 1 (no past trials)
the weights are uniform and it is plain Monte Carlo of the prior predictive. Also returned:

    std_error_t = sqrt(sum_i W_{t,i}^2 (q_{t,i} - p_obs_t)^2)   delta-method standard error of the
                                                                 self-normalised estimate (Owen 2013, ch. 9)
    ess_t       = 1 / sum_i W_{t,i}^2                            Kish's effective sample size
    mean_t      = sum_i W_{t,i} w_i                              posterior mean of w before trial t

Monte-Carlo accuracy. Importance sampling from the prior has ess ~ M * p(D_<t) (the prior mass of the
weights consistent with the past choices): with sigma = 0.1 each choice cuts the prior roughly in half
until the posterior is about as wide as the likelihood's soft edge. Even at t = 1 the error is not small,
sd(q) / sqrt(M) with sd(q) ~ 0.5, because the likelihood is nearly a step. Stated bound for the default
M = :data:`DEFAULT_NUM_SAMPLES` = 2^21, on the paper's task (K = 4, T = 10, sigma = 0.1): the standard
error averaged over tasks is below 1e-3 at every trial t = 1..10 in every condition. Measured
(``benchmarks/exact_bayes_reference.py --tasks 100``, held-out tasks of the heuristics experiment): mean
per trial <= 0.41e-3 (ranking), 0.31e-3 (direction), 0.86e-3 (none, growing with t); over all
predictions median 3.3e-4 / 1.7e-4 / 4.6e-4, 90th percentile <= 1.3e-3, worst single prediction
(late trials of the least likely tasks) 8e-3; ess at the last trial median >= 5.9e4, min >= 630. The
error shrinks as M^(-1/2) (M = 2^18: about 2.8x larger); the returned ``std_error`` says how good each
prediction is, and an accuracy averaged over many predictions is much more precise than one prediction.

Cost and memory: T * B * M evaluations of ``log_ndtr`` (about 50 ns each), done in blocks of at most
``max_elements`` (T x tasks x samples) numbers, so memory stays bounded for any M and B. Samples come from
``numpy.random.default_rng(seed)`` in one stream, shared by all tasks: a task's predictive does not depend
on the other tasks of the batch nor on the block sizes (up to floating-point summation order).

Shapes: cues ``[T, B, K]`` (dx_t = x_a - x_b), targets ``[T, B]`` in {0, 1}; outputs ``[T, B]`` (and
``[T, B, K]`` for the posterior mean).
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, NamedTuple

import numpy as np
from scipy import special

from cogmeta._validation import require_choice, require_int, require_positive
from cogmeta.tasks.paired_comparison import (
    CONDITIONS,
    PairedComparisonTask,
    condition_weights,
)

#: Prior samples M by default: 2^21, so that the mean MC standard error is < 1e-3 at every trial of the
#: paper's task (module doc). About 1 s per task of 10 trials on one core; pass a smaller M to explore.
DEFAULT_NUM_SAMPLES = 2**21
#: Prior samples drawn at a time.
SAMPLE_CHUNK = 4096
#: Largest block T x tasks x samples held in memory at once (float64: 16 MiB per array).
MAX_ELEMENTS = 2**21


class ExactPredictive(NamedTuple):
    """The importance-sampling estimate and its Monte-Carlo accuracy.

    Attributes:
        prob: ``[T, B]`` p(y_t = 1 | dx_t, trials < t) under the condition's prior.
        std_error: ``[T, B]`` estimated Monte-Carlo standard error of ``prob``.
        ess: ``[T, B]`` effective sample size of the importance weights used for trial t (M at t = 1).
        mean: ``[T, B, K]`` posterior mean of the cue weights before trial t.
        num_samples: M, the number of prior samples.
    """

    prob: np.ndarray
    std_error: np.ndarray
    ess: np.ndarray
    mean: np.ndarray
    num_samples: int


def sample_prior_weights(condition: str, num_cues: int, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``[M, K]`` cue weights from the condition's prior, the task sampler's own transform of N(0, I_K) draws."""
    condition = require_choice("", "condition", condition, CONDITIONS)
    return condition_weights(rng.standard_normal((num_samples, num_cues)), condition)


def posterior_predictive(
    cues: Any,
    targets: Any,
    condition: str,
    noise_std: float = 0.1,
    flip_targets: bool = False,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    seed: int = 0,
    max_elements: int = MAX_ELEMENTS,
) -> ExactPredictive:
    """Exact-Bayes predictive of B tasks by self-normalised importance sampling from the prior (module doc).

    Args:
        cues: ``[T, B, K]`` cue differences dx_t; targets: ``[T, B]`` choices in {0, 1}.
        condition: "ranking", "direction" or "none" (the prior over w).
        noise_std: the criterion noise sigma (> 0); flip_targets: the likelihood of flipped targets.
        num_samples: M prior samples; seed: of the sample stream; max_elements: memory bound per block.
    """
    condition = require_choice("", "condition", condition, CONDITIONS)
    tau = np.sqrt(2.0) * require_positive("", "noise_std", noise_std)
    if not isinstance(flip_targets, (bool, np.bool_)):
        raise ValueError(f"flip_targets must be True or False, got {flip_targets!r}")
    num_samples = require_int("", "num_samples", num_samples, 1)
    max_elements = require_int("", "max_elements", max_elements, 1)
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    cues, targets = _check_data(cues, targets)
    steps, batch, count = cues.shape

    # a_t: +1 where the observed choice is the one with Phi(+w.dx / tau), i.e. log p(y_t | w) = log Phi(a_t w.dx_t / tau)
    sign = (2.0 * targets - 1.0) * (-1.0 if flip_targets else 1.0)
    scaled = cues * (sign / tau)[..., None]  # [T, B, K]: a_t dx_t / tau

    chunk = max(1, min(SAMPLE_CHUNK, max_elements // steps))
    tasks_per_block = max(1, max_elements // (steps * chunk))
    shift = np.full((steps, batch), -np.inf)  # running max of the log-weights, per trial and task
    total = np.zeros((steps, batch))  # sum_i u_i            with u_i = exp(l_i - shift)
    total_q = np.zeros((steps, batch))  # sum_i u_i q_i
    total_sq = np.zeros((steps, batch))  # sum_i u_i^2
    total_sq_q = np.zeros((steps, batch))  # sum_i u_i^2 q_i
    total_sq_qq = np.zeros((steps, batch))  # sum_i u_i^2 q_i^2
    total_w = np.zeros((steps, batch, count))  # sum_i u_i w_i

    rng = np.random.default_rng(seed)
    drawn = 0
    while drawn < num_samples:
        size = min(chunk, num_samples - drawn)
        weights = sample_prior_weights(condition, count, size, rng)  # [C, K]
        drawn += size
        for start in range(0, batch, tasks_per_block):
            block = slice(start, min(start + tasks_per_block, batch))
            loglik = special.log_ndtr(scaled[:, block] @ weights.T)  # [T, b, C]: log p(y_t | w_i)
            logw = np.cumsum(loglik, axis=0)
            logw = np.concatenate([np.zeros((1,) + logw.shape[1:]), logw[:-1]], axis=0)  # trials < t only
            new_shift = np.maximum(shift[:, block], logw.max(axis=-1))
            rescale = np.exp(shift[:, block] - new_shift)  # 0 before the first chunk
            u = np.exp(logw - new_shift[..., None])
            q = np.exp(loglik)
            uq, uu = u * q, u * u
            uuq = uu * q
            total[:, block] = total[:, block] * rescale + u.sum(-1)
            total_q[:, block] = total_q[:, block] * rescale + uq.sum(-1)
            total_sq[:, block] = total_sq[:, block] * rescale**2 + uu.sum(-1)
            total_sq_q[:, block] = total_sq_q[:, block] * rescale**2 + uuq.sum(-1)
            total_sq_qq[:, block] = total_sq_qq[:, block] * rescale**2 + (uuq * q).sum(-1)
            total_w[:, block] = total_w[:, block] * rescale[..., None] + u @ weights
            shift[:, block] = new_shift

    p_obs = total_q / total
    variance = (total_sq_qq - 2 * p_obs * total_sq_q + p_obs**2 * total_sq) / total**2
    prob = np.where(targets == 1, p_obs, 1 - p_obs)
    return ExactPredictive(
        prob=prob,
        std_error=np.sqrt(np.maximum(variance, 0.0)),
        ess=total**2 / total_sq,
        mean=total_w / total[..., None],
        num_samples=num_samples,
    )


def exact_predictive_with_error(task, cues: Any, targets: Any, num_samples: int = DEFAULT_NUM_SAMPLES, seed: int = 0) -> ExactPredictive:
    """:func:`posterior_predictive` for a :class:`~cogmeta.tasks.paired_comparison.PairedComparisonTask`
    (its condition, criterion noise, target flip and number of cues)."""
    condition, noise_std, flip = _task_parameters(task)
    cues = np.asarray(cues)
    if cues.ndim == 3 and cues.shape[-1] != task.num_cues:
        raise ValueError(f"cues have {cues.shape[-1]} cues (last axis of [T, B, K] = {cues.shape}) but the task has num_cues = {task.num_cues}")
    return posterior_predictive(cues, targets, condition, noise_std, flip, num_samples, seed)


def exact_predictive(task, cues: Any, targets: Any, num_samples: int = DEFAULT_NUM_SAMPLES, seed: int = 0) -> np.ndarray:
    """p(y_t = 1 | dx_t, trials < t) ``[T, B]`` under ``task``'s generative prior (module doc)."""
    return exact_predictive_with_error(task, cues, targets, num_samples, seed).prob


# ------------------------------------------------------------------------------------------ validation
def _task_parameters(task) -> tuple[str, float, bool]:
    if not isinstance(task, PairedComparisonTask):
        raise ValueError(f"task must be a PairedComparisonTask, got {type(task).__name__}")
    return task.condition, task.noise_std, task.flips_targets


def _check_data(cues: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    cues = np.asarray(cues, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if cues.ndim != 3:
        raise ValueError(f"cues must have shape [T, B, K] (trials, tasks, cues), got shape {cues.shape}")
    if targets.shape != cues.shape[:2]:
        raise ValueError(f"targets must have shape [T, B] = {cues.shape[:2]} to match cues {cues.shape}, got shape {targets.shape}")
    steps, batch, count = cues.shape
    if steps < 1 or batch < 1 or count < 1:
        raise ValueError(f"cues need at least one trial, task and cue, got shape [T, B, K] = {cues.shape}")
    if not np.all(np.isfinite(cues)):
        raise ValueError("cues must be finite (found NaN or inf)")
    if not np.all((targets == 0) | (targets == 1)):
        bad = np.unique(targets[(targets != 0) & (targets != 1)])[:5]
        raise ValueError(f"targets must be 0 or 1, found {bad.tolist()}")
    return cues, targets
