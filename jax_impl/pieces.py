"""A compiled function over a batch in pieces of one size, so that every batch size shares one program.

``jit`` compiles a program for every new shape (framework-differences 5.2). Where a batch's items are independent
(an item's outputs depend on that item alone: the tutorial model's held-out tasks, RL²'s played episodes),
:func:`in_pieces` pads the items to a multiple of one size by repeating the last item, calls the function on
pieces of that size and cuts the outputs back to the batch: the held-out checks, the figures and the summaries
of a run then share one program instead of compiling one per size (0.20-0.96 s each, cold, on the 2-core VM).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np


def in_pieces(fn: Callable[[Any], Any], batch, axes, size: int, out_axis: int = 1, name: str = "items",
              placed: jax.sharding.Sharding | None = None):
    """``fn``'s outputs on ``batch``, computed ``size`` items per call.

    Args:
        fn: a (jitted) function of one batch pytree of device arrays; its outputs are a pytree of arrays whose
            axis ``out_axis`` indexes the items.
        batch: a pytree of numpy arrays (already of the dtype ``fn`` takes), with the same number of items on
            every leaf's item axis.
        axes: the item axis of each leaf: an int for a single array, or a pytree of ints matching ``batch``.
        size: items per call.
        out_axis: the item axis of every output.
        name: what the items are, for the error on an empty batch.
        placed: where every leaf of a piece goes (e.g. its items split over a mesh); None: the default device,
            uncommitted.

    Returns:
        ``fn``'s outputs as numpy arrays, concatenated over the pieces and cut to the batch's items. The padding
        repeats the last item, so every piece holds valid input; its outputs are dropped.
    """
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(batch)]
    leaf_axes = jax.tree.leaves(axes)  # an int is a pytree of one leaf
    count = leaves[0].shape[leaf_axes[0]]
    if count < 1:
        raise ValueError(f"the batch holds no {name}; give at least one")
    padded_count = -(-count // size) * size

    def pad(leaf, axis):
        widths = [(0, 0)] * leaf.ndim
        widths[axis] = (0, padded_count - leaf.shape[axis])
        return np.pad(leaf, widths, mode="edge")

    padded = [pad(leaf, axis) for leaf, axis in zip(leaves, leaf_axes)]
    treedef = jax.tree.structure(batch)
    outputs = []
    for start in range(0, count, size):
        # device_put, not jnp.asarray: jax 0.10 stages an ndarray given to jnp.asarray through a program per shape
        piece = [jax.device_put(np.take(leaf, np.arange(start, start + size), axis=axis), placed)
                 for leaf, axis in zip(padded, leaf_axes)]
        outputs.append(jax.tree.map(np.asarray, fn(jax.tree.unflatten(treedef, piece))))
    keep = (slice(None),) * out_axis + (slice(0, count),)
    return jax.tree.map(lambda *parts: np.concatenate(parts, axis=out_axis)[keep], *outputs)
