"""The exact-Bayes reference of the paired-comparison task (cogmeta.baselines.exact_bayes) against
independent computations: polar-coordinate quadrature of the posterior predictive over each condition's
prior (K = 2), closed-form orthant probabilities of the prior predictive, and its invariances.

Tolerances: the importance-sampling estimate carries Monte-Carlo error; each comparison allows 5 of its
own reported standard errors (plus the reference's error), and the reported standard errors are checked
against the actual errors, so neither a biased estimate nor an inflated error bar passes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from cogmeta.baselines import BASELINES, BaselineOutputs
from cogmeta.baselines.exact_bayes import (
    exact_predictive,
    exact_predictive_with_error,
    posterior_predictive,
    sample_prior_weights,
)
from cogmeta.tasks.paired_comparison import PairedComparisonTask

CONDITIONS = ("ranking", "direction", "none")


# ------------------------------------------------------------------ independent references
def _gauss_legendre(low, high, panels, order=8):
    """Composite Gauss-Legendre nodes and weights on [low, high]."""
    x, w = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(low, high, panels + 1)
    half = 0.5 * np.diff(edges)[:, None]
    nodes = (0.5 * (edges[:-1] + edges[1:]))[:, None] + half * x
    return nodes.ravel(), (half * w).ravel()


#: The prior's support in polar angle theta (w = r (cos theta, sin theta)), K = 2: "ranking" is
#: |w_1| >= |w_2|, "direction" is w >= 0; on its support every prior is proportional to N(0, I_2).
ANGLES = {
    "ranking": [(-np.pi / 4, np.pi / 4), (3 * np.pi / 4, 5 * np.pi / 4)],
    "direction": [(0.0, np.pi / 2)],
    "none": [(0.0, 2 * np.pi)],
}


def quadrature_predictive(condition, cues, targets, noise_std, flip=False, panels_per_radian=40, radial_panels=24):
    """p(y_t = 1 | past) ``[T, B]`` for K = 2 by quadrature in polar coordinates over the prior's support.

    Written from the generative process, not from the estimator: prior density ∝ r exp(-r^2 / 2) dr dtheta
    on the support of ``ANGLES``, likelihood prod_s Phi(+-w.dx_s / (sqrt(2) sigma)). The likelihood's
    edges are ~ sqrt(2) sigma / (r |dx|) wide in theta, so the angular panels (8 nodes each) resolve them."""
    pieces = [_gauss_legendre(lo, hi, int(np.ceil(panels_per_radian * (hi - lo)))) for lo, hi in ANGLES[condition]]
    theta = np.concatenate([p[0] for p in pieces])
    w_theta = np.concatenate([p[1] for p in pieces])
    r, w_r = _gauss_legendre(0.0, 9.0, radial_panels)
    w_r = w_r * r * np.exp(-0.5 * r**2)
    w1 = (r[:, None] * np.cos(theta)).ravel()
    w2 = (r[:, None] * np.sin(theta)).ravel()
    mass = (w_r[:, None] * w_theta).ravel()
    tau = np.sqrt(2.0) * noise_std
    steps, batch, _ = cues.shape
    prob = np.empty((steps, batch))
    log_post = np.zeros((batch, mass.size))
    for t in range(steps):
        z = (cues[t, :, 0, None] * w1 + cues[t, :, 1, None] * w2) / tau  # [B, points]
        like_one = special.ndtr(-z if flip else z)  # p(y_t = 1 | w)
        post = mass * np.exp(log_post - log_post.max(axis=-1, keepdims=True))
        prob[t] = np.sum(post * like_one, axis=-1) / np.sum(post, axis=-1)
        observed = np.where(targets[t, :, None] == 1, like_one, 1 - like_one)
        log_post = log_post + np.log(observed + 1e-300)
    return prob


def orthant_probability_3(cov):
    """P(X_1 > 0, X_2 > 0, X_3 > 0), X ~ N(0, cov): 1/8 + (asin r_12 + asin r_13 + asin r_23) / (4 pi)."""
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    return 0.125 + (np.arcsin(corr[0, 1]) + np.arcsin(corr[0, 2]) + np.arcsin(corr[1, 2])) / (4 * np.pi)


def direction_prior_predictive(dx, noise_std, closed_form):
    """p(y = 1 | dx) with w = |z|, z ~ N(0, I_K): by symmetry 2^K P(u > 0, v > 0), u ~ N(0, I_K) and
    v = dx.u + sqrt(2) sigma eps, an orthant probability of the Gaussian (u, v)."""
    count = len(dx)
    cov = np.eye(count + 1)
    cov[:count, count] = cov[count, :count] = dx
    cov[count, count] = dx @ dx + 2 * noise_std**2
    if closed_form:
        return 2**count * orthant_probability_3(cov)
    # P(u > 0, v > 0) = P(-u < 0, -v < 0): the CDF at 0 of the negated vector (same covariance)
    zero = np.zeros(count + 1)
    return 2**count * stats.multivariate_normal.cdf(zero, mean=zero, cov=cov, abseps=1e-6, releps=0, maxpts=1_000_000)


# ------------------------------------------------------------------ brute-force comparison
def _check_against(reference, result, reference_error=0.0):
    error = np.abs(result.prob - reference)
    bound = 5 * result.std_error + reference_error + 1e-9
    worst = np.unravel_index(np.argmax(error - bound), error.shape)
    assert np.all(error <= bound), (
        f"estimate {result.prob[worst]:.5f} vs reference {reference[worst]:.5f} at (t, b) = {worst}: "
        f"error {error[worst]:.2e} > 5 standard errors {5 * result.std_error[worst]:.2e}"
    )
    # the error bars are honest: standardised errors have RMS about 1 (not inflated, not too small)
    rms = np.sqrt(np.mean((error / result.std_error) ** 2))
    assert 0.4 < rms < 2.0, f"RMS of standardised errors {rms:.2f}: the reported std_error is off"
    return error


@pytest.mark.parametrize("condition", CONDITIONS)
def test_predictive_matches_quadrature_over_the_prior(condition):
    task = PairedComparisonTask(condition=condition, num_cues=2, num_trials=6)
    batch = task.sample(np.random.default_rng(11), 10)
    result = exact_predictive_with_error(task, batch.cues, batch.targets, num_samples=2**17, seed=3)
    reference = quadrature_predictive(condition, batch.cues, batch.targets, task.noise_std)
    # the quadrature has converged far below the Monte-Carlo error (~1e-3): halving the grid moves it < 1e-4
    # (measured: < 2e-5; doubling the default grid moves it < 1e-6)
    coarse = quadrature_predictive(condition, batch.cues, batch.targets, task.noise_std, panels_per_radian=20, radial_panels=12)
    np.testing.assert_allclose(coarse, reference, atol=1e-4)
    error = _check_against(reference, result, reference_error=1e-5)
    assert np.max(result.std_error) < 0.02 and np.mean(error) < 3e-3
    assert np.all(result.ess[0] == pytest.approx(2**17)) and np.all(result.ess[1:] < 2**17)


def test_flipped_targets_and_a_wider_noise_match_quadrature():
    task = PairedComparisonTask(condition="direction", num_cues=2, num_trials=5, noise_std=0.4, flip_direction_targets=True)
    batch = task.sample(np.random.default_rng(12), 10)
    result = exact_predictive_with_error(task, batch.cues, batch.targets, num_samples=2**16, seed=4)
    reference = quadrature_predictive("direction", batch.cues, batch.targets, task.noise_std, flip=True)
    _check_against(reference, result)
    # a flipped task is not the unflipped one: the check above can tell them apart
    unflipped = quadrature_predictive("direction", batch.cues, batch.targets, task.noise_std, flip=False)
    assert np.max(np.abs(unflipped - reference)) > 0.2


def test_the_condition_matters():
    """The same data under another condition's prior gives another predictive (the priors are used)."""
    task = PairedComparisonTask(condition="ranking", num_cues=2, num_trials=4)
    batch = task.sample(np.random.default_rng(13), 10)
    ranking = quadrature_predictive("ranking", batch.cues, batch.targets, task.noise_std)
    for other in ("direction", "none"):
        got = posterior_predictive(batch.cues, batch.targets, other, task.noise_std, num_samples=2**15, seed=5).prob
        assert np.max(np.abs(got - ranking)) > 0.1, other


