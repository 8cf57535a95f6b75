"""JAX's threefry random numbers computed on the host with numpy, bit for bit, for drawing a model's initial weights.

Every eager JAX operation runs a compiled program: building the tutorial's GRU-64 with ``nnx.Rngs`` runs eight
(the seed's key, Flax's ``fold_in`` per parameter and its counter, the uniform draw, ...), each compiled on a
machine's first run and loaded from the persistent cache on later ones (~25 ms each on the 2-core VM: 0.35 s of a
warm ``cogmeta train --until-kl`` run's 0.65-0.8 s of training). The arithmetic itself is a few thousand integer
operations, so :class:`HostRngs` does it in numpy and compiles nothing.

What it reproduces (jax 0.10's ``threefry2x32`` PRNG with ``jax_threefry_partitionable``, its default):

- the key of integer seed s: ``[s >> 32, s & 0xFFFFFFFF]`` (``jax.random.key``);
- ``fold_in(key, d)``: ``threefry2x32(key, [0], [d])`` (``jax.random.fold_in``);
- Flax's ``RngStream``: the i-th key drawn (0-based, every stream name sharing one counter when only ``default``
  exists, as in ``nnx.Rngs(seed)``) is ``fold_in(key(seed), i)``;
- bits of number i of a draw: ``threefry2x32(key, [i >> 32], [i & 0xFFFFFFFF])``, the two words XORed (32-bit)
  or concatenated (64-bit); a uniform in [1, 2) from the top mantissa bits, minus 1: f in [0, 1);
- ``uniform(key, shape, dtype, -b, b)`` = ``f (2b) + (-b)``, which XLA evaluates as one fused multiply-add, i.e.
  the exact value ``b (2f - 1)`` rounded once. Here ``2f - 1`` is exact in ``dtype`` (f is an integer multiple of
  the mantissa's last bit), so ``b * (2f - 1)`` rounds that same real once: the same bits.

Threefry-2x32 with 20 rounds is specified by Salmon et al. (2011), "Parallel random numbers: as easy as 1, 2, 3"
(SC'11): the rotation constants and the key-schedule parity 0x1BD11BDA below are theirs.
``tests/test_host_random.py`` checks every piece against JAX bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

#: Threefry-2x32's rotation distances, alternating by group of four rounds (Salmon et al. 2011, Table 4).
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
#: The key schedule's third word is k0 ^ k1 ^ this constant (Salmon et al. 2011).
_PARITY = np.uint32(0x1BD11BDA)


def threefry2x32(key: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Threefry-2x32 (20 rounds) of the counter pairs ``(x0, x1)`` (uint32 arrays of one shape) under ``key``
    (uint32 ``[2]``): two uint32 arrays of that shape."""
    k0, k1 = np.uint32(key[0]), np.uint32(key[1])
    schedule = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0 + schedule[0], x1 + schedule[1]
    for group in range(5):
        for distance in _ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = ((x1 << np.uint32(distance)) | (x1 >> np.uint32(32 - distance))) ^ x0
        x0 = x0 + schedule[(group + 1) % 3]
        x1 = x1 + schedule[(group + 2) % 3] + np.uint32(group + 1)
    return x0, x1


def seed_key(seed: int) -> np.ndarray:
    """``jax.random.key_data(jax.random.key(seed))`` for ``0 <= seed < 2**32``: uint32 ``[2]``."""
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed_key: seed must lie in [0, 2**32), got {seed}")
    return np.array([0, seed], np.uint32)


def fold_in(key: np.ndarray, data: int) -> np.ndarray:
    """``jax.random.fold_in`` of uint32 ``[2]`` key data and ``0 <= data < 2**32``: uint32 ``[2]``."""
    y0, y1 = threefry2x32(key, np.zeros(1, np.uint32), np.array([data], np.uint32))
    return np.concatenate([y0, y1])


