"""The drifting-mean Gaussian task against exact references: dense Gaussian conditioning and the generative process."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import linalg, stats

from cogmeta import DriftingMeanTask, GaussianMeanTask
from cogmeta.predictive import nll
from cogmeta.tasks import TASKS, draw_noise, make_task, task_fields

#: Parameter sets: defaults, a shifted and scaled prior, no drift, drift larger than the noise, one step.
VARIANTS = [
    DriftingMeanTask(),
    DriftingMeanTask(prior_mean=-0.7, prior_std=1.8, noise_std=0.6, drift_std=0.45, sequence_length=12),
    DriftingMeanTask(prior_mean=0.4, prior_std=0.5, noise_std=1.3, drift_std=0.0, sequence_length=6),
    DriftingMeanTask(prior_mean=2.0, prior_std=0.3, noise_std=0.4, drift_std=1.7, sequence_length=8),
    DriftingMeanTask(sequence_length=1),
]


def joint_moments(task: DriftingMeanTask) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[T]`` and covariance ``[T, T]`` of (x_1..x_T), from the generative process.

    mu_t = mu_1 + d (e_1 + ... + e_{t-1}), so Cov(mu_s, mu_t) = s0^2 + d^2 (min(s, t) - 1) (1-based), and
    x_t = mu_t + sigma n_t adds sigma^2 on the diagonal.
    """
    steps = np.arange(1, task.sequence_length + 1)
    cov = task.prior_std**2 + task.drift_std**2 * (np.minimum.outer(steps, steps) - 1.0)
    cov = cov + task.noise_std**2 * np.eye(task.sequence_length)
    return np.full(task.sequence_length, task.prior_mean), cov


