"""Default initialisations: the JAX modules draw from torch's distributions (different numbers, same law).

torch: GRU/LSTM tensors ~ U(-1/sqrt(H), 1/sqrt(H)); Linear weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
Flax's defaults (lecun_normal, orthogonal, zero bias) would differ; cogmeta's JAX modules match torch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch")
pytest.importorskip("jax")

from cogmeta import GaussianMeanTask, ModelConfig, RunConfig  # noqa: E402
from cogmeta.weights import parameter_shapes  # noqa: E402
from jax_impl.backend import init_weights as jax_init  # noqa: E402
from torch_impl.backend import init_weights as torch_init  # noqa: E402

pytestmark = pytest.mark.parity


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_every_tensor_is_uniform_on_torchs_interval_in_both_frameworks(cell):
    hidden = 128
    config = RunConfig(task=GaussianMeanTask(), model=ModelConfig(cell=cell, hidden_size=hidden, num_layers=2))
    weights = {"torch": torch_init(config, seed=1), "jax": jax_init(config, seed=1)}
    bound = 1.0 / math.sqrt(hidden)  # recurrent tensors use 1/sqrt(H); the head's fan_in is H as well
    for name, shape in parameter_shapes(config).items():
        for framework, tensors in weights.items():
            values = np.asarray(tensors[name], dtype=np.float64).ravel()
            assert values.shape == (math.prod(shape),)
            assert np.max(np.abs(values)) <= bound, f"{framework} {name} exceeds the bound {bound}"
            if values.size >= 1000:
                # One-sample KS against U(-b, b); alpha 1e-4 per tensor.
                p = stats.kstest(values, stats.uniform(loc=-bound, scale=2 * bound).cdf).pvalue
                assert p > 1e-4, f"{framework} {name} is not U(+-{bound:.4f}) (KS p = {p:.2g})"
        if math.prod(shape) >= 1000:
            p = stats.ks_2samp(np.ravel(weights["torch"][name]), np.ravel(weights["jax"][name])).pvalue
            assert p > 1e-4, f"{name}: torch and JAX initial values differ in distribution (KS p = {p:.2g})"


def test_head_bias_is_not_zero_like_flax_default():
    config = RunConfig(task=GaussianMeanTask(), model=ModelConfig(hidden_size=16))
    bias = jax_init(config, seed=3)["head.bias"]
    assert np.all(bias != 0) and np.all(np.abs(bias) <= 1 / math.sqrt(16))
