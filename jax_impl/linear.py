"""A linear layer with torch's layout and init (``torch.nn.Linear``'s twin; torch_impl uses nn.Linear).

y = x W^T + b with ``weight`` ``(out, in)`` and ``bias`` ``(out,)``; init U(-1/sqrt(in), 1/sqrt(in)) for
both, which is what torch's ``kaiming_uniform_(a=sqrt(5))`` reduces to. Flax's ``nnx.Linear`` stores
``kernel`` ``(in, out)`` with lecun-normal init and zero bias.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jax_impl.host_random import HostKey, symmetric_uniform
from jax_impl.numerics import matmul


class Linear(nnx.Module):
    """``[..., in]`` -> ``[..., out]``."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nnx.Param(uniform_init(rngs.params(), (out_features, in_features), dtype, bound))
        self.bias = nnx.Param(uniform_init(rngs.params(), (out_features,), dtype, bound))

    def __call__(self, x: jax.Array) -> jax.Array:
        return matmul(x, self.weight[...]) + self.bias[...]


#: An eager draw of at most this many numbers runs one compiled program; a larger one, the next power of two.
UNIFORM_INIT_COUNT = 1 << 14


def uniform_init(key: jax.Array, shape: tuple[int, ...], dtype, bound: float) -> jax.Array:
    """U(-bound, bound) of ``shape``: bit for bit ``jax.random.uniform(key, shape, dtype, -bound, bound)``.

    Eagerly (building a model outside ``jit``), ``jax.random.uniform`` compiles a threefry program for every
    parameter shape (measured cold on the 2-core VM: 0.08-0.2 s each, 0.8-0.9 s for the GRU-64 meta-learner's
    six parameters). Here every shape up to :data:`UNIFORM_INIT_COUNT` numbers draws that many from one program,
    with the bounds as arguments, and keeps the first ``prod(shape)``: with partitionable threefry (JAX's
    default) number i of a draw depends on the key and i only, so the prefix, reshaped row-major, is the draw of
    ``shape`` (0.30-0.34 s for the same model). Under a trace, where nothing compiles per shape, and for a PRNG
    whose draws are not prefix-stable, it is ``jax.random.uniform`` itself. A :class:`jax_impl.host_random.HostKey`
    (a model built with ``HostRngs``) is drawn on the host in numpy, the same bits without any program.
    """
    if isinstance(key, HostKey):
        return jax.device_put(symmetric_uniform(key.data, shape, jnp.dtype(dtype), bound))
    if isinstance(key, jax.core.Tracer) or not _prefix_stable(key):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    size = math.prod(shape)
    count = max(UNIFORM_INIT_COUNT, 1 << max(size - 1, 0).bit_length())
    drawn = _uniform_program(count, jnp.dtype(dtype))(key, -bound, bound)
    # sliced on the host and put back with device_put: slicing on the device, or jnp.asarray of a numpy array (it
    # stages the value), compiles a program per shape
    return jax.device_put(np.asarray(drawn)[:size].reshape(shape))


def _prefix_stable(key: jax.Array) -> bool:
    impl = jax.random.key_impl(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else None
    return bool(jax.config.jax_threefry_partitionable) and impl is not None and "threefry" in str(impl)


@functools.lru_cache(maxsize=None)
def _uniform_program(count: int, dtype) -> Callable:
    return jax.jit(lambda key, low, high: jax.random.uniform(key, (count,), dtype, low, high))
