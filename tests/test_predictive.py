"""Predictive families (core only): NLL and exact KL against scipy and numerical integration, and scoring."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from scipy import integrate, stats

from cogmeta.evaluation import (
    Evaluation,
    evaluate,
    held_out_observations,
    score_predictions,
)
from cogmeta.predictive import FAMILIES, OUTPUT_SIZE, kl_divergence, nll
from cogmeta.tasks import CoinTask, GaussianMeanTask


def _gaussian_kl_by_quadrature(mp, sp, mq, sq):
    p, q = stats.norm(mp, sp), stats.norm(mq, sq)
    value, _ = integrate.quad(
        lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), mp - 40 * sp, mp + 40 * sp, points=[mp, mq],
        epsabs=1e-13, epsrel=1e-11, limit=200,
    )
    return value


GAUSSIAN_PAIRS = [
    (0.0, 1.0, 0.0, 1.0),
    (0.0, 1.0, 1.0, 1.0),
    (0.3, 0.5, -1.2, 2.0),
    (2.0, 3.0, 1.5, 0.4),
    (-5.0, 0.1, -5.05, 0.12),
]


@pytest.mark.parametrize("mp, sp, mq, sq", GAUSSIAN_PAIRS)
def test_gaussian_kl_matches_numerical_integration(mp, sp, mq, sq):
    p = {"mean": np.array([[mp]]), "std": np.array([[sp]])}
    q = {"mean": np.array([[mq]]), "std": np.array([[sq]])}
    value = kl_divergence("gaussian", p, q)
    assert value.shape == (1, 1)
    assert value[0, 0] == pytest.approx(_gaussian_kl_by_quadrature(mp, sp, mq, sq), rel=1e-8, abs=1e-12)


def test_gaussian_kl_is_elementwise():
    mp, sp, mq, sq = (np.array([pair[i] for pair in GAUSSIAN_PAIRS]).reshape(5, 1) * np.ones((1, 2)) for i in range(4))
    values = kl_divergence("gaussian", {"mean": mp, "std": sp}, {"mean": mq, "std": sq})
    assert values.shape == (5, 2)
    for i, pair in enumerate(GAUSSIAN_PAIRS):
        assert values[i, 1] == pytest.approx(_gaussian_kl_by_quadrature(*pair), rel=1e-8, abs=1e-12)


def _bernoulli_kl(p, q):
    total = 0.0
    if p > 0:
        total += p * math.log(p / q)
    if p < 1:
        total += (1 - p) * math.log((1 - p) / (1 - q))
    return total


@pytest.mark.parametrize("p, q", [(0.5, 0.5), (0.5, 0.1), (0.9, 0.2), (0.01, 0.99), (0.0, 0.3), (1.0, 0.3), (0.3, 1e-6)])
def test_bernoulli_kl_matches_direct_formula(p, q):
    value = kl_divergence("bernoulli", {"prob": np.array([[p]])}, {"prob": np.array([[q]])})
    assert value[0, 0] == pytest.approx(_bernoulli_kl(p, q), rel=1e-12, abs=1e-15)
    # and the sum over the two outcomes, written with scipy
    reference = sum(
        stats.bernoulli.pmf(x, p) * (stats.bernoulli.logpmf(x, p) - stats.bernoulli.logpmf(x, q))
        for x in (0, 1)
        if stats.bernoulli.pmf(x, p) > 0
    )
    assert value[0, 0] == pytest.approx(reference, rel=1e-10, abs=1e-15)


def test_bernoulli_kl_of_a_saturated_model_is_large_but_finite():
    value = kl_divergence("bernoulli", {"prob": np.array([[0.5, 0.5]])}, {"prob": np.array([[0.0, 1.0]])})
    assert np.all(np.isfinite(value)) and np.all(value > 10)


def test_kl_is_nonnegative_and_zero_only_for_identical_predictives():
    rng = np.random.default_rng(0)
    shape = (7, 300)
    p = {"mean": rng.normal(size=shape), "std": np.exp(rng.normal(size=shape))}
    q = {"mean": rng.normal(size=shape), "std": np.exp(rng.normal(size=shape))}
    assert np.all(kl_divergence("gaussian", p, q) > 0)
    np.testing.assert_allclose(kl_divergence("gaussian", p, p), 0.0, atol=1e-15)
    pb, qb = {"prob": rng.uniform(size=shape)}, {"prob": rng.uniform(size=shape)}
    assert np.all(kl_divergence("bernoulli", pb, qb) > 0)
    np.testing.assert_allclose(kl_divergence("bernoulli", pb, pb), 0.0, atol=1e-15)


def test_gaussian_nll_matches_scipy_logpdf():
    rng = np.random.default_rng(1)
    mean, std = rng.normal(size=(4, 5)), np.exp(rng.normal(size=(4, 5)))
    targets = rng.normal(size=(4, 5, 1)) * 3
    expected = -stats.norm.logpdf(targets[..., 0], mean, std)
    params = {"mean": mean, "std": std}
    np.testing.assert_allclose(nll("gaussian", params, targets), expected, rtol=1e-13)
    np.testing.assert_allclose(nll("gaussian", params, targets[..., 0]), expected, rtol=1e-13)


def test_bernoulli_nll_matches_scipy_logpmf():
    rng = np.random.default_rng(2)
    prob = rng.uniform(0.001, 0.999, size=(4, 5))
    targets = (rng.uniform(size=(4, 5, 1)) < 0.5).astype(np.float32)
    expected = -stats.bernoulli.logpmf(targets[..., 0], prob)
    np.testing.assert_allclose(nll("bernoulli", {"prob": prob}, targets), expected, rtol=1e-12)


def test_unknown_family_is_rejected():
    with pytest.raises(ValueError, match="poisson"):
        nll("poisson", {}, np.zeros((1, 1)))
    with pytest.raises(ValueError, match="poisson"):
        kl_divergence("poisson", {}, {})
    assert set(FAMILIES) == set(OUTPUT_SIZE) and OUTPUT_SIZE == {"gaussian": 2, "bernoulli": 1}


# --------------------------------------------------------------------------------------------------
# scoring (the framework-free half of evaluation)
# --------------------------------------------------------------------------------------------------
def test_score_of_the_exact_predictive_is_zero_kl():
    task = GaussianMeanTask(sequence_length=4)
    observations = held_out_observations(task, 500)
    result = score_predictions(task, observations, task.posterior_predictive(observations))
    np.testing.assert_allclose(result.kl, 0.0, atol=1e-15)
    np.testing.assert_array_equal(result.model_nll, result.bayes_nll)
    np.testing.assert_array_equal(result.expected_nll, task.expected_nll())
    assert result.num_tasks == 500 and result.mean_kl == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("task", [GaussianMeanTask(prior_std=2.0), CoinTask(alpha=2.0, beta=1.0)], ids=lambda t: t.name)
def test_nll_gap_equals_expected_kl(task):
    """Model NLL - Bayes NLL = E[KL(Bayes || model)] (the tutorial's proof), checked by Monte Carlo."""
    observations = held_out_observations(task, 100_000, seed=5)
    exact = task.posterior_predictive(observations)
    if task.family == "gaussian":
        model = {"mean": 0.6 * exact["mean"] + 0.2, "std": 1.3 * exact["std"]}
    else:
        model = {"prob": 0.5 + 0.7 * (exact["prob"] - 0.5)}
    result = score_predictions(task, observations, model)
    gap = nll(task.family, model, observations) - nll(task.family, exact, observations)
    sem = gap.std(axis=1, ddof=1) / math.sqrt(gap.shape[1])
    assert np.all(result.kl > 0)
    assert np.all(np.abs(result.model_nll - result.bayes_nll - result.kl) < 5 * sem)
    np.testing.assert_allclose(result.kl_sem, kl_divergence(task.family, exact, model).std(axis=1, ddof=1) / math.sqrt(100_000))


def test_held_out_observations_are_fixed_by_the_seed():
    task = CoinTask()
    first, again = held_out_observations(task, 50), held_out_observations(task, 50)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, task.sample(np.random.default_rng(20_221_010), 50).observations)
    assert first.shape == (10, 50, 1) and first.dtype == np.float64


def test_evaluation_table_and_csv():
    result = Evaluation(
        kl=np.array([0.5, 0.25]), kl_sem=np.array([0.1, 0.05]), model_nll=np.array([1.5, 1.25]),
        bayes_nll=np.array([1.0, 1.0]), expected_nll=np.array([1.01, 0.99]), num_tasks=10,
    )
    assert result.mean_kl == 0.375
    assert "0.375000" in result.table() and "10 held-out tasks" in result.table()
    rows = list(csv.reader(io.StringIO(result.to_csv())))
    assert rows[0] == ["t", "metric", "value"]
    values = {(int(t), name): float(value) for t, name, value in rows[1:]}
    assert len(values) == 10
    assert values[(1, "kl")] == 0.25 and values[(0, "expected_nll")] == 1.01


def test_evaluate_needs_two_tasks():
    from cogmeta.config import RunConfig

    with pytest.raises(ValueError, match="num_tasks"):
        evaluate(RunConfig(), {}, "torch", num_tasks=1)
