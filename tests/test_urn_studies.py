"""The classic studies of the sample-size experiment: designs, encodings and exact log-odds.

Exact references: the log joint of the generative process (``cogmeta.tasks.urn.log_joint``) for the
log-odds, and the paper's design tables (``generative.py`` of ishita-dg/LearningToInfer) for the designs.
"""

from __future__ import annotations

import numpy as np
import pytest

from cogmeta.tasks.urn import NOISE_BLOCKS, log_joint, logit
from cogmeta.tasks.urn_studies import (
    STUDIES,
    STUDY_KEYS,
    STUDY_PRIOR,
    ClassicStudy,
    participant_queries,
    study_of,
    summary_queries,
    with_prior,
)

BY_KEY = {study.key: study for study in STUDIES}


def test_thirteen_studies_in_the_papers_order():
    assert STUDY_KEYS == ("PM65", "PSM65", "GT92", "BH80", "DD74", "BWB70", "GHR65", "Gr92", "HS09", "KW04", "MC72",
                          "Ne01", "SK07")
    assert [study_of(s).key for s in (0, 12, 13, 27)] == ["PM65", "SK07", "PM65", "PSM65"]


@pytest.mark.parametrize("key", STUDY_KEYS)
def test_study_queries_are_shown_at_prior_half_with_exact_log_odds(key):
    study = BY_KEY[key]
    q = study.sample(np.random.default_rng(1), 400)
    np.testing.assert_array_equal(q.prior, STUDY_PRIOR)
    np.testing.assert_array_equal(q.inputs[:, 3], STUDY_PRIOR)
    np.testing.assert_array_equal(q.inputs[:, 0], -1.0)
    np.testing.assert_allclose(q.inputs[:, 5], q.draws / study.max_draws)
    np.testing.assert_allclose(q.inputs[:, 4] * q.draws, 2 * q.heads - q.draws, atol=1e-12)
    joint = log_joint(q.prior, q.likelihood, q.heads, q.draws)
    np.testing.assert_allclose(q.log_odds, joint[:, 1] - joint[:, 0], rtol=1e-12, atol=1e-12)
    assert q.draws.max() <= study.max_draws


@pytest.mark.parametrize("key, sizes, likelihoods", [
    ("PSM65", {1, 4, 12, 48}, {0.4}),
    ("GHR65", {1, 3, 6, 9}, {0.4, 0.2}),
    ("BWB70", set(range(4, 11)), {0.3, 0.2}),
    ("PM65", {1}, {1 / 6, 2 / 7, 1 / 3, 0.4, 0.6, 2 / 3, 5 / 7, 5 / 6}),
    ("KW04", {1}, {0.6 / 1.4, 0.5, 0.6 / 1.12}),
])
def test_sampled_designs_match_the_papers_tables(key, sizes, likelihoods):
    q = BY_KEY[key].sample(np.random.default_rng(2), 3000)
    assert set(q.draws.tolist()) == sizes
    np.testing.assert_allclose(sorted(set(np.round(q.likelihood, 9))), sorted(np.round(list(likelihoods), 9)))


def test_fixed_designs_match_the_papers_tables():
    gt = BY_KEY["GT92"].sample(np.random.default_rng(3), 3000)
    pairs = {(int(h), int(n)) for h, n in zip(gt.heads, gt.draws)}
    assert pairs == {(2, 3), (3, 3), (3, 5), (4, 5), (5, 5), (5, 9), (6, 9), (7, 9), (9, 17), (10, 17), (11, 17), (19, 33)}
    np.testing.assert_allclose(gt.log_odds, (2 * gt.heads - gt.draws) * logit(0.6))
    mc = BY_KEY["MC72"].sample(np.random.default_rng(4), 3000)
    assert set((2 * mc.heads - mc.draws).astype(int).tolist()) == {s * n for n in range(2, 9) for s in (1, -1)}
    bh = BY_KEY["BH80"].sample(np.random.default_rng(5), 50)
    np.testing.assert_allclose(bh.log_odds, logit(0.8))  # always a heads draw, shown at prior .5