def random_bits(key: np.ndarray, count: int, width: int) -> np.ndarray:
    """The first ``count`` numbers of ``jax.random.bits(key, (count,), uint<width>)`` (width 32 or 64)."""
    index = np.arange(count, dtype=np.uint64)
    high, low = (index >> np.uint64(32)).astype(np.uint32), (index & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    bits0, bits1 = threefry2x32(key, high, low)
    if width == 32:
        return bits0 ^ bits1
    return (bits0.astype(np.uint64) << np.uint64(32)) | bits1.astype(np.uint64)


def symmetric_uniform(key: np.ndarray, shape: tuple[int, ...], dtype, bound: float) -> np.ndarray:
    """``jax.random.uniform(key, shape, dtype, -bound, bound)`` bit for bit (float32 or float64; see the module
    docstring for why ``b (2f - 1)`` is what XLA computes)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"symmetric_uniform: dtype must be float32 or float64, got {dtype}")
    width = dtype.itemsize * 8
    unsigned = np.uint32 if width == 32 else np.uint64
    bits = random_bits(key, math.prod(shape), width).astype(unsigned)
    one = np.array(1.0, dtype).view(unsigned)
    fraction = ((bits >> unsigned(width - np.finfo(dtype).nmant)) | one).view(dtype) - dtype.type(1.0)  # f in [0, 1)
    return (dtype.type(bound) * (dtype.type(2.0) * fraction - dtype.type(1.0))).reshape(shape)


class HostKey:
    """A threefry key held on the host (uint32 ``[2]`` ``data``), as :class:`HostRngs` hands them out. Only
    ``jax_impl.linear.uniform_init`` draws from it; :meth:`device` is the same key as a JAX key for anything else."""

    __slots__ = ("data",)

    def __init__(self, data: np.ndarray):
        self.data = data

    def device(self):
        """The JAX key with these data (``jax.random.wrap_key_data``: one eager program)."""
        import jax

        return jax.random.wrap_key_data(self.data, impl="threefry2x32")


class HostRngs:
    """``nnx.Rngs(seed)`` for modules that only ask it for keys (``rngs.params()``, ``rngs()``, any stream name):
    the i-th key is ``fold_in(key(seed), i)``, as Flax's default stream gives it, as a :class:`HostKey`.

    The tutorial's meta-learner and RL²'s agent are built with it (their every draw is a ``uniform_init``); a module
    that keeps its ``rngs`` or passes a key to another ``jax.random`` function needs ``nnx.Rngs``.
    """

    def __init__(self, seed: int):
        self._key, self._count = seed_key(int(seed)), 0

    def __call__(self) -> HostKey:
        key = HostKey(fold_in(self._key, self._count))
        self._count += 1
        return key

    def __getattr__(self, stream: str):
        if stream.startswith("__"):
            raise AttributeError(stream)
        return self  # every stream shares the default stream's counter, as in nnx.Rngs(seed)


def initial_rngs(seed: int):
    """The ``rngs`` to build a model of run ``seed`` with: :class:`HostRngs` where it reproduces ``nnx.Rngs(seed)``
    (:func:`host_rngs_supported`), else ``nnx.Rngs(seed)`` itself; the same weights either way."""
    from flax import nnx

    return HostRngs(seed) if host_rngs_supported(seed) else nnx.Rngs(seed)


def host_rngs_supported(seed: int) -> bool:
    """Whether :class:`HostRngs` reproduces ``nnx.Rngs(seed)``: JAX's default threefry PRNG with partitionable
    bits (its default since jax 0.5) and a seed in [0, 2**32)."""
    import jax

    return (jax.config.jax_default_prng_impl == "threefry2x32" and bool(jax.config.jax_threefry_partitionable)
            and 0 <= int(seed) < 2**32)


__all__ = ["HostKey", "HostRngs", "fold_in", "host_rngs_supported", "initial_rngs", "random_bits", "seed_key", "symmetric_uniform",
           "threefry2x32"]
