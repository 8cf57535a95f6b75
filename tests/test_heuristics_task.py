"""The paired-comparison spec and the LKJ samplers (numpy reference, torch and JAX native) against
the exact LKJ moments and the generative process; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cogmeta.experiments.heuristics import check_beta, check_betas
from cogmeta.lkj import lkj_offdiagonal_variance, sample_lkj_cholesky
from cogmeta.tasks.paired_comparison import PairedComparisonTask

DRAWS = 20_000


def _check_lkj_moments(chol: np.ndarray, dim: int, eta: float) -> None:
    """Unit diagonal; every off-diagonal entry has mean 0, variance 1/(2 eta + K - 1) and the marginal
    (r + 1)/2 ~ Beta(eta - 1 + K/2, same) (KS test)."""
    corr = chol @ np.swapaxes(chol, -1, -2)
    np.testing.assert_allclose(np.diagonal(corr, axis1=-2, axis2=-1), 1.0, atol=1e-5)
    rows, cols = np.tril_indices(dim, -1)
    off = corr[:, rows, cols].astype(np.float64)
    var = lkj_offdiagonal_variance(dim, eta)
    se_var = var * np.sqrt(2.0 / len(off)) * 1.5  # a little above the normal-theory standard error
    assert np.all(np.abs(off.mean(0)) < 5 * np.sqrt(var / len(off)))
    assert np.all(np.abs(off.var(0) - var) < 5 * se_var), (off.var(0), var)
    a = eta - 1 + dim / 2
    for k in range(off.shape[1]):
        assert stats.kstest((off[:, k] + 1) / 2, stats.beta(a, a).cdf).pvalue > 1e-3


@pytest.mark.parametrize("dim,eta", [(4, 2.0), (2, 0.7), (6, 1.0)])
def test_numpy_lkj_moments(dim, eta):
    _check_lkj_moments(sample_lkj_cholesky(np.random.default_rng(0), dim, eta, DRAWS), dim, eta)


def test_torch_native_lkj_moments():
    torch = pytest.importorskip("torch")
    from cogmeta.lkj import lkj_noise_spec
    from torch_impl.paired_comparison_samplers import lkj_cholesky
    from torch_impl.samplers import draw_noise

    noise = draw_noise(lkj_noise_spec(4, 2.0, DRAWS), torch.Generator().manual_seed(0))
    _check_lkj_moments(lkj_cholesky(noise, 4).numpy(), 4, 2.0)


def test_jax_native_lkj_moments():
    jax = pytest.importorskip("jax")
    from jax_impl.paired_comparison_samplers import draw_task_noise, lkj_cholesky

    noise = draw_task_noise(PairedComparisonTask(), jax.random.key(0), DRAWS)  # the training path: one gamma call
    _check_lkj_moments(np.asarray(lkj_cholesky(noise, 4)), 4, 2.0)


def test_cues_have_unit_variance_and_targets_follow_the_probit_rule():
    task = PairedComparisonTask(condition="none", num_trials=20)
    batch = task.sample(np.random.default_rng(1), 4000)
    np.testing.assert_allclose(batch.cues.reshape(-1, 4).var(0), 2.0, rtol=0.03)  # x_a - x_b: variance 2
    prob = task.choice_probability(batch.weights, batch.cues).ravel()
    targets = batch.targets.ravel()
    for low, high in [(0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0)]:  # calibration per bin
        inside = (prob >= low) & (prob < high)
        mean = prob[inside].mean()
        assert abs(targets[inside].mean() - mean) < 4 * np.sqrt(mean * (1 - mean) / inside.sum())


def test_conditions():
    rng = np.random.default_rng(2)
    ranking = PairedComparisonTask(condition="ranking").sample(rng, 500).weights
    assert np.all(np.diff(np.abs(ranking), axis=-1) <= 0) and np.any(ranking < 0)
    direction = PairedComparisonTask(condition="direction").sample(rng, 500)
    assert np.all(direction.weights >= 0)
    flipped = PairedComparisonTask(condition="direction", flip_direction_targets=True)
    noise_rng = np.random.default_rng(3)
    from cogmeta.tasks import draw_noise

    noise = draw_noise(flipped.noise_spec(100), noise_rng)
    np.testing.assert_array_equal(flipped.transform(noise).targets, 1 - PairedComparisonTask(condition="direction").transform(noise).targets)
    # the flip only applies to "direction"
    none = PairedComparisonTask(condition="none", flip_direction_targets=True)
    np.testing.assert_array_equal(none.transform(noise).targets, PairedComparisonTask(condition="none").transform(noise).targets)
    # under the original's flip every cue correlates negatively with the target
    batch = flipped.sample(np.random.default_rng(4), 3000)
    corr = [np.corrcoef(batch.targets.ravel(), batch.cues[..., k].ravel())[0, 1] for k in range(4)]
    assert max(corr) < -0.1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_cues=1), "num_cues"),
        (dict(eta=0.0), "eta"),
        (dict(eta=-1.0), "eta"),
        (dict(condition="both"), "condition"),
        (dict(noise_std=0.0), "noise_std"),
        (dict(num_trials=0), "num_trials"),
    ],
)
def test_bad_task_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PairedComparisonTask(**kwargs)


def test_bad_beta():
    with pytest.raises(ValueError, match=">= 0"):
        check_beta(-0.1)
    with pytest.raises(ValueError, match="betas"):
        check_betas((0.01, -1.0))
    with pytest.raises(ValueError, match="eta"):
        sample_lkj_cholesky(np.random.default_rng(0), 4, 0.0, 3)
