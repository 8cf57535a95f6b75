"""The comparison rule of the parity suite (references/parity.md §5) and a registry of worst errors.

Rule, per tensor, with ``b`` the reference (PyTorch) and ``a`` the value under test (JAX):

    |a - b| <= atol_scale * max(max|b|, FLOOR) + rtol * |b|        FLOOR = 1e-3

plus identical shapes and dtypes and identical NaN / +-inf positions (those entries are then left
out, as in Hugging Face's PT/Flax equivalence tests). The *normalized error* that the report and the
failure messages quote is ``max|a - b| / max(max|b|, FLOOR)``.

This module needs numpy only, so it imports without either framework. The tolerance table (``TOLERANCES``)
and ``normalized_error`` are ``cogmeta.tolerances``'s, re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

# The table and the error measure live in the installed package, so that `cogmeta verify` applies the same numbers.
from cogmeta.tolerances import (  # noqa: F401  (re-exported: the suite's tests and report.py import them here)
    FLOOR,
    TOLERANCES,
    TRAIN_STEP_LR_ATOL,
    compare,
    normalized_error,
    to_numpy,
    tolerance,
)


def assert_parity(name: str, a, b, kind: str, dtype: str, *, lr: float | None = None) -> float:
    """Assert that ``a`` (JAX) matches the reference ``b`` (PyTorch) under the rule of ``kind``.

    Args:
        name: tensor name for the failure message (e.g. ``grad core.weight_hh_l0``).
        a, b: arrays (torch, jax or numpy).
        kind: a key of :data:`TOLERANCES`.
        dtype: "float32" or "float64", selects the tolerance tier (not the arrays' dtype).
        lr: learning rate, required for ``kind="train_step"`` in float32.

    Returns:
        The normalized error.
    """
    a, b = to_numpy(a), to_numpy(b)
    if a.shape == b.shape and a.dtype != b.dtype:  # the suite compares like with like; verify does not
        raise AssertionError(f"{name}: dtype {a.dtype} != reference dtype {b.dtype}")
    result = compare(a, b, kind, dtype, lr=lr)
    if not result.passed:
        raise AssertionError(f"{name} ({kind}, {dtype}): normalized error {result.error:.3e}; {result.detail}")
    return result.error


def assert_all(
    pairs: Iterable[tuple[str, object, object]], kind: str, dtype: str, *, lr: float | None = None
) -> float:
    """:func:`assert_parity` over ``(name, jax value, torch value)`` triples; returns the worst normalized error.

    Every pair is checked before failing, so one message lists every tensor that is off.
    """
    worst, failures = 0.0, []
    for name, a, b in pairs:
        try:
            worst = max(worst, assert_parity(name, a, b, kind, dtype, lr=lr))
        except AssertionError as error:
            failures.append(str(error))
    if failures:
        raise AssertionError(f"{len(failures)} tensor(s) off:\n  " + "\n  ".join(failures))
    return worst


def jax_platform() -> str:
    """The platform that JAX computes on by default ("cpu", "gpu" or "tpu"); JAX is imported only when asked."""
    import jax

    return jax.default_backend()


def assert_bitwise_on_cpu(name: str, a, b, kind: str, dtype: str, *, platform: str | None = None) -> None:
    """Bit for bit where JAX computes on the CPU; on any other platform within the ``kind`` tolerance.

    A bitwise claim about a JAX result against numpy's or against another JAX program's is a claim about
    XLA:CPU: its float32 ``log``, ``exp`` and ``erf`` reproduce numpy's bits for the samplers' transforms, and
    it sums in the same order in the engine and the single trainer. A GPU's math library and reductions do
    neither (H200, 2026-12-04: the float32 transforms up to 3.1e-6 absolute from numpy's, the float64 engine
    member 5.6e-17 from the trainer's; ``benchmarks/results/gpu-check/parity-no-x.log``), and neither is a
    defect. There the ordinary rule of :func:`assert_parity` applies. ``platform`` overrides
    :func:`jax_platform` (for testing this function).
    """
    if (platform or jax_platform()) == "cpu":
        assert_bitwise(name, a, b)
    else:
        assert_parity(name, a, b, kind, dtype)


def assert_same_keys(a: Mapping, b: Mapping, what: str) -> None:
    """Identical key sets (order-insensitive), with the differences named."""
    missing, extra = sorted(set(b) - set(a)), sorted(set(a) - set(b))
    if missing or extra:
        raise AssertionError(f"{what}: missing {missing}, unexpected {extra}")


def assert_bitwise(name: str, a, b) -> None:
    """Identical shape, dtype and bits (NaNs compared by position)."""
    a, b = to_numpy(a), to_numpy(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        raise AssertionError(f"{name}: {a.shape} {a.dtype} != reference {b.shape} {b.dtype}")
    if not np.array_equal(a, b, equal_nan=np.issubdtype(a.dtype, np.floating)):
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        index = np.unravel_index(int(np.nanargmax(diff)), a.shape) if a.ndim else ()
        raise AssertionError(
            f"{name}: not bit-identical; {int(np.sum(a != b))} of {a.size} entries differ, max abs error "
            f"{np.nanmax(diff):.3e} at index {tuple(int(i) for i in index)}"
        )


# ---------------------------------------------------------------------------- worst-error registry
LAYERS = (
    "cell",
    "model",
    "loss",
    "grad",
    "optim 1 step",
    "optim 100 steps",
    "train 1 step",
    "train 1000 steps: params",
    "train 1000 steps: loss",
)


@dataclass
class WorstErrors:
    """Worst normalized error per (layer, cell, dtype), filled by the tests and printed at the end."""

    table: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def add(self, layer: str, cell: str, dtype: str, error: float) -> None:
        key = (layer, cell, dtype)
        self.table[key] = max(self.table.get(key, 0.0), float(error))

    def format(self) -> str:
        columns = sorted({(cell, dtype) for _, cell, dtype in self.table}, key=lambda c: (c[1], c[0]))
        layers = [layer for layer in LAYERS if any(key[0] == layer for key in self.table)]
        layers += sorted({key[0] for key in self.table} - set(layers))
        header = f"{'layer':<26}" + "".join(f"{cell + ' ' + dtype:>15}" for cell, dtype in columns)
        lines = [header, "-" * len(header)]
        for layer in layers:
            cells = []
            for cell, dtype in columns:
                value = self.table.get((layer, cell, dtype))
                cells.append(f"{'-' if value is None else f'{value:.2e}':>15}")
            lines.append(f"{layer:<26}" + "".join(cells))
        return "\n".join(lines)


#: Session-wide registry (the conftest prints it in the terminal summary).
WORST = WorstErrors()
