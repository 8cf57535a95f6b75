"""Layer 2: the recurrent core alone (``torch.nn.GRU``/``LSTM`` vs the custom JAX cells).

Same weights (a seeded torch core, input size 3, hidden 6: unequal sizes so that a transposed or
mis-sliced tensor cannot line up), same numpy inputs ``[T, B, I]`` and initial state; outputs and final
states are compared. The ``test_detects_*`` tests break the JAX side on purpose (gate order, the
GRU's ``b_hn``) and assert that the comparison fails, so a green run means something.
"""

from __future__ import annotations

import numpy as np
import pytest

from parity_tests._cases import CORE_HIDDEN, core_case
from parity_tests._compare import assert_all

pytestmark = [pytest.mark.parity, pytest.mark.torch, pytest.mark.jax]


@pytest.mark.parametrize(
    "num_layers, with_state", [(1, False), (2, True)], ids=["1layer-zero_state", "2layers-given_state"]
)
def test_core_outputs_and_final_state(cell, dtype, num_layers, with_state, seed, record):
    groups = core_case(cell, dtype, num_layers, with_state, seed)
    record("cell", cell, dtype, assert_all(groups["cell"], "forward", dtype))


def _swap_gates(weights: dict[str, np.ndarray], first: int, second: int) -> dict[str, np.ndarray]:
    """Exchange gate blocks ``first`` and ``second`` (rows of every ``*_l{k}`` tensor)."""
    h = CORE_HIDDEN
    out = {}
    for name, value in weights.items():
        value = value.copy()
        a, b = value[first * h : (first + 1) * h].copy(), value[second * h : (second + 1) * h].copy()
        value[first * h : (first + 1) * h], value[second * h : (second + 1) * h] = b, a
        out[name] = value
    return out


def _drop_b_hn(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What ``flax.nnx.GRUCell`` (<= 0.12.8) computes: no bias on the hidden side of the candidate n."""
    out = dict(weights)
    for name in [name for name in weights if name.startswith("bias_hh_l")]:
        out[name] = weights[name].copy()
        out[name][2 * CORE_HIDDEN :] = 0
    return out


@pytest.mark.parametrize(
    "cell_name, mutation",
    [
        ("gru", "swap r and z"),
        ("gru", "drop b_hn"),
        ("lstm", "swap i and f"),
        ("lstm", "swap g and o"),
    ],
)
def test_detects_broken_cell(cell_name, mutation, seed):
    """A wrong gate order or a missing b_hn must fail the float32 forward check."""
    mutate = {
        "swap r and z": lambda w: _swap_gates(w, 0, 1),
        "drop b_hn": _drop_b_hn,
        "swap i and f": lambda w: _swap_gates(w, 0, 1),
        "swap g and o": lambda w: _swap_gates(w, 2, 3),
    }[mutation]
    groups = core_case(cell_name, "float32", 2, True, seed, mutate=mutate)
    with pytest.raises(AssertionError, match="core outputs"):
        assert_all(groups["cell"], "forward", "float32")