def dense_predictive(task: DriftingMeanTask, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p(x_{t+1} | x_{1:t}) for every t by conditioning the joint normal, ``[T, B]`` mean and std."""
    mean, cov = joint_moments(task)
    steps, batch = x.shape
    out_mean, out_std = np.empty((steps, batch)), np.empty((steps, batch))
    for t in range(steps):
        if t == 0:
            out_mean[0], out_std[0] = mean[0], math.sqrt(cov[0, 0])
            continue
        factor = linalg.cho_factor(cov[:t, :t])
        weights = linalg.cho_solve(factor, cov[:t, t])  # Sigma_11^{-1} Sigma_12
        out_mean[t] = mean[t] + weights @ (x[:t] - mean[:t, None])
        out_std[t] = math.sqrt(cov[t, t] - cov[t, :t] @ weights)
    return out_mean, out_std


@pytest.mark.parametrize("task", VARIANTS, ids=lambda task: f"d{task.drift_std}-T{task.sequence_length}")
def test_kalman_predictive_equals_dense_gaussian_conditioning(task):
    rng = np.random.default_rng(7)
    observations = task.sample(rng, 64).observations
    # and a few sequences far out in the tails, where a wrong gain would show most
    observations[:, :4] = rng.normal(0.0, 25.0, (task.sequence_length, 4, 1))
    kalman = task.posterior_predictive(observations)
    mean, std = dense_predictive(task, observations[..., 0])
    assert kalman["mean"].shape == kalman["std"].shape == (task.sequence_length, 64)
    np.testing.assert_allclose(kalman["mean"], mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kalman["std"], std, rtol=1e-12, atol=0)


def test_no_drift_is_the_stationary_gaussian_task():
    task = DriftingMeanTask(prior_mean=0.3, prior_std=1.2, noise_std=0.8, drift_std=0.0, sequence_length=7)
    stationary = GaussianMeanTask(prior_mean=0.3, prior_std=1.2, noise_std=0.8, sequence_length=7)
    observations = task.sample(np.random.default_rng(1), 32).observations
    for name in ("mean", "std"):
        np.testing.assert_allclose(task.posterior_predictive(observations)[name],
                                   stationary.posterior_predictive(observations)[name], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(task.expected_nll(), stationary.expected_nll(), rtol=1e-13)


def test_known_values_of_the_default_task():
    """P_0 = 1; P_1 = 1/2 + 0.09 = 0.59; v_t = P_t + 1; the fixed point solves P = P / (P + 1) + 0.09."""
    variance = DriftingMeanTask().predictive_variance()
    np.testing.assert_allclose(variance[:2], [2.0, 1.59], rtol=1e-15)
    fixed = (0.09 + math.sqrt(0.09**2 + 4 * 0.09)) / 2  # P^2 - d^2 P - d^2 = 0
    long = DriftingMeanTask(sequence_length=200).predictive_variance()
    assert long[-1] == pytest.approx(fixed + 1.0, rel=1e-12)
    assert np.all(np.diff(variance) < 0)  # the filter grows more certain, down to the fixed point


def test_sampler_moments_match_the_generative_process():
    """Mean and covariance of (x_1..x_T), and the latent path, within 5 standard errors of the exact values."""
    task = VARIANTS[1]
    batch = 100_000
    sample = task.sample(np.random.default_rng(11), batch)
    x, path = sample.observations[..., 0], sample.latent
    assert x.shape == path.shape == (task.sequence_length, batch)
    mean, cov = joint_moments(task)
    np.testing.assert_array_less(np.abs(x.mean(axis=1) - mean), 5 * np.sqrt(np.diag(cov) / batch))
    # the sample covariance of a normal vector: Var(S_st) = (C_ss C_tt + C_st^2) / n
    sample_cov = np.cov(x)
    standard_error = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / batch)
    worst = np.max(np.abs(sample_cov - cov) / standard_error)
    assert worst < 5, f"sample covariance is {worst:.1f} standard errors from the exact one"
    # the latent path: mu_1 ~ N(m0, s0^2), increments ~ N(0, d^2), x - mu ~ N(0, sigma^2), all independent
    assert stats.kstest(path[0], stats.norm(task.prior_mean, task.prior_std).cdf).pvalue > 1e-3
    assert stats.kstest(np.diff(path, axis=0).ravel(), stats.norm(0, task.drift_std).cdf).pvalue > 1e-3
    assert stats.kstest((x - path).ravel(), stats.norm(0, task.noise_std).cdf).pvalue > 1e-3
    assert abs(np.corrcoef(np.diff(path, axis=0)[0], path[0])[0, 1]) < 5 / math.sqrt(batch)


def test_expected_nll_is_the_mean_bayes_nll():
    task = VARIANTS[1]
    observations = task.sample(np.random.default_rng(3), 50_000).observations
    losses = nll(task.family, task.posterior_predictive(observations), observations)
    error = 5 * losses.std(axis=1) / math.sqrt(losses.shape[1])
    np.testing.assert_array_less(np.abs(losses.mean(axis=1) - task.expected_nll()), error)


def test_transform_is_deterministic_in_the_noise_dtype():
    task = VARIANTS[1]
    for dtype in (np.float32, np.float64):
        noise = draw_noise(task.noise_spec(5), np.random.default_rng(0), dtype)
        assert noise["drift"].shape == (task.sequence_length - 1, 5)
        first, second = task.transform(noise), task.transform(noise)
        assert first.observations.dtype == first.latent.dtype == dtype
        np.testing.assert_array_equal(first.observations, second.observations)
    one = DriftingMeanTask(sequence_length=1).sample(np.random.default_rng(0), 3)
    assert one.observations.shape == (1, 3, 1) and one.latent.shape == (1, 3)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("drift_std", -0.1, r"DriftingMeanTask\.drift_std must lie in \[0\.0, 1000000\.0\], got -0\.1"),
        ("noise_std", 0.0, r"DriftingMeanTask\.noise_std must be > 0 \(valid range: \(0, inf\)\), got 0\.0"),
        ("prior_std", -1.0, r"DriftingMeanTask\.prior_std must be > 0"),
        ("prior_mean", float("nan"), r"DriftingMeanTask\.prior_mean must be finite"),
        ("sequence_length", 0, r"DriftingMeanTask\.sequence_length must lie in \[1, 100000\], got 0"),
        ("sequence_length", 2.5, r"DriftingMeanTask\.sequence_length must be an integer"),
    ],
)
def test_invalid_parameters_name_field_value_and_range(field, value, message):
    with pytest.raises(ValueError, match=message):
        DriftingMeanTask(**{field: value})


def test_registered_and_built_by_name():
    assert TASKS["drift"] is DriftingMeanTask and DriftingMeanTask.family == "gaussian"
    assert task_fields("drift") == ("prior_mean", "prior_std", "noise_std", "drift_std", "sequence_length")
    task = make_task("drift", drift_std=0.5)
    assert task == dataclasses.replace(DriftingMeanTask(), drift_std=0.5)
    with pytest.raises(ValueError, match=r"task 'drift' has no parameter\(s\) alpha"):
        make_task("drift", alpha=1.0)
