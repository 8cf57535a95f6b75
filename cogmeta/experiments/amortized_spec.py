"""Framework-free facts about the amortized-inference model both backends implement.

Canonical parameter names and shapes (torch ``state_dict`` layout, ``weight`` is ``(out, in)``), the
RBF layer's initial values, the optimizers, and validation of a weights dictionary.

Optimizers (one query per step, as in the paper): ``"sgd"``, w <- w - lr g (the paper's); ``"adam"``,
torch.optim.Adam's defaults (b1 = .9, b2 = .999, eps = 1e-8, bias-corrected moments), which both sides
apply with the functional ``adam_step`` of ``torch_impl.optim`` / ``jax_impl.optim``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from cogmeta._validation import require_int
from cogmeta.tasks.urn import QUERY_FEATURES
from cogmeta.weights import WeightsError, check_tensors

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
    """Raise ``WeightsError`` (a ValueError) naming the tensor unless ``weights`` has exactly the canonical
    names and shapes; with ``population=True`` every tensor carries the same leading seed axis ``[S, ...]``."""
    shapes = parameter_shapes(hidden)
    if population:
        first = np.asarray(next(iter(weights.values()))) if weights else np.zeros(0)
        members = first.shape[0] if first.ndim else 0
        if members == 0:
            raise WeightsError(f"amortized population weights need a non-empty leading seed axis, got shape {first.shape}")
        shapes = {name: (members, *shape) for name, shape in shapes.items()}
    check_tensors(weights, shapes, f"the amortized model with hidden = {hidden}"
                  + (f" and {shapes['input.bias'][0]} members" if population else ""))