def test_noise_queries_span_the_studys_sample_sizes():
    """PSM65 (maxN 48): k balls read as N = 4.8 k draws; SK07 (maxN 4): plain k-ball queries."""
    rng = np.random.default_rng(6)
    noise = BY_KEY["PSM65"].sample_noise(rng, 5000)
    k = noise.inputs[:, 5] * 10
    np.testing.assert_allclose(k, np.round(k), atol=1e-12)
    assert set(np.round(k).astype(int).tolist()) == set(range(1, 11))
    np.testing.assert_allclose(noise.draws, 4.8 * k, rtol=1e-12)
    n = noise.inputs[:, 4] * noise.draws
    np.testing.assert_allclose(noise.log_odds, logit(noise.prior) + n * logit(noise.likelihood), rtol=1e-12, atol=1e-9)
    assert set(np.unique(noise.prior)) <= set(NOISE_BLOCKS.priors)
    small = BY_KEY["SK07"].sample_noise(rng, 2000)
    assert set(small.draws.tolist()) == {1, 2, 3, 4}
    joint = log_joint(small.prior, small.likelihood, small.heads, small.draws)
    np.testing.assert_allclose(small.log_odds, joint[:, 1] - joint[:, 0], rtol=1e-12, atol=1e-12)


def test_participant_block_is_noise_then_its_test_queries():
    train, test = participant_queries(1, seed=7)
    assert train.inputs.shape == (200, 6) and test.inputs.shape == (100, 6)
    np.testing.assert_array_equal(train.inputs[100:], test.inputs)
    again, _ = participant_queries(1, seed=7)
    other, _ = participant_queries(1, seed=8)
    np.testing.assert_array_equal(train.inputs, again.inputs)
    assert not np.array_equal(train.inputs, other.inputs)


def test_swapped_draws_change_only_sampled_queries():
    """The paper's draws: fixed designs (GT92) are untouched; sampled noise and designs keep exact log-odds."""
    fixed = BY_KEY["GT92"]
    np.testing.assert_array_equal(fixed.sample(np.random.default_rng(1), 50).inputs,
                                  fixed.sample(np.random.default_rng(1), 50, swapped_draws=True).inputs)
    for study in (BY_KEY["PSM65"], BY_KEY["PM65"]):
        plain = study.sample_noise(np.random.default_rng(2), 3000)
        swapped = study.sample_noise(np.random.default_rng(2), 3000, swapped_draws=True)
        assert not np.array_equal(plain.heads, swapped.heads), study.key
        n = 2 * swapped.heads - swapped.draws
        np.testing.assert_allclose(swapped.log_odds, logit(swapped.prior) + n * logit(swapped.likelihood), rtol=1e-12, atol=1e-9)
        designs = study.sample(np.random.default_rng(3), 500, swapped_draws=True)
        joint = log_joint(designs.prior, designs.likelihood, designs.heads, designs.draws)
        np.testing.assert_allclose(designs.log_odds, joint[:, 1] - joint[:, 0], rtol=1e-12, atol=1e-12)
    train, test = participant_queries(1, seed=7, swapped_draws=True)
    np.testing.assert_array_equal(train.inputs[100:], test.inputs)


def test_with_prior_recomputes_the_exact_log_odds():
    q = summary_queries([0.2, 0.7], [0.6, 0.3], [2, 1], [3, 4], 4)
    moved = with_prior(q, 0.9)
    joint = log_joint(moved.prior, moved.likelihood, moved.heads, moved.draws)
    np.testing.assert_allclose(moved.log_odds, joint[:, 1] - joint[:, 0], rtol=1e-12)
    np.testing.assert_array_equal(moved.inputs[:, 3], 0.9)


def test_bad_designs_are_rejected():
    with pytest.raises(ValueError, match="either designs or priors"):
        ClassicStudy("X", "nobody", 4)
    with pytest.raises(ValueError, match="either designs or priors"):
        ClassicStudy("X", "nobody", 4, priors=(0.5,), likelihoods=(0.6,), sizes=(1,), designs=((0.5, 0.6, 1, 1),))
    with pytest.raises(ValueError, match=r"1 <= N <= max_draws = 4"):
        ClassicStudy("X", "nobody", 4, designs=((0.5, 0.6, 3, 5),))
    with pytest.raises(ValueError, match=r"must lie in \(0, 1\)"):
        ClassicStudy("X", "nobody", 4, priors=(1.5,), likelihoods=(0.6,), sizes=(1,))
    with pytest.raises(ValueError, match="max_draws"):
        ClassicStudy("X", "nobody", 0, priors=(0.5,), likelihoods=(0.6,), sizes=(1,))
