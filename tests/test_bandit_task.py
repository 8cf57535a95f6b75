"""Bandit task specs (core only): the reference sampler against the Beta/uniform laws, step and sample_action
against hand-made batches and reward frequencies, and validation.

Statistical checks use fixed seeds: 5 standard errors for means and variances, alpha = 1e-3 for KS tests.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from cogmeta.tasks.bandit import (
    BanditBatch,
    BernoulliBanditTask,
    DependentBanditTask,
    expected_best,
    sample_action,
    step,
)

KS_ALPHA = 1e-3


def test_noise_spec_lists_every_array_with_its_shape():
    spec = BernoulliBanditTask(arms=3, horizon=7, alpha=2.0, beta=5.0).noise_spec(4)
    assert {k: (v.kind, v.shape, v.concentration) for k, v in spec.items()} == {
        "gamma_a": ("gamma", (4, 3), 2.0),
        "gamma_b": ("gamma", (4, 3), 5.0),
        "reward_uniform": ("uniform", (7, 4, 3), None),
        "action_uniform": ("uniform", (7, 4), None),
    }
    spec = DependentBanditTask(horizon=7).noise_spec(4)
    assert {k: (v.kind, v.shape) for k, v in spec.items()} == {
        "uniform_p": ("uniform", (4,)),
        "reward_uniform": ("uniform", (7, 4, 2)),
        "action_uniform": ("uniform", (7, 4)),
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_probabilities_follow_beta_moments_and_law(dtype):
    a, b, batch = 2.0, 5.0, 40_000
    task = BernoulliBanditTask(arms=3, horizon=2, alpha=a, beta=b)
    sample = task.sample(np.random.default_rng(0), batch, dtype)
    p = sample.probabilities
    assert p.shape == (batch, 3) and p.dtype == dtype
    assert sample.reward_uniform.shape == (2, batch, 3) and sample.action_uniform.shape == (2, batch)
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    # sd of the sample variance of a Beta: sqrt((mu4 - var^2) / N), mu4 from the central moments
    mu4 = stats.beta(a, b).expect(lambda x: (x - mean) ** 4)
    for arm in range(3):
        x = p[:, arm].astype(np.float64)
        assert abs(x.mean() - mean) < 5 * math.sqrt(var / batch)
        assert abs(x.var() - var) < 5 * math.sqrt((mu4 - var**2) / batch)
        assert stats.kstest(x, stats.beta(a, b).cdf).pvalue > KS_ALPHA
    # the arms are drawn independently
    assert abs(np.corrcoef(p[:, 0], p[:, 1])[0, 1]) < 5 / math.sqrt(batch)


def test_dependent_probabilities_are_complementary_and_uniform():
    sample = DependentBanditTask(horizon=3).sample(np.random.default_rng(1), 20_000)
    p = sample.probabilities
    assert np.array_equal(p[:, 1], 1 - p[:, 0])
    assert stats.kstest(p[:, 0], stats.uniform().cdf).pvalue > KS_ALPHA
    assert DependentBanditTask.arms == 2


def test_transform_is_the_formula_of_the_docstring():
    task = BernoulliBanditTask(arms=2, horizon=1)
    noise = {
        "gamma_a": np.array([[1.0, 3.0]]),
        "gamma_b": np.array([[3.0, 1.0]]),
        "reward_uniform": np.zeros((1, 1, 2)),
        "action_uniform": np.zeros((1, 1)),
    }
    assert np.array_equal(task.transform(noise).probabilities, [[0.25, 0.75]])
    dep = DependentBanditTask(horizon=1).transform(
        {"uniform_p": np.array([0.125]), "reward_uniform": np.zeros((1, 1, 2)), "action_uniform": np.zeros((1, 1))}
    )
    assert np.array_equal(dep.probabilities, [[0.125, 0.875]])


def test_step_pays_one_exactly_when_the_chosen_uniform_is_below_p():
    batch = BanditBatch(
        probabilities=np.array([[0.3, 0.8], [0.5, 0.1]]),
        reward_uniform=np.array([[[0.29, 0.81], [0.5, 0.05]], [[0.31, 0.79], [0.49, 0.2]]]),
        action_uniform=np.zeros((2, 2)),
    )
    assert step(batch, 0, np.array([0, 0])).tolist() == [1.0, 0.0]  # 0.29 < 0.3; 0.5 < 0.5 is false
    assert step(batch, 0, np.array([1, 1])).tolist() == [0.0, 1.0]
    assert step(batch, 1, np.array([0, 0])).tolist() == [0.0, 1.0]
    assert step(batch, 1, np.array([1, 1])).tolist() == [1.0, 0.0]
    assert expected_best(batch).tolist() == [0.8, 0.5]


def test_reward_frequency_matches_p():
    task = BernoulliBanditTask(arms=3, horizon=20_000)
    batch = task.sample(np.random.default_rng(2), 4)
    for arm in range(3):
        actions = np.full(4, arm)
        rewards = np.stack([step(batch, t, actions) for t in range(task.horizon)])
        p = batch.probabilities[:, arm]
        assert np.all(np.abs(rewards.mean(axis=0) - p) < 5 * np.sqrt(p * (1 - p) / task.horizon + 1e-12))


def test_sample_action_inverse_cdf_edges_and_frequencies():
    probs = np.array([[0.0, 0.5, 0.5]] * 4)
    # first index whose cumulative sum exceeds u: u = 0 skips the empty arm 0, u = 0.5 lands on arm 2
    assert sample_action(probs, np.array([0.0, 0.49, 0.5, 0.999])).tolist() == [1, 1, 2, 2]
    # a cumulative sum that rounds below u near 1 must still give the last arm, never k
    short = np.array([[0.3, 0.3, 0.3999999]])
    assert sample_action(short, np.array([0.99999999])).tolist() == [2]
    rng = np.random.default_rng(3)
    weights = np.array([0.1, 0.2, 0.3, 0.4])
    draws = sample_action(np.tile(weights, (50_000, 1)), rng.random(50_000))
    frequency = np.bincount(draws, minlength=4) / draws.size
    assert np.all(np.abs(frequency - weights) < 5 * np.sqrt(weights * (1 - weights) / draws.size))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"arms": 1}, "arms"),
        ({"arms": 2.0}, "arms"),
        ({"horizon": 0}, "horizon"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -1.0}, "alpha"),
        ({"beta": 0.0}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"alpha": float("inf")}, "alpha"),
    ],
)
def test_bad_bernoulli_bandit_parameters_are_refused_by_name(kwargs, field):
    with pytest.raises(ValueError, match=f"BernoulliBanditTask.{field}"):
        BernoulliBanditTask(**kwargs)


def test_bad_dependent_horizon_and_batch_size_are_refused():
    with pytest.raises(ValueError, match="DependentBanditTask.horizon"):
        DependentBanditTask(horizon=0)
    with pytest.raises(ValueError, match="batch_size"):
        BernoulliBanditTask().noise_spec(0)


def test_step_refuses_actions_and_trials_out_of_range():
    batch = BernoulliBanditTask(arms=3, horizon=5).sample(np.random.default_rng(4), 2)
    for actions in (np.array([0, 3]), np.array([-1, 0])):
        with pytest.raises(ValueError, match=r"actions must lie in \[0, 2\]"):
            step(batch, 0, actions)
    for trial in (-1, 5):
        with pytest.raises(ValueError, match="trial"):
            step(batch, trial, np.array([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        step(batch, 0, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        step(batch, 0, np.array([0, 1, 2]))
