"""The core's sparse-variational pruning rule (``cogmeta.sparse_variational``) is the twins' rule."""

from __future__ import annotations

import numpy as np
import pytest

from cogmeta.sparse_variational import (
    LOG_ALPHA_MAX,
    LOG_ALPHA_MIN,
    PRUNE_THRESHOLD,
    kept_fraction,
    log_alpha,
)


def _layer_tensors(rng):
    weight = rng.normal(size=(5, 4)) * np.exp(rng.uniform(-6, 1, size=(5, 4)))
    weight[0, 0] = 0.0  # log|0| must stay finite
    return weight, rng.uniform(-8, 0, size=(5, 4))


def test_log_alpha_is_the_clamped_ratio_and_kept_fraction_counts_below_the_threshold():
    weight, log_sigma = _layer_tensors(np.random.default_rng(0))
    alpha = log_alpha(weight, log_sigma)
    expected = np.clip(np.log(np.exp(log_sigma) ** 2 / np.maximum(weight ** 2, 1e-300)), LOG_ALPHA_MIN, LOG_ALPHA_MAX)
    np.testing.assert_allclose(alpha[weight != 0], expected[weight != 0], rtol=1e-9)
    assert alpha[0, 0] == LOG_ALPHA_MAX
    tensors = {"a.weight": weight, "a.log_sigma": log_sigma, "a.bias": np.zeros(5), "b.weight": weight[:2],
               "b.log_sigma": np.full((2, 4), -30.0)}  # layer b: tiny sigma, every weight but the zero kept
    kept = np.sum(alpha < PRUNE_THRESHOLD) + 7
    assert kept_fraction(tensors) == pytest.approx(kept / 28)


def test_the_torch_layer_prunes_by_the_same_rule():
    torch = pytest.importorskip("torch")
    from torch_impl.svdo import LinearSVDO

    weight, log_sigma = _layer_tensors(np.random.default_rng(1))
    layer = LinearSVDO(4, 5, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        layer.log_sigma.copy_(torch.from_numpy(log_sigma))
    np.testing.assert_allclose(layer.log_alpha().detach().numpy(), log_alpha(weight, log_sigma), rtol=1e-12, atol=1e-12)
    assert layer.kept_fraction() == pytest.approx(kept_fraction({"l.weight": weight, "l.log_sigma": log_sigma}))