# ------------------------------------------------------------------ (a) no past trials: the prior predictive
@pytest.mark.parametrize("condition", CONDITIONS)
@pytest.mark.parametrize("num_cues", [2, 4])
def test_first_trial_is_the_prior_predictive(condition, num_cues):
    task = PairedComparisonTask(condition=condition, num_cues=num_cues, num_trials=1)
    batch = task.sample(np.random.default_rng(20 + num_cues), 6)
    batch_cues = batch.cues * np.array([1.0, 0.3, 0.05, 2.0, 0.5, 1.0])[None, :, None]  # include near-ties
    result = exact_predictive_with_error(task, batch_cues, batch.targets, num_samples=2**16, seed=6)
    if condition == "direction":
        reference = np.array([[direction_prior_predictive(dx, task.noise_std, closed_form=num_cues == 2) for dx in batch_cues[0]]])
        reference_error = 0.0 if num_cues == 2 else 2**num_cues * 1e-5
    else:  # ranking and none: the prior is symmetric under w -> -w, so p(y = 1 | dx) = 1/2 for every dx
        reference, reference_error = np.full((1, 6), 0.5), 0.0
    error = np.abs(result.prob - reference)
    assert np.all(error <= 5 * result.std_error + reference_error), (error, result.std_error)
    assert np.all(result.ess == pytest.approx(2**16))
    # uniform weights: the standard error is the plain Monte-Carlo one, sd(q) / sqrt(M)
    weights = sample_prior_weights(condition, num_cues, 2**16, np.random.default_rng(6))
    q = special.ndtr(batch_cues[0] @ weights.T / (np.sqrt(2) * task.noise_std))
    np.testing.assert_allclose(result.std_error[0], q.std(axis=-1) / np.sqrt(2**16), rtol=1e-6)
    np.testing.assert_allclose(result.prob[0], q.mean(axis=-1), rtol=1e-9)


