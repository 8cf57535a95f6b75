"""Numerical settings: float64 switch, matmul precision, dtype names.

Every matmul in ``jax_impl`` passes ``precision=HIGHEST`` explicitly: JAX's default precision uses TF32
on recent NVIDIA GPUs (bf16 passes on TPUs), which would break parity with PyTorch, whose float32
matmuls are full precision.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

HIGHEST = lax.Precision.HIGHEST

_DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


def configure(dtype: str = "float32") -> None:
    """Enable 64-bit types when ``dtype`` is "float64" (JAX disables them by default).

    This flips the global ``jax_enable_x64`` flag; code that must not change global state can use the
    ``jax.enable_x64(True)`` context manager around model construction and calls instead.
    """
    if dtype == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


def jax_dtype(name: str):
    """"float32"/"float64" -> jnp dtype (float64 needs 64-bit types enabled)."""
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(_DTYPES)}")
    if name == "float64" and not jax.config.jax_enable_x64:
        raise ValueError(
            "float64 needs JAX's 64-bit mode: call jax_impl.numerics.configure('float64') or use "
            "`with jax.enable_x64(True):`"
        )
    return _DTYPES[name]


def matmul(x: jax.Array, weight: jax.Array) -> jax.Array:
    """x @ weight.T at full precision (``weight`` in torch's ``(out, in)`` layout)."""
    return jnp.matmul(x, weight.T, precision=HIGHEST)
