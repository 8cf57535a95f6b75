"""The held-out check of ``train.until_kl`` (``cogmeta.held_out_check``) in both frameworks, from the same weights.

Each objective's ``held_out_kl`` (``<backend>_impl.heads.mean_kl`` on the model's raw outputs: log std and logit) is
the mean exact KL(Bayes || model) that ``cogmeta.evaluation.score_predictions`` computes in float64 numpy from the
predictive's std and P(x = 1): the reference here. Every tutorial task, both predictive families, both dtypes.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from cogmeta.evaluation import score_predictions
from cogmeta.held_out_check import HeldOutCheck
from jax_impl.backend import MetaLearnerObjective as JaxObjective
from jax_impl.trainer import held_out_arrays as jax_held_out
from parity_tests._cases import TASKS, jax_model, make_config, torch_model, x64
from parity_tests._compare import assert_parity
from torch_impl.backend import MetaLearnerObjective as TorchObjective
from torch_impl.backend import predict as torch_predict
from torch_impl.trainer import held_out_arrays as torch_held_out
from torch_impl.weights import model_to_canonical

pytestmark = [pytest.mark.parity, pytest.mark.torch, pytest.mark.jax]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_held_out_kl_is_the_exact_score_in_both_frameworks(task, dtype, record):
    config = make_config("gru", dtype, task=task, eval_tasks=40, until_kl=1e-3)
    check = HeldOutCheck.of(config)
    model = torch_model(config, seed=5)
    weights = model_to_canonical(model)
    # the reference: float64 numpy scoring of the predictive (std, P) of the same weights
    exact = score_predictions(config.task, check.observations, torch_predict(config, weights, check.observations)).mean_kl
    assert exact > 1e-3, "an untrained model: a KL far from 0, so that the comparison is not of two zeros"
    torch_kl = TorchObjective(config).held_out_kl(model, torch_held_out(check, model.head.weight.dtype)[1])
    with x64(dtype):
        _, arrays = jax_held_out(check, np.float64 if dtype == "float64" else np.float32)
        params = nnx.split(jax_model(config, weights))[1]
        jax_kl = jax.jit(JaxObjective(config).held_out_kl)(params, arrays)
    assert_parity(f"torch held-out KL ({task})", np.asarray(float(torch_kl)), np.asarray(exact), "forward", dtype)
    record(f"held-out KL ({task})", "gru", dtype,
           assert_parity(f"jax held-out KL ({task})", np.asarray(jax_kl), torch_kl.numpy(), "forward", dtype))
