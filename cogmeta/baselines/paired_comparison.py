"""Baselines of the paired-comparison task (Binz et al. 2022, ``baselines.py``), each an online probit
learner (:class:`cogmeta.baselines.probit.ProbitFilter`) on different features of dx_t:

    probit N(0, I) learner:     all K cues, prior w ~ N(0, I)                   the paper's "ideal observer" /
                                                                                "rational model"
    equal weighting (EW):       one weight on sum_k dx_k                       tallying
    single cue (SC):            one weight on dx_1                              take-the-best when the ranking is known
    best cue (BC):              K single-cue learners; trial 1 averages them, later trials use the cue with
                                the highest log-likelihood of the past choices (cue ranking unknown)

Each returns p(y_t = 1 | trials < t) ``[T, B]`` and, for Gini and comparisons, the implied weight means
over the K cues before each trial ``[T, B, K]`` (EW: the same weight on every cue; SC: zero except cue 1).

The paper calls the first one the "ideal observer"; cogmeta names it for what it is,
:func:`probit_learner` (``BASELINES["probit_learner"]``; ``ideal_observer`` is a deprecated alias of the
function): a probit learner with an isotropic Gaussian prior N(0, I), not the task's ideal observer: the task draws w from a condition-specific prior (sorted by
magnitude in "ranking", non-negative in "direction"), which this learner ignores, and its posterior is
projected onto a Gaussian after every trial. The task's exact Bayes predictive, under each condition's
own prior, is :mod:`cogmeta.baselines.exact_bayes`, registered below as ``exact_bayes_<condition>``
(same call signature; Monte-Carlo, so much slower).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import numpy as np

from cogmeta.baselines.exact_bayes import DEFAULT_NUM_SAMPLES, posterior_predictive
from cogmeta.baselines.probit import ProbitFilter
from cogmeta.tasks.paired_comparison import CONDITIONS


class BaselineOutputs(NamedTuple):
    """``prob`` ``[T, B]``: p(y_t = 1 | trials < t); ``mean`` ``[T, B, K]``: implied cue weights."""

    prob: np.ndarray
    mean: np.ndarray


def probit_learner(cues: np.ndarray, targets: np.ndarray, noise_std: float = 0.1) -> BaselineOutputs:
    """The probit N(0, I) learner (the paper's "ideal observer"): Bayesian probit regression on all cues with an isotropic Gaussian prior N(0, I) (assumed-density
    filtering): a probit learner with an isotropic Gaussian prior, not the task's ideal observer (it ignores
    the condition's prior over the weights; see :mod:`cogmeta.baselines.exact_bayes` for the exact one)."""
    prob, mean = ProbitFilter(noise_std).run(cues, targets)
    return BaselineOutputs(prob, mean)


#: Deprecated alias of :func:`probit_learner` (the paper's name for it; it is not the task's ideal observer).
ideal_observer = probit_learner


def equal_weighting(cues: np.ndarray, targets: np.ndarray, noise_std: float = 0.1) -> BaselineOutputs:
    """One learned weight on the sum of the cues (tallying with a learned sign and scale)."""
    cues = np.asarray(cues, np.float64)
    prob, mean = ProbitFilter(noise_std).run(cues.sum(axis=-1, keepdims=True), targets)
    return BaselineOutputs(prob, np.repeat(mean, cues.shape[-1], axis=-1))


def single_cue(cues: np.ndarray, targets: np.ndarray, noise_std: float = 0.1, cue: int = 0) -> BaselineOutputs:
    """One learned weight on cue ``cue`` (0: the first, i.e. the most valid one under "ranking")."""
    cues = np.asarray(cues, np.float64)
    prob, mean = ProbitFilter(noise_std).run(cues[..., cue : cue + 1], targets)
    full = np.zeros(cues.shape)
    full[..., cue] = mean[..., 0]
    return BaselineOutputs(prob, full)


def best_cue(cues: np.ndarray, targets: np.ndarray, noise_std: float = 0.1) -> BaselineOutputs:
    """Use the single cue whose learner has explained the past choices best (ties: the first such cue)."""
    cues = np.asarray(cues, np.float64)
    targets = np.asarray(targets, np.float64)
    steps, batch, count = cues.shape
    runs = [single_cue(cues, targets, noise_std, k) for k in range(count)]
    probs = np.stack([run.prob for run in runs], axis=-1)  # [T, B, K]
    means = np.stack([run.mean[..., k] for k, run in enumerate(runs)], axis=-1)
    eps = 1e-12
    loglik = targets[..., None] * np.log(probs + eps) + (1 - targets[..., None]) * np.log(1 - probs + eps)
    past = np.concatenate([np.zeros((1, batch, count)), np.cumsum(loglik, axis=0)[:-1]], axis=0)
    choice = np.argmax(past, axis=-1)  # [T, B]
    prob = np.take_along_axis(probs, choice[..., None], axis=-1)[..., 0]
    prob[0] = probs[0].mean(axis=-1)
    onehot = np.eye(count)[choice]
    mean = means * onehot
    mean[0] = means[0] / count
    return BaselineOutputs(prob, mean)


def exact_bayes(
    cues: np.ndarray,
    targets: np.ndarray,
    noise_std: float = 0.1,
    condition: str = "none",
    num_samples: int = DEFAULT_NUM_SAMPLES,
    seed: int = 0,
    flip_targets: bool = False,
) -> BaselineOutputs:
    """The task's exact Bayes predictive under ``condition``'s prior over the weights (importance sampling,
    :func:`cogmeta.baselines.exact_bayes.posterior_predictive`); ``mean``: the posterior mean of w."""
    result = posterior_predictive(cues, targets, condition, noise_std, flip_targets, num_samples, seed)
    return BaselineOutputs(result.prob, result.mean)


BASELINES: dict[str, Callable[..., BaselineOutputs]] = {
    "probit_learner": probit_learner,
    "equal_weighting": equal_weighting,
    "single_cue": single_cue,
    "best_cue": best_cue,
    # exact Bayes under each condition's own prior: exact_bayes_ranking, exact_bayes_direction, exact_bayes_none
    **{f"exact_bayes_{condition}": partial(exact_bayes, condition=condition) for condition in CONDITIONS},
}
