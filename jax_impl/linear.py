"""A linear layer with torch's layout and init (``torch.nn.Linear``'s twin; torch_impl uses nn.Linear).

y = x W^T + b with ``weight`` ``(out, in)`` and ``bias`` ``(out,)``; init U(-1/sqrt(in), 1/sqrt(in)) for
both, which is what torch's ``kaiming_uniform_(a=sqrt(5))`` reduces to. Flax's ``nnx.Linear`` stores
``kernel`` ``(in, out)`` with lecun-normal init and zero bias.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jax_impl.numerics import matmul


class Linear(nnx.Module):
    """``[..., in]`` -> ``[..., out]``."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nnx.Param(jax.random.uniform(rngs.params(), (out_features, in_features), dtype, -bound, bound))
        self.bias = nnx.Param(jax.random.uniform(rngs.params(), (out_features,), dtype, -bound, bound))

    def __call__(self, x: jax.Array) -> jax.Array:
        return matmul(x, self.weight[...]) + self.bias[...]
