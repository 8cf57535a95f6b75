"""Task specs (core only): exact predictives, expected NLL, the numpy reference sampler, validation.

Every reference here is computed independently of the library's formulas: the Gaussian predictive by
a sequential (Kalman-form) update and by conditioning the joint Gaussian of x_{1:t+1}; the coin
predictive and expected NLL by numerical integration over theta and enumeration of all sequences.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re

import numpy as np
import pytest
from sampler_checks import assert_coin_sample, assert_gaussian_sample
from scipy import integrate, special, stats

from cogmeta.tasks import (
    CoinTask,
    GaussianMeanTask,
    make_task,
    model_inputs,
    task_fields,
    task_from_dict,
    task_to_dict,
)

KS_ALPHA = 1e-3

# A Gaussian task whose parameters are all different, so that a swapped prior_std/noise_std or a
# dropped prior_mean cannot go unnoticed.
GAUSSIAN = GaussianMeanTask(prior_mean=0.7, prior_std=1.3, noise_std=0.6, sequence_length=5)
COIN = CoinTask(alpha=2.0, beta=5.0, sequence_length=6)


def _gaussian_sequences(task, batch, seed):
    return task.sample(np.random.default_rng(seed), batch).observations


# --------------------------------------------------------------------------------------------------
# Gaussian: exact predictive
# --------------------------------------------------------------------------------------------------
def _kalman_predictive(task, sequence):
    """Sequential conjugate update in variance (Kalman) form: predictive before each observation."""
    mean, var = task.prior_mean, task.prior_std**2
    means, stds = [], []
    for x in sequence:
        means.append(mean)
        stds.append(math.sqrt(var + task.noise_std**2))
        gain = var / (var + task.noise_std**2)
        mean = mean + gain * (x - mean)
        var = (1.0 - gain) * var
    return np.array(means), np.array(stds)


def _joint_conditional(task, prefix):
    """p(x_{t+1} | x_{1:t}) by conditioning the joint Gaussian N(m0 1, s0^2 11^T + sigma^2 I)."""
    t = len(prefix)
    cov = task.prior_std**2 * np.ones((t + 1, t + 1)) + task.noise_std**2 * np.eye(t + 1)
    if t == 0:
        return task.prior_mean, math.sqrt(cov[0, 0])
    s11, s12, s22 = cov[:t, :t], cov[:t, t], cov[t, t]
    weights = np.linalg.solve(s11, s12)
    mean = task.prior_mean + weights @ (np.asarray(prefix) - task.prior_mean)
    return mean, math.sqrt(s22 - s12 @ weights)


def test_gaussian_predictive_matches_sequential_update():
    observations = _gaussian_sequences(GAUSSIAN, 16, seed=1)
    predictive = GAUSSIAN.posterior_predictive(observations)
    assert predictive["mean"].shape == predictive["std"].shape == (5, 16)
    assert predictive["mean"].dtype == np.float64
    for b in range(16):
        mean, std = _kalman_predictive(GAUSSIAN, observations[:, b, 0])
        np.testing.assert_allclose(predictive["mean"][:, b], mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(predictive["std"][:, b], std, rtol=1e-12)


def test_gaussian_predictive_matches_joint_gaussian_conditioning():
    observations = _gaussian_sequences(GAUSSIAN, 3, seed=2)
    predictive = GAUSSIAN.posterior_predictive(observations)
    for b in range(3):
        x = observations[:, b, 0]
        for t in range(GAUSSIAN.sequence_length):
            mean, std = _joint_conditional(GAUSSIAN, x[:t])
            assert predictive["mean"][t, b] == pytest.approx(mean, rel=1e-10, abs=1e-12)
            assert predictive["std"][t, b] == pytest.approx(std, rel=1e-10)


def test_gaussian_predictive_tutorial_special_case():
    """m0 = 0, s0 = sigma = 1: N(sum x / (t + 1), 1 + 1 / (t + 1)) (tutorial cell 2)."""
    task = GaussianMeanTask()
    assert task.sequence_length == 7
    observations = _gaussian_sequences(task, 8, seed=3)
    predictive = task.posterior_predictive(observations)
    x = observations[..., 0]
    for t in range(7):
        np.testing.assert_allclose(predictive["mean"][t], x[:t].sum(axis=0) / (t + 1), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(predictive["std"][t], math.sqrt(1 + 1 / (t + 1)), rtol=1e-14)


def test_gaussian_predictive_variance_is_the_squared_predictive_std():
    observations = _gaussian_sequences(GAUSSIAN, 2, seed=4)
    _, std = _kalman_predictive(GAUSSIAN, observations[:, 0, 0])
    np.testing.assert_allclose(GAUSSIAN.predictive_variance(), std**2, rtol=1e-12)


def test_gaussian_predictive_accepts_float32_and_rejects_bad_shapes():
    observations = _gaussian_sequences(GAUSSIAN, 4, seed=5)
    as32 = GAUSSIAN.posterior_predictive(observations.astype(np.float32))
    assert as32["mean"].dtype == np.float64
    with pytest.raises(ValueError, match="sequence_length=5"):
        GAUSSIAN.posterior_predictive(observations[:4])
    with pytest.raises(ValueError, match=re.escape("[T, B, 1]")):
        GAUSSIAN.posterior_predictive(observations[..., 0])
    with pytest.raises(ValueError, match="float"):
        GAUSSIAN.posterior_predictive(np.zeros((5, 2, 1), dtype=np.int64))


# --------------------------------------------------------------------------------------------------
# Gaussian: expected NLL
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t, value", [(1, 1.62167), (2, 1.56278), (3, 1.53051), (6, 1.48570)])
def test_gaussian_expected_nll_matches_tasks_md(t, value):
    """Values computed in references/tasks.md (rounded to 5 decimals)."""
    assert GaussianMeanTask().expected_nll()[t] == pytest.approx(value, abs=6e-6)


def test_gaussian_expected_nll_at_t0_is_the_prior_predictive_entropy():
    task = GAUSSIAN
    marginal = stats.norm(task.prior_mean, math.hypot(task.prior_std, task.noise_std))
    assert task.expected_nll()[0] == pytest.approx(marginal.entropy(), rel=1e-12)


def _monte_carlo_nll(task, batch, seed):
    observations = task.sample(np.random.default_rng(seed), batch).observations
    predictive = task.posterior_predictive(observations)
    x = observations[..., 0]
    if task.family == "gaussian":
        values = -stats.norm.logpdf(x, predictive["mean"], predictive["std"])
    else:
        values = -stats.bernoulli.logpmf(x, predictive["prob"])
    return values.mean(axis=1), values.std(axis=1, ddof=1) / math.sqrt(batch)


@pytest.mark.parametrize("task", [GaussianMeanTask(), GAUSSIAN, COIN, CoinTask()], ids=repr)
def test_expected_nll_matches_monte_carlo(task):
    mean, sem = _monte_carlo_nll(task, 200_000, seed=6)
    expected = task.expected_nll()
    assert expected.shape == (task.sequence_length,)
    # (+1e-12: at t = 0 the coin's NLL is the same for every task, so its standard error is 0)
    assert np.all(np.abs(mean - expected) < 4.5 * sem + 1e-12), (mean, expected, sem)


# --------------------------------------------------------------------------------------------------
# Coin: exact predictive and expected NLL
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _coin_evidence(alpha, beta, heads, tails):
    """P(a particular sequence with these counts) = int theta^h (1-theta)^t Beta(theta; a, b) dtheta.

    The Beta density's endpoint singularities (a or b < 1) go into quad's algebraic weight
    theta^(a-1) (1-theta)^(b-1); the normalising constant is the same integral with h = t = 0.
    """

    def kernel(h, t):
        value, _ = integrate.quad(
            lambda theta: theta**h * (1 - theta) ** t, 0, 1, weight="alg", wvar=(alpha - 1, beta - 1),
            epsabs=0, epsrel=1e-13,
        )
        return value

    return kernel(heads, tails) / kernel(0, 0)


def test_coin_predictive_matches_beta_function_ratio():
    observations = COIN.sample(np.random.default_rng(7), 32).observations
    prob = COIN.posterior_predictive(observations)["prob"]
    assert prob.shape == (6, 32)
    for b in range(32):
        x = observations[:, b, 0].astype(int)
        for t in range(6):
            k = int(x[:t].sum())
            # P(x_{t+1} = 1 | x_{1:t}) = B(a + k + 1, b + t - k) / B(a + k, b + t - k)
            log_ratio = special.betaln(COIN.alpha + k + 1, COIN.beta + t - k) - special.betaln(
                COIN.alpha + k, COIN.beta + t - k
            )
            assert prob[t, b] == pytest.approx(math.exp(log_ratio), rel=1e-12)
            assert prob[t, b] == pytest.approx((COIN.alpha + k) / (COIN.alpha + COIN.beta + t), rel=1e-14)


def test_coin_predictive_of_uniform_prior_is_laplace_rule():
    task = CoinTask(sequence_length=4)
    observations = np.array([1.0, 1.0, 0.0, 1.0])[:, None, None]
    np.testing.assert_allclose(task.posterior_predictive(observations)["prob"][:, 0], [1 / 2, 2 / 3, 3 / 4, 3 / 5])


@pytest.mark.parametrize("alpha, beta", [(1.0, 1.0), (2.0, 5.0), (0.5, 0.3)])
def test_coin_expected_nll_matches_enumeration_of_all_sequences(alpha, beta):
    task = CoinTask(alpha=alpha, beta=beta, sequence_length=8)
    expected = task.expected_nll()
    for t in range(8):
        total = 0.0
        for sequence in itertools.product((0, 1), repeat=t):
            k = sum(sequence)
            p_sequence = _coin_evidence(alpha, beta, k, t - k)
            p_heads = _coin_evidence(alpha, beta, k + 1, t - k) / p_sequence
            total += p_sequence * -(p_heads * math.log(p_heads) + (1 - p_heads) * math.log(1 - p_heads))
        assert expected[t] == pytest.approx(total, rel=1e-9), t
    assert expected[0] == pytest.approx(stats.bernoulli(alpha / (alpha + beta)).entropy(), rel=1e-12)


def test_coin_predictive_rejects_non_binary_observations():
    observations = np.full((6, 2, 1), 0.5)
    with pytest.raises(ValueError, match="0 or 1"):
        COIN.posterior_predictive(observations)


# --------------------------------------------------------------------------------------------------
# numpy reference sampler against the generative process
# --------------------------------------------------------------------------------------------------
def test_gaussian_sampler_matches_the_generative_process():
    task, batch = GAUSSIAN, 100_000
    sample = task.sample(np.random.default_rng(8), batch)
    assert sample.observations.shape == (5, batch, 1) and sample.latent.shape == (batch,)
    assert_gaussian_sample(task, sample.observations[..., 0], sample.latent)


@pytest.mark.parametrize("task", [GAUSSIAN, COIN], ids=repr)
def test_sampler_is_seeded_and_keeps_dtype(task):
    first = task.sample(np.random.default_rng(10), 5, np.float32)
    again = task.sample(np.random.default_rng(10), 5, np.float32)
    other = task.sample(np.random.default_rng(11), 5, np.float32)
    assert first.observations.dtype == np.float32 and first.latent.dtype == np.float32
    np.testing.assert_array_equal(first.observations, again.observations)
    assert not np.array_equal(first.latent, other.latent)
    with pytest.raises(TypeError, match="default_rng"):
        task.sample(np.random.RandomState(0), 5)


def test_coin_sampler_matches_the_generative_process():
    task, batch = COIN, 100_000
    sample = task.sample(np.random.default_rng(9), batch)
    assert set(np.unique(sample.observations)) == {0.0, 1.0}
    assert_coin_sample(task, sample.observations[..., 0], sample.latent)


def test_gaussian_transform_formula():
    z_latent, z_observation = np.array([0.5, -1.0]), np.array([[1.0, 2.0], [-0.5, 0.0]])
    task = GaussianMeanTask(prior_mean=2.0, prior_std=3.0, noise_std=0.5, sequence_length=2)
    batch = task.transform({"latent": z_latent, "observation": z_observation})
    np.testing.assert_array_equal(batch.latent, [3.5, -1.0])
    np.testing.assert_array_equal(batch.observations[..., 0], [[4.0, 0.0], [3.25, -1.0]])


def test_coin_transform_formula():
    task = CoinTask(alpha=2.0, beta=3.0, sequence_length=2)
    noise = {"gamma_a": np.array([1.0, 3.0]), "gamma_b": np.array([3.0, 1.0]), "uniform": np.array([[0.2, 0.8], [0.3, 0.7]])}
    batch = task.transform(noise)
    np.testing.assert_array_equal(batch.latent, [0.25, 0.75])
    np.testing.assert_array_equal(batch.observations[..., 0], [[1.0, 0.0], [0.0, 1.0]])


# --------------------------------------------------------------------------------------------------
# model inputs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_model_inputs_layout(dtype):
    observations = (np.arange(12, dtype=dtype).reshape(4, 3, 1) + 1) / 7
    inputs = model_inputs(observations)
    assert inputs.shape == (4, 3, 2) and inputs.dtype == dtype
    for b in range(3):
        assert list(inputs[0, b]) == [1, 0]
        for t in range(1, 4):
            assert list(inputs[t, b]) == [0, observations[t - 1, b, 0]]


def test_model_inputs_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=re.escape("[T, B, 1]")):
        model_inputs(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=re.escape("[T, B, 1]")):
        model_inputs(np.zeros((4, 3, 2)))


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
NOT_REAL = [float("nan"), float("inf"), -float("inf"), True, "1.0", None]
POSITIVE_BAD = [0.0, -1.0, 0, -2] + NOT_REAL
LENGTH_BAD = [0, -1, 2.5, 7.0, True, "7", None, float("nan")]
CONCENTRATION_BAD = [0.0, -1.0, 0.05, 1000.5, 2000] + NOT_REAL

INVALID = (
    [(GaussianMeanTask, "prior_mean", v) for v in NOT_REAL]
    + [(GaussianMeanTask, "prior_std", v) for v in POSITIVE_BAD]
    + [(GaussianMeanTask, "noise_std", v) for v in POSITIVE_BAD]
    + [(GaussianMeanTask, "sequence_length", v) for v in LENGTH_BAD]
    + [(CoinTask, "alpha", v) for v in CONCENTRATION_BAD]
    + [(CoinTask, "beta", v) for v in CONCENTRATION_BAD]
    + [(CoinTask, "sequence_length", v) for v in LENGTH_BAD]
)


@pytest.mark.parametrize("cls, field, value", INVALID, ids=lambda v: repr(v) if not isinstance(v, type) else v.__name__)
def test_invalid_field_is_rejected_naming_field_and_value(cls, field, value):
    with pytest.raises(ValueError, match=re.escape(f"{cls.__name__}.{field}")) as excinfo:
        cls(**{field: value})
    assert repr(value) in str(excinfo.value)
    # The same through make_task and dataclasses.replace (variants validate too).
    with pytest.raises(ValueError, match=re.escape(field)):
        make_task(cls.name, **{field: value})
    with pytest.raises(ValueError, match=re.escape(field)):
        dataclasses.replace(cls(), **{field: value})


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (GaussianMeanTask, {"prior_mean": -3, "prior_std": 1e-3, "noise_std": 50, "sequence_length": 1}),
        (GaussianMeanTask, {"sequence_length": np.int64(12), "prior_std": np.float32(0.5)}),
        (CoinTask, {"alpha": 0.1, "beta": 1000, "sequence_length": 100_000}),
    ],
)
def test_valid_edge_values_are_accepted_and_normalised(cls, kwargs):
    task = cls(**kwargs)
    for name, value in kwargs.items():
        stored = getattr(task, name)
        assert stored == value
        assert type(stored) is (int if name == "sequence_length" else float)


def test_make_task_rejects_unknown_task_and_parameter():
    with pytest.raises(ValueError, match="unknown task 'no_such_task'; available tasks: .*coin, .*gaussian"):
        make_task("no_such_task")
    with pytest.raises(ValueError, match="prior_variance"):
        make_task("gaussian", prior_variance=1.0)
    with pytest.raises(ValueError, match="alpha"):
        make_task("gaussian", alpha=1.0)
    assert make_task("coin", alpha=3.0) == CoinTask(alpha=3.0)


def test_task_fields():
    assert task_fields("gaussian") == ("prior_mean", "prior_std", "noise_std", "sequence_length")
    assert task_fields("coin") == ("alpha", "beta", "sequence_length")


@pytest.mark.parametrize("task", [GAUSSIAN, COIN, GaussianMeanTask(), CoinTask()], ids=repr)
def test_task_dict_round_trip(task):
    data = task_to_dict(task)
    assert data["name"] == task.name
    assert task_from_dict(data) == task
    assert task_from_dict(dict(data)) is not task


def test_task_from_dict_needs_a_name():
    with pytest.raises(ValueError, match="name"):
        task_from_dict({"prior_std": 1.0})


@pytest.mark.parametrize("task", [GAUSSIAN, COIN], ids=repr)
def test_tasks_are_frozen_and_hashable(task):
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.sequence_length = 3
    variant = dataclasses.replace(task, sequence_length=3)
    assert variant.sequence_length == 3 and task.sequence_length != 3
    assert hash(dataclasses.replace(task)) == hash(task)
