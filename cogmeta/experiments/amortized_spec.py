"""Framework-free facts about the amortized-inference model both backends implement.

Canonical parameter names and shapes (torch ``state_dict`` layout, ``weight`` is ``(out, in)``), the
RBF layer's initial values, the optimizers, and validation of a weights dictionary.

Optimizers (one query per step, as in the paper): ``"sgd"``, w <- w - lr g (the paper's); ``"adam"``,
torch.optim.Adam with its defaults (b1 = .9, b2 = .999, eps = 1e-8, bias-corrected moments), which the
JAX side computes with ``jax_impl.optim.scale_by_adam_torch``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from cogmeta._validation import require_int
from cogmeta.tasks.urn import QUERY_FEATURES

#: Initial RBF width and centre (the paper's ``MLP_disc``).
BETA_INIT, CENTRE_INIT = 0.1, 0.0
#: Canonical parameter names, in the order of the forward pass.
PARAMETER_NAMES = ("input.weight", "input.bias", "rbf.beta", "rbf.centre", "output.weight", "output.bias")
#: Optimizers both backends offer; the first is the paper's.
OPTIMIZERS = ("sgd", "adam")
#: torch.optim.Adam's defaults.
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


def check_optimizer(name: str) -> str:
    """The optimizer name, or a ValueError listing the choices."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return name


def check_hidden(hidden: int) -> int:
    """H, the number of RBF units: an integer >= 1."""
    return require_int("AmortizedPosterior", "hidden", hidden, 1, 100_000)


def parameter_shapes(hidden: int) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape for H = ``hidden`` units."""
    h = check_hidden(hidden)
    return {"input.weight": (h, QUERY_FEATURES), "input.bias": (h,), "rbf.beta": (h,), "rbf.centre": (h,),
            "output.weight": (2, h), "output.bias": (2,)}


def validate_weights(weights: Mapping[str, np.ndarray], hidden: int, *, population: bool = False) -> None:
    """Raise ValueError naming the tensor unless ``weights`` has exactly the canonical names and shapes.

    With ``population=True`` every tensor carries a leading seed axis ``[S, ...]`` (the same S for all).
    """
    shapes = parameter_shapes(hidden)
    missing, extra = sorted(set(shapes) - set(weights)), sorted(set(weights) - set(shapes))
    if missing or extra:
        raise ValueError(f"amortized-model weights: missing {missing}, unexpected {extra}")
    leading = None
    for name, shape in shapes.items():
        value = np.asarray(weights[name])
        if population:
            if value.ndim < 1 or value.shape[0] == 0 or (leading is not None and value.shape[0] != leading):
                raise ValueError(f"weights {name!r}: expected a non-empty leading seed axis"
                                 f"{'' if leading is None else f' of size {leading}'}, got shape {value.shape}")
            leading = value.shape[0]
            value = value[0]
        if tuple(value.shape) != shape:
            expected = f"(S, {', '.join(map(str, shape))})" if population else str(shape)
            raise ValueError(f"weights {name!r}: shape {tuple(np.shape(weights[name]))}, expected {expected} "
                             f"for hidden = {hidden}")
        if not np.all(np.isfinite(np.asarray(weights[name]))):
            raise ValueError(f"weights {name!r} contain non-finite values")
