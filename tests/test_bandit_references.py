"""Bandit references against independent computations: the Bayes-optimal DP against hand results, a memoised
brute-force recursion and Monte Carlo; Gittins indices against Gittins' published table and a bisection with a
different truncation; the classic policies against the optimum.

Monte-Carlo checks use fixed seeds and 4 standard errors.
"""

from __future__ import annotations

import functools
import math
import time

import numpy as np
import pytest
from scipy import integrate

from cogmeta.baselines.bandit_dp import (
    dependent_expected_total_reward,
    expected_total_reward,
    solve_dependent,
    solve_two_armed,
)
from cogmeta.baselines.bandit_policies import (
    best_arm_probability,
    play,
    regret_per_trial,
    total_expected_reward,
)
from cogmeta.baselines.gittins import GittinsPolicy, gittins_index, gittins_table
from cogmeta.tasks.bandit import BanditBatch, BernoulliBanditTask, DependentBanditTask


# --------------------------------------------------------------------------------------------------
# Independent two-armed bandit: exact DP
# --------------------------------------------------------------------------------------------------
def _brute_force(horizon, a, b):
    """V(s1, f1, s2, f2) by plain memoised recursion over histories' counts."""

    @functools.lru_cache(maxsize=None)
    def value(s1, f1, s2, f2):
        if s1 + f1 + s2 + f2 == horizon:
            return 0.0
        p1 = (a + s1) / (a + b + s1 + f1)
        p2 = (a + s2) / (a + b + s2 + f2)
        q1 = p1 * (1 + value(s1 + 1, f1, s2, f2)) + (1 - p1) * value(s1, f1 + 1, s2, f2)
        q2 = p2 * (1 + value(s1, f1, s2 + 1, f2)) + (1 - p2) * value(s1, f1, s2, f2 + 1)
        return max(q1, q2)

    return value


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (2.0, 3.0), (0.5, 0.25)])
def test_horizon_one_and_two_by_hand(a, b):
    mean = a / (a + b)
    assert expected_total_reward(1, a, b) == pytest.approx(mean, rel=1e-15)
    # pull either arm (same prior), then the better posterior mean: after a success the pulled arm's
    # (a + 1) / (a + b + 1) > mean; after a failure the untouched arm's mean > a / (a + b + 1)
    second = mean * (a + 1) / (a + b + 1) + (1 - mean) * mean
    assert expected_total_reward(2, a, b) == pytest.approx(mean + second, rel=1e-14)
    if (a, b) == (1.0, 1.0):
        assert expected_total_reward(2) == pytest.approx(13 / 12, rel=1e-15)


@pytest.mark.parametrize("horizon, a, b", [(3, 1.0, 1.0), (6, 2.0, 3.0), (8, 1.0, 1.0), (8, 0.5, 1.5)])
def test_dp_matches_brute_force_recursion_in_every_state(horizon, a, b):
    solution, value = solve_two_armed(horizon, a, b), _brute_force(horizon, a, b)
    assert solution.expected_total_reward == pytest.approx(value(0, 0, 0, 0), rel=1e-13)
    for t in range(horizon):
        states = [(s1, f1, s2, t - s1 - f1 - s2) for s1 in range(t + 1) for f1 in range(t + 1 - s1)
                  for s2 in range(t + 1 - s1 - f1)]
        s1, f1, s2, f2 = np.array(states).T
        expected = np.array([value(*x) for x in states])
        assert np.allclose(solution.value(s1, f1, s2, f2), expected, rtol=1e-13, atol=1e-14)
        # the chosen arm's Q-value is the maximum (ties may go either way)
        actions = solution.optimal_action(s1, f1, s2, f2)
        for state, action, best in zip(states, actions, expected):
            x1, y1, x2, y2 = state
            if action == 0:
                p = (a + x1) / (a + b + x1 + y1)
                q = p * (1 + value(x1 + 1, y1, x2, y2)) + (1 - p) * value(x1, y1 + 1, x2, y2)
            else:
                p = (a + x2) / (a + b + x2 + y2)
                q = p * (1 + value(x1, y1, x2 + 1, y2)) + (1 - p) * value(x1, y1, x2, y2 + 1)
            assert q == pytest.approx(best, rel=1e-12, abs=1e-14)


