"""The cross-framework tolerances of cogmeta: one table, read by the parity suite and by ``cogmeta verify``.

Rule, per tensor, with ``b`` the reference (PyTorch) and ``a`` the value under test (JAX):

    |a - b| <= atol_scale * max(max|b|, FLOOR) + rtol * |b|        FLOOR = 1e-3

(float32 one-step training adds ``TRAIN_STEP_LR_ATOL * lr`` to the bound), plus identical shapes and
identical NaN / +-inf positions (those entries are then left out). The *normalized error* quoted by
reports and failure messages is ``max|a - b| / max(max|b|, FLOOR)``.

The table lived in ``parity_tests/_compare.py``, which is not part of the installed package; it is here so
that ``cogmeta verify`` (an installed command) applies exactly the parity suite's numbers, and the suite
imports it from here. numpy only: importing it needs neither framework.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOOR = 1e-3

#: kind -> dtype -> (rtol, atol_scale). Margins are ~10-100x over the residuals measured in parity.md.
TOLERANCES: dict[str, dict[str, tuple[float, float]]] = {
    # outputs of a layer or model, losses, log-likelihoods, learning rates
    "forward": {"float32": (1e-5, 1e-5), "float64": (1e-11, 1e-12)},
    # gradients (and quantities linear in them: Adam moments after a step, gradient norms)
    "grad": {"float32": (1e-4, 1e-5), "float64": (1e-9, 1e-11)},
    # parameters after one optimizer step on identical gradients
    "optim_step": {"float32": (2e-6, 1e-7), "float64": (1e-13, 1e-14)},
    # parameters (and moments) after K <= 1000 optimizer steps on identical gradients
    "optim_steps": {"float32": (1e-5, 1e-6), "float64": (1e-11, 1e-12)},
    # parameters after one end-to-end train step; float32 adds an absolute 2e-3 * lr (see ``lr=``)
    "train_step": {"float32": (1e-6, 0.0), "float64": (1e-11, 1e-12)},
    # parameters after N <= 1000 end-to-end steps: normalized error only
    "train_steps": {"float32": (0.0, 1e-3), "float64": (0.0, 1e-10)},
    # the loss curve of N end-to-end steps: relative
    "loss_curve": {"float32": (1e-5, 0.0), "float64": (1e-11, 0.0)},
}

#: float32 one-step end-to-end parameter budget per unit of learning rate (parity.md §4/§5): Adam
#: divides each gradient by its magnitude, so gradient entries near zero turn rounding into O(lr) moves.
TRAIN_STEP_LR_ATOL = 2e-3


def to_numpy(value) -> np.ndarray:
    """torch tensor / jax array / numpy / scalar -> numpy array (no copy where possible)."""
    if hasattr(value, "detach"):  # torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def normalized_error(a, b) -> float:
    """``max|a - b| / max(max|b|, FLOOR)`` over finite entries (0.0 for empty arrays)."""
    a, b = to_numpy(a), to_numpy(b)
    finite = np.isfinite(a) & np.isfinite(b)
    if not finite.any():
        return 0.0
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))[finite]
    scale = max(float(np.max(np.abs(b[finite]))), FLOOR)
    return float(np.max(diff) / scale)


def tolerance(kind: str, dtype: str) -> tuple[float, float]:
    """``(rtol, atol_scale)`` of check ``kind`` for ``dtype`` ("float32"/"float64")."""
    if kind not in TOLERANCES:
        raise ValueError(f"unknown comparison kind {kind!r}; choose one of {', '.join(TOLERANCES)}")
    if dtype not in TOLERANCES[kind]:
        raise ValueError(f"unknown dtype {dtype!r}; choose float32 or float64")
    return TOLERANCES[kind][dtype]


@dataclass(frozen=True)
class Comparison:
    """The outcome of the rule for one tensor.

    Attributes:
        error: the normalized error ``max|a - b| / max(max|b|, FLOOR)``.
        passed: every entry within ``atol_scale * scale (+ TRAIN_STEP_LR_ATOL * lr) + rtol * |b|``, same shape,
            same non-finite positions.
        detail: "" when passed, else what failed (worst entry, values, bound).
    """

    error: float
    passed: bool
    detail: str = ""


def compare(a, b, kind: str, dtype: str, *, lr: float | None = None) -> Comparison:
    """Apply the rule of ``kind`` (tier ``dtype``) to ``a`` (JAX) against the reference ``b`` (PyTorch).

    Unlike the parity suite's ``assert_parity`` this neither raises nor requires equal array dtypes (both
    values are compared in float64); ``lr`` is required for ``kind="train_step"`` in float32.
    """
    a, b = to_numpy(a), to_numpy(b)
    rtol, atol_scale = tolerance(kind, dtype)
    if a.shape != b.shape:
        return Comparison(float("inf"), False, f"shape {a.shape} != reference shape {b.shape}")
    for label, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        if not np.array_equal(test(a), test(b)):
            return Comparison(float("inf"), False, f"{label} positions differ")
    if a.size == 0:
        return Comparison(0.0, True)
    finite = np.isfinite(b)
    a64, b64 = np.where(finite, a, 0).astype(np.float64), np.where(finite, b, 0).astype(np.float64)
    diff = np.abs(a64 - b64)
    scale = max(float(np.max(np.abs(b64))), FLOOR)
    atol = atol_scale * scale
    if kind == "train_step" and dtype == "float32":
        if lr is None:
            raise ValueError("kind='train_step' in float32 needs the learning rate (lr=...)")
        atol += TRAIN_STEP_LR_ATOL * lr
    allowed = atol + rtol * np.abs(b64)
    error = float(np.max(diff) / scale)
    if not np.any(diff > allowed):
        return Comparison(error, True)
    index = np.unravel_index(int(np.argmax(diff - allowed)), diff.shape) if diff.ndim else ()
    where = f" at index {tuple(int(i) for i in index)}" if diff.ndim else ""
    return Comparison(error, False, f"worst entry{where}: jax {float(a64[index])!r}, torch {float(b64[index])!r}, |diff| "
                                    f"{diff[index]:.3e} > allowed {allowed[index]:.3e} (rtol {rtol:g}, atol_scale "
                                    f"{atol_scale:g} x scale {scale:.3e})")


__all__ = ["FLOOR", "TOLERANCES", "TRAIN_STEP_LR_ATOL", "Comparison", "compare", "normalized_error", "to_numpy",
           "tolerance"]
