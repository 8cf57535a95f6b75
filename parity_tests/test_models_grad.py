"""Layer 4: gradients of the mean training loss wrt every parameter.

torch: ``sequence_nll(...).backward()``, ``.grad`` by ``named_parameters`` name; JAX: ``jax.value_and_grad``
of the tutorial objective's loss (``jax_impl.backend.MetaLearnerObjective.loss``) (the loss that training differentiates), mapped to canonical names with
``state_to_canonical``. Every canonical parameter must have a gradient on both sides.
"""

from __future__ import annotations

import pytest

from cogmeta.weights import parameter_shapes
from parity_tests._cases import grad_case, make_config
from parity_tests._compare import assert_all

pytestmark = [pytest.mark.parity, pytest.mark.torch, pytest.mark.jax]


#: One model variant per (cell, dtype), a Latin square: each family and depth is checked for both cells and
#: both dtypes with half the compilations (the Gaussian 1-layer gradients of every (cell, dtype) are also
#: checked through the Adam moments in test_train_steps.py::test_one_train_step).
VARIANTS = {
    ("gru", "float32"): ("gaussian", 1),
    ("gru", "float64"): ("coin", 2),
    ("lstm", "float32"): ("coin", 2),
    ("lstm", "float64"): ("gaussian", 1),
}


def test_loss_gradients(cell, dtype, seed, record):
    task_name, num_layers = VARIANTS[cell, dtype]
    config = make_config(cell, dtype, task_name, num_layers)
    groups = grad_case(config, seed)
    names = [name.removeprefix("grad ") for name, _, _ in groups["grad"]]
    assert names == list(parameter_shapes(config)), f"gradients for {names}, expected every canonical parameter"
    record("loss", cell, dtype, assert_all(groups["loss"], "forward", dtype))
    record("grad", cell, dtype, assert_all(groups["grad"], "grad", dtype))
