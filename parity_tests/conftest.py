"""Fixtures of the PyTorch <-> JAX parity suite.

The whole directory is skipped (with the reason) when either framework is missing. The repository's
root ``conftest.py`` already pins torch to 1 thread with TF32 off; here every JAX computation runs
inside ``jax.enable_x64(dtype == "float64")`` (see ``_cases.x64``), so float32 tests stay 32-bit even
if something flipped the global flag. The worst normalized error per layer, cell and dtype is printed
in the terminal summary (and attached to each test as the ``worst_normalized_error`` property).
"""

from __future__ import annotations

import zlib

import pytest

pytest.importorskip("torch", reason="the parity suite needs PyTorch")
pytest.importorskip("jax", reason="the parity suite needs JAX")
pytest.importorskip("flax.nnx", reason="the parity suite needs Flax NNX")
pytest.importorskip("optax", reason="the parity suite needs optax")

from parity_tests._compare import WORST  # noqa: E402


@pytest.fixture(params=["gru", "lstm"])
def cell(request) -> str:
    return request.param


@pytest.fixture(params=["float32", "float64"])
def dtype(request) -> str:
    return request.param


@pytest.fixture
def seed(request) -> int:
    """A per-test seed from the test id (stable across runs and processes, unlike ``hash``)."""
    return zlib.crc32(request.node.nodeid.encode()) % (2**31)


@pytest.fixture
def record(record_property):
    """``record(layer, cell, dtype, error)``: keep the worst error for the summary and the junit XML."""

    def add(layer: str, cell: str, dtype: str, error: float) -> None:
        WORST.add(layer, cell, dtype, error)
        record_property(f"worst_normalized_error[{layer}]", f"{error:.3e}")

    return add


def pytest_terminal_summary(terminalreporter):
    if WORST.table:
        terminalreporter.write_sep("-", "parity: worst normalized error max|jax - torch| / max(max|torch|, 1e-3)")
        terminalreporter.write_line(WORST.format())