def test_prior_samples_follow_the_task_sampler():
    rng = np.random.default_rng(30)
    ranking = sample_prior_weights("ranking", 4, 50_000, rng)
    assert np.all(np.diff(np.abs(ranking), axis=-1) <= 0) and 0.45 < np.mean(ranking[:, 0] > 0) < 0.55
    direction = sample_prior_weights("direction", 4, 50_000, rng)
    assert np.all(direction >= 0) and abs(direction.mean() - np.sqrt(2 / np.pi)) < 0.01
    task_weights = PairedComparisonTask(condition="ranking").sample(rng, 50_000).weights
    np.testing.assert_allclose(np.abs(ranking).mean(0), np.abs(task_weights).mean(0), atol=0.02)


# ------------------------------------------------------------------ (b) invariances
def test_invariant_to_the_order_of_past_trials():
    task = PairedComparisonTask(condition="ranking", num_cues=4, num_trials=7)
    batch = task.sample(np.random.default_rng(40), 5)
    base = exact_predictive_with_error(task, batch.cues, batch.targets, num_samples=20_000, seed=7)
    order = np.array([4, 2, 5, 0, 3, 1, 6])  # permute trials 1..6, keep the last in place
    permuted = exact_predictive_with_error(task, batch.cues[order], batch.targets[order], num_samples=20_000, seed=7)
    np.testing.assert_allclose(permuted.prob[-1], base.prob[-1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(permuted.std_error[-1], base.std_error[-1], rtol=1e-8)
    np.testing.assert_allclose(permuted.mean[-1], base.mean[-1], rtol=1e-10, atol=1e-12)
    # ... while earlier predictions, which see different pasts, do change
    assert np.max(np.abs(permuted.prob[3] - base.prob[3])) > 1e-3


def test_a_prediction_uses_only_the_past():
    task = PairedComparisonTask(condition="none", num_cues=3, num_trials=6)
    batch = task.sample(np.random.default_rng(41), 4)
    base = exact_predictive(task, batch.cues, batch.targets, num_samples=10_000, seed=8)
    targets = batch.targets.copy()
    targets[3] = 1 - targets[3]  # change trial 4's outcome
    changed = exact_predictive(task, batch.cues, targets, num_samples=10_000, seed=8)
    np.testing.assert_allclose(changed[:4], base[:4], atol=1e-12)
    assert np.max(np.abs(changed[4:] - base[4:])) > 1e-2


def test_a_task_does_not_depend_on_its_batch_or_the_block_size():
    task = PairedComparisonTask(condition="direction", num_cues=4, num_trials=5)
    batch = task.sample(np.random.default_rng(42), 9)
    full = posterior_predictive(batch.cues, batch.targets, "direction", num_samples=9_000, seed=9)
    part = posterior_predictive(batch.cues[:, 2:4], batch.targets[:, 2:4], "direction", num_samples=9_000, seed=9, max_elements=700)
    np.testing.assert_allclose(part.prob, full.prob[:, 2:4], rtol=1e-10)
    np.testing.assert_allclose(part.ess, full.ess[:, 2:4], rtol=1e-10)


def test_standard_error_shrinks_as_one_over_root_m():
    task = PairedComparisonTask(condition="none", num_cues=2, num_trials=5)
    batch = task.sample(np.random.default_rng(43), 20)
    small = exact_predictive_with_error(task, batch.cues, batch.targets, num_samples=2**12, seed=1).std_error
    large = exact_predictive_with_error(task, batch.cues, batch.targets, num_samples=2**16, seed=1).std_error
    assert 3.0 < np.median(small / large) < 5.5  # sqrt(16) = 4


# ------------------------------------------------------------------ registry
def test_registered_beside_the_baselines():
    task = PairedComparisonTask(condition="ranking", num_cues=4, num_trials=4)
    batch = task.sample(np.random.default_rng(50), 3)
    outputs = BASELINES["exact_bayes_ranking"](batch.cues, batch.targets, task.noise_std, num_samples=2**15)
    assert isinstance(outputs, BaselineOutputs) and outputs.prob.shape == (4, 3) and outputs.mean.shape == (4, 3, 4)
    np.testing.assert_allclose(outputs.prob, exact_predictive(task, batch.cues, batch.targets, num_samples=2**15), rtol=1e-12)
    np.testing.assert_allclose(outputs.mean[0], 0.0, atol=0.02)  # prior mean of a sign-symmetric prior
    for name in ("probit_learner", "equal_weighting", "single_cue", "best_cue"):
        assert name in BASELINES


# ------------------------------------------------------------------ (c) bad input
def test_bad_input_raises_clear_errors():
    task = PairedComparisonTask(condition="none", num_cues=2, num_trials=3)
    cues, targets = np.zeros((3, 2, 2)), np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"cues must have shape \[T, B, K\].*\(3, 2\)"):
        exact_predictive(task, cues[..., 0], targets)
    with pytest.raises(ValueError, match=r"targets must have shape \[T, B\] = \(3, 2\).*\(2, 3\)"):
        exact_predictive(task, cues, targets.T)
    with pytest.raises(ValueError, match="3 cues.*num_cues = 2"):
        exact_predictive(task, np.zeros((3, 2, 3)), targets)
    with pytest.raises(ValueError, match="condition must be one of 'ranking', 'direction', 'none'; got 'rank'"):
        posterior_predictive(cues, targets, "rank")
    with pytest.raises(ValueError, match=r"targets must be 0 or 1, found \[0.5\]"):
        exact_predictive(task, cues, targets + 0.5)
    with pytest.raises(ValueError, match="finite"):
        exact_predictive(task, np.full((3, 2, 2), np.nan), targets)
    with pytest.raises(ValueError, match="num_samples must lie in"):
        exact_predictive(task, cues, targets, num_samples=0)
    with pytest.raises(ValueError, match="noise_std must be > 0"):
        posterior_predictive(cues, targets, "none", noise_std=0.0)
    with pytest.raises(ValueError, match="task must be a PairedComparisonTask, got dict"):
        exact_predictive({"condition": "none"}, cues, targets)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        exact_predictive(task, cues, targets, seed=-1)
