"""Numerical settings: thread count, float64 switch, matmul precision, dtype names.

Every matmul in ``jax_impl`` passes ``precision=HIGHEST`` explicitly: JAX's default precision uses TF32
on recent NVIDIA GPUs (bf16 passes on TPUs), which would break parity with PyTorch, whose float32
matmuls are full precision.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
from jax import lax

HIGHEST = lax.Precision.HIGHEST

_DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


def configure(threads: int = 0, dtype: str = "float32") -> None:
    """Process-wide numerics: ``threads`` intra-op threads (0 keeps the framework's default) and ``dtype``.

    JAX 0.10's CPU client sizes its thread pools from the CPUs this process may run on, and XLA has no
    setting for that count (``--xla_cpu_multi_thread_eigen=false`` measured: the same threads stay busy).
    So ``threads > 0`` is checked, not set: it must equal that CPU count, otherwise a ValueError says how
    to restrict the process (``taskset -c 0-{threads - 1} ...`` before Python starts).

    ``dtype`` "float64" enables 64-bit types (JAX disables them by default) by flipping the global
    ``jax_enable_x64`` flag; code that must not change global state can use the ``jax.enable_x64(True)``
    context manager around model construction and calls instead. "float32" changes nothing.
    """
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0 keeps the default), got {threads}")
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(_DTYPES)}")
    if threads > 0:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        if threads != available:
            raise ValueError(
                f"threads={threads}, but JAX's CPU backend uses one thread per CPU this process may run on "
                f"({available}) and cannot be told otherwise; start Python under `taskset -c 0-{threads - 1}` "
                f"to use {threads}, or pass threads=0 for JAX's default"
            )
    if dtype == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


def resolve_dtype(name: str):
    """"float32"/"float64" -> the framework's dtype (``jnp.float32``/``jnp.float64``; float64 needs 64-bit types)."""
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(_DTYPES)}")
    if name == "float64" and not jax.config.jax_enable_x64:
        raise ValueError(
            "float64 needs JAX's 64-bit mode: call jax_impl.numerics.configure(dtype='float64') or use "
            "`with jax.enable_x64(True):`"
        )
    return _DTYPES[name]


def matmul(x: jax.Array, weight: jax.Array) -> jax.Array:
    """x @ weight.T at full precision (``weight`` in torch's ``(out, in)`` layout)."""
    return jnp.matmul(x, weight.T, precision=HIGHEST)
