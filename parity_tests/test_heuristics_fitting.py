"""Fitting people: the per-participant log-likelihoods of the bounded meta-learned model, PyTorch vs JAX,
from identical canonical weights and identical participant data (``heuristics_fitting.model_probabilities``
and ``fit_participants`` with ``backend="torch"`` and ``"jax"``; pruned weights, so no sampling noise).

Participants have tasks of unequal length (padding and masking included), and a third of each model's
weights have a large log sigma, so that pruning (log alpha >= 3) acts identically in both frameworks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torch_impl.bounded_gru as torch_model
import torch_impl.weights as torch_weights
from cogmeta.experiments.heuristics_fitting import fit_participants, model_probabilities
from cogmeta.fitting.participants import pack_tasks
from cogmeta.tasks.paired_comparison import PairedComparisonTask
from parity_tests._cases import torch_dtype, x64
from parity_tests._compare import assert_all, assert_parity

pytestmark = [pytest.mark.parity, pytest.mark.torch, pytest.mark.jax]

CUES, HIDDEN, BETAS = 4, 8, (0.0, 0.03)


def _weights(dtype: str, seed: int) -> dict[float, dict[str, np.ndarray]]:
    """One seeded torch model per beta (different seeds), with confident readouts and some weights pruned."""
    rng = np.random.default_rng(seed)
    weights = {}
    for index, beta in enumerate(BETAS):
        torch.manual_seed(seed + index)
        model = torch_model.BoundedMetaLearner(CUES, HIDDEN, torch_dtype(dtype))
        with torch.no_grad():
            model.mu.weight.mul_(5.0)
            for layer in model.layers().values():
                layer.log_sigma[torch.from_numpy(rng.random(layer.log_sigma.shape) < 1 / 3)] = 1.0
        weights[beta] = torch_weights.model_to_canonical(model)
    return weights


def _participants(seed: int):
    """Three participants: 6 tasks of 10 trials, random choices; the third has tasks of 10, 7 and 4 trials."""
    rng = np.random.default_rng(seed)
    task = PairedComparisonTask(condition="ranking", num_cues=CUES)
    participants = []
    for index in range(3):
        batch = task.sample(rng, 6)
        lengths = [10] * 6 if index < 2 else [10, 7, 4]
        tasks = [(str(b), batch.cues[:n, b], batch.targets[:n, b], (rng.random(n) < 0.6).astype(np.float64))
                 for b, n in enumerate(lengths)]
        participants.append(pack_tasks(f"p{index}", tasks))
    return participants


def _fit(backend: str, weights, participants, dtype: str, lapse: bool):
    with x64(dtype):
        probs = model_probabilities(participants, ("bmli",), "ranking", weights, backend)
    return probs, fit_participants(participants, probs, ("bmli",), lapse)


@pytest.mark.parametrize("lapse", [False, True])
def test_per_participant_log_likelihoods(dtype, seed, lapse, record):
    weights, participants = _weights(dtype, seed), _participants(seed)
    torch_probs, expected = _fit("torch", weights, participants, dtype, lapse)
    jax_probs, got = _fit("jax", weights, participants, dtype, lapse)
    pairs = [(f"p(choice) beta {beta:g} participant {n}", jax_probs[("bmli", beta)][n], torch_probs[("bmli", beta)][n])
             for beta in BETAS for n in range(len(participants))]
    pairs.append(("log-likelihood per participant and beta", got.bmli_log_lik, expected.bmli_log_lik))
    record("fit: log-likelihood", "svdo-gru", dtype, assert_all(pairs, "forward", dtype))
    np.testing.assert_array_equal(got.best_beta, expected.best_beta)
    assert got.assigned == expected.assigned
    assert np.all(np.isfinite(expected.bmli_log_lik))
    if lapse:
        record("fit: lapse", "svdo-gru", dtype, assert_parity("fitted lapse", got.bmli_lapse, expected.bmli_lapse,
                                                              "grad", dtype))


def test_detects_swapped_weights(seed):
    """The check can fail: the two betas' networks give log-likelihoods far outside the tolerance."""
    weights, participants = _weights("float64", seed), _participants(seed)
    _, expected = _fit("torch", weights, participants, "float64", False)
    swapped = {BETAS[0]: weights[BETAS[1]], BETAS[1]: weights[BETAS[0]]}
    _, got = _fit("jax", swapped, participants, "float64", False)
    with pytest.raises(AssertionError):
        assert_parity("swapped", got.bmli_log_lik, expected.bmli_log_lik, "forward", "float64")
