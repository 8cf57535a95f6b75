"""Canonical weights <-> a Flax NNX model.

The model's parameter paths joined with "." *are* the canonical (torch ``state_dict``) names, e.g.
``("core", "weight_ih_l0")`` -> ``core.weight_ih_l0``, so conversion is a copy.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def _named_leaves(state: nnx.State) -> dict[str, Any]:
    """``{dotted name: leaf}`` of a params state (arrays, or ``jax.ShapeDtypeStruct`` of an abstract one)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            flat[prefix] = node

    walk("", nnx.to_pure_dict(state))
    return flat


def state_to_canonical(state: nnx.State) -> dict[str, np.ndarray]:
    """A params ``nnx.State`` as ``{dotted name: numpy array}``."""
    return {name: np.array(leaf) for name, leaf in _named_leaves(state).items()}


def abstract_split(build: Callable[[], nnx.Module], *filters) -> tuple[nnx.GraphDef, nnx.State]:
    """``nnx.split`` of the module ``build()`` makes, without making it: shapes and dtypes only (``nnx.eval_shape``).

    Drawing real initial weights just to learn a model's structure runs one eager XLA program per initialiser
    (about 0.3 s of a short run's start-up); the abstract state is a template for :func:`canonical_to_state`.
    """
    return nnx.split(nnx.eval_shape(build), *filters)


def canonical_to_state(template: nnx.State, tensors: Mapping[str, np.ndarray]) -> nnx.State:
    """A new ``nnx.State`` shaped like ``template`` (concrete or abstract: only its names, shapes and dtypes are
    read) holding ``tensors``, cast to the template's dtypes."""
    own = _named_leaves(template)
    missing = [name for name in own if name not in tensors]
    extra = [name for name in tensors if name not in own]
    if missing or extra:
        raise ValueError(f"weights do not match the model: missing {missing}, unexpected {extra}")
    nested: dict = {}
    for name, target in own.items():
        value = np.asarray(tensors[name])
        if value.shape != target.shape:
            raise ValueError(f"tensor {name!r} has shape {value.shape}, the model expects {target.shape}")
        node = nested
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = jnp.asarray(value, dtype=target.dtype)
    state = jax.tree.map(lambda leaf: leaf, template)  # a new State; its leaves are immutable arrays
    nnx.replace_by_pure_dict(state, nested)
    return state


def model_to_canonical(model: nnx.Module) -> dict[str, np.ndarray]:
    """The model's parameters as canonical numpy arrays."""
    return state_to_canonical(nnx.state(model, nnx.Param))


def load_canonical(model: nnx.Module, tensors: Mapping[str, np.ndarray]) -> None:
    """Copy canonical arrays into ``model`` (cast to its dtype); names and shapes must match exactly."""
    nnx.update(model, canonical_to_state(nnx.state(model, nnx.Param), tensors))