def test_dp_horizon_100_against_monte_carlo_and_classic_policies():
    start = time.perf_counter()
    solution = solve_two_armed(100)
    solved = time.perf_counter() - start
    per_trial = solution.expected_reward_per_trial()
    print(f"\nDP horizon 100: solved in {solved:.2f} s, forward pass in {time.perf_counter() - start - solved:.2f} s; "
          f"V0 = {solution.expected_total_reward:.6f}")
    assert per_trial.sum() == pytest.approx(solution.expected_total_reward, rel=1e-12)
    assert per_trial[0] == pytest.approx(0.5, rel=1e-14)
    assert per_trial[1] == pytest.approx(7 / 12, rel=1e-14)  # see test_horizon_one_and_two_by_hand
    # no policy beats an oracle: E[max(p_0, p_1)] = 2/3 for two uniform arms (it need not rise every trial)
    assert np.all(per_trial < 2 / 3) and per_trial[-1] > 0.66

    task = BernoulliBanditTask(arms=2, horizon=100)
    batch = task.sample(np.random.default_rng(0), 200_000)
    result = play("bayes_optimal", task, batch)
    totals = total_expected_reward(batch, result.actions)
    error = totals.std() / math.sqrt(totals.size)
    print(f"DP policy Monte Carlo (200k bandits): {totals.mean():.4f} +- {error:.4f}")
    assert abs(totals.mean() - solution.expected_total_reward) < 4 * error
    realised = result.rewards.sum(axis=0)
    assert abs(realised.mean() - solution.expected_total_reward) < 4 * realised.std() / math.sqrt(realised.size)
    per_trial_mc = result.rewards.mean(axis=1)
    assert np.all(np.abs(per_trial_mc - per_trial) < 4.5 * np.sqrt(per_trial * (1 - per_trial) / totals.size))

    sub = BanditBatch(batch.probabilities[:20_000], batch.reward_uniform[:, :20_000], batch.action_uniform[:, :20_000])
    optimal = total_expected_reward(sub, play("bayes_optimal", task, sub).actions)
    for name in ("thompson", "ucb1", "greedy", "random"):
        other = total_expected_reward(sub, play(name, task, sub, rng=np.random.default_rng(1)).actions)
        gap = optimal - other  # same bandits, so the paired difference is precise
        gap_error = gap.std() / math.sqrt(gap.size)
        print(f"{name}: {other.mean():.3f}; optimal - {name} = {gap.mean():.3f} +- {gap_error:.3f}")
        assert other.mean() < solution.expected_total_reward + 4 * other.std() / math.sqrt(other.size)
        assert gap.mean() > -4 * gap_error


def test_dp_refuses_bad_arguments():
    for kwargs, field in (({"horizon": 0}, "horizon"), ({"horizon": 5, "alpha": 0.0}, "alpha"),
                          ({"horizon": 5, "beta": -1.0}, "beta")):
        with pytest.raises(ValueError, match=field):
            solve_two_armed(**kwargs)
    with pytest.raises(ValueError, match="trials done"):
        solve_two_armed(3).optimal_action(1, 1, 1, 0)


# --------------------------------------------------------------------------------------------------
# Dependent bandit
# --------------------------------------------------------------------------------------------------
def _posterior_mean_by_quadrature(h, m):
    """E[p_0 | data] with a uniform prior and likelihood p^h (1 - p)^m, by numerical integration."""
    weight = integrate.quad(lambda p: p**h * (1 - p) ** m, 0, 1, epsabs=0, epsrel=1e-13)[0]
    return integrate.quad(lambda p: p ** (h + 1) * (1 - p) ** m, 0, 1, epsabs=0, epsrel=1e-13)[0] / weight


def test_dependent_dp_matches_brute_force_with_quadrature_posteriors():
    horizon = 6

    @functools.lru_cache(maxsize=None)
    def value(s1, f1, s2, f2):
        if s1 + f1 + s2 + f2 == horizon:
            return 0.0
        q = _posterior_mean_by_quadrature(s1 + f2, f1 + s2)
        q1 = q * (1 + value(s1 + 1, f1, s2, f2)) + (1 - q) * value(s1, f1 + 1, s2, f2)
        q2 = (1 - q) * (1 + value(s1, f1, s2 + 1, f2)) + q * value(s1, f1, s2, f2 + 1)
        return max(q1, q2)

    assert dependent_expected_total_reward(horizon) == pytest.approx(value(0, 0, 0, 0), rel=1e-10)


def test_dependent_value_is_sum_of_expected_max_posterior_mean():
    # h (evidence for p_0) is uniform on {0..t} under the prior whatever is played, so greedy earns
    # E[max(q, 1 - q)] with q = (1 + h) / (2 + t) at trial t
    horizon = 100
    closed = sum(np.mean(np.maximum(1 + np.arange(t + 1), t + 1 - np.arange(t + 1)) / (t + 2)) for t in range(horizon))
    solution = solve_dependent(horizon)
    assert solution.expected_total_reward == pytest.approx(closed, rel=1e-13)
    assert solution.expected_reward_per_trial().sum() == pytest.approx(closed, rel=1e-13)
    task = DependentBanditTask(horizon)
    batch = task.sample(np.random.default_rng(5), 50_000)
    totals = total_expected_reward(batch, play("bayes_optimal", task, batch).actions)
    assert abs(totals.mean() - closed) < 4 * totals.std() / math.sqrt(totals.size)
    thompson = total_expected_reward(batch, play("thompson", task, batch, rng=np.random.default_rng(6)).actions)
    print(f"\ndependent n=100: optimal {closed:.4f}, MC {totals.mean():.3f}; thompson {thompson.mean():.3f}")
    assert (totals - thompson).mean() > 0
    # arm choice follows the evidence: arm 0 iff s1 + f2 > f1 + s2
    assert solution.optimal_action(np.array([2, 1, 0]), 0, 0, np.array([0, 0, 1])).tolist() == [0, 0, 0]
    assert solution.optimal_action(0, 1, 0, 0).tolist() == 1


# --------------------------------------------------------------------------------------------------
# Gittins indices
# --------------------------------------------------------------------------------------------------
def test_gittins_table_values_for_gamma_09():
    # Gittins, Glazebrook & Weber (2011), Beta(1, 1) prior, gamma = 0.9, as reproduced in Christian &
    # Griffiths (2016, "Algorithms to live by"): 0-0 -> 0.7029, 1-1 -> 0.6346, 2-2 -> 0.6010, 9-1 -> 0.8695
    got = gittins_index(np.array([0, 1, 2, 9]), np.array([0, 1, 2, 1]), 0.9)
    assert np.allclose(got, [0.7029, 0.6346, 0.6010, 0.8695], atol=5e-5)


def _bisection_index(s, f, gamma, a, b):
    """Index by bisection on lambda, truncating with forced retirement at a depth where the continuation value
    it drops, at most gamma^depth / (1 - gamma), is below 1e-11 (a different truncation from the library's)."""
    depth = math.ceil(math.log(1e-11 * (1 - gamma)) / math.log(gamma))
    lo, hi = (a + s) / (a + b + s + f), 1.0
    for _ in range(60):
        lam = (lo + hi) / 2
        retire = lam / (1 - gamma)
        value = np.full(depth + 1, retire)
        for d in range(depth - 1, -1, -1):
            p = (a + s + np.arange(d + 1)) / (a + b + s + f + d)
            cont = p * (1 + gamma * value[1:]) + (1 - p) * gamma * value[:-1]
            value = cont if d == 0 else np.maximum(retire, cont)
        lo, hi = (lam, hi) if value[0] > retire else (lo, lam)
    return (lo + hi) / 2


@pytest.mark.parametrize("gamma, a, b", [(0.9, 1.0, 1.0), (0.7, 1.0, 1.0), (0.8, 2.0, 3.0), (0.95, 0.5, 0.5)])
def test_gittins_calibration_matches_bisection(gamma, a, b):
    table = gittins_table(gamma, a, b, max_total=4)
    for s, f in ((0, 0), (1, 0), (0, 3), (2, 2), (4, 0)):
        assert table[s, f] == pytest.approx(_bisection_index(s, f, gamma, a, b), abs=1e-8), (s, f)


def test_gittins_indices_exceed_the_mean_and_are_monotone():
    table = gittins_table(0.9, max_total=30)
    s, f = np.meshgrid(np.arange(31), np.arange(31), indexing="ij")
    inside = s + f <= 30
    assert np.all(table[inside] >= ((1 + s) / (2 + s + f))[inside])
    assert np.all(np.diff(table, axis=0)[inside[1:]] > 0)  # one more success: larger index
    assert np.all(np.diff(table, axis=1)[inside[:, 1:]] < 0)  # one more failure: smaller index


@pytest.mark.parametrize("gamma", [0.0, 1.0, 1.5, -0.1, float("nan")])
def test_gittins_refuses_gamma_outside_open_unit_interval(gamma):
    with pytest.raises(ValueError, match="gamma"):
        gittins_index(0, 0, gamma)
    with pytest.raises(ValueError, match="gamma"):
        GittinsPolicy(gamma)


def test_gittins_and_other_policies_on_five_arms():
    task = BernoulliBanditTask(arms=5, horizon=100)
    batch = task.sample(np.random.default_rng(7), 10_000)
    means = {}
    for name in ("random", "greedy", "thompson", "ucb1", "gittins"):
        actions = play(name, task, batch, rng=np.random.default_rng(8), gamma=0.9).actions
        means[name] = total_expected_reward(batch, actions).mean()
        regret = regret_per_trial(batch, actions)
        assert regret.shape == (100, 10_000) and np.all(regret >= 0)
        assert best_arm_probability(batch, actions).shape == (100,)
    print("\nk=5, n=100:", {k: round(v, 3) for k, v in means.items()})
    assert means["random"] == pytest.approx(50.0, abs=0.5)
    assert means["gittins"] > max(means["thompson"], means["ucb1"], means["greedy"], means["random"])
    with pytest.raises(ValueError, match="two-armed"):
        play("bayes_optimal", task, batch)
