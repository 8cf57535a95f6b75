"""Framework-free facts about the amortized-inference model both backends implement.

Canonical parameter names and shapes (torch ``state_dict`` layout, ``weight`` is ``(out, in)``), the
RBF layer's initial values, the optimizers, validation of a weights dictionary and of a population's
training queries, the recipe the one trainer runs (:func:`train_config`) and what a population's
training returns (:class:`PopulationRun`).

Optimizers (one query per step, as in the paper): ``"sgd"``, w <- w - lr g (the paper's); ``"adam"``,
torch.optim.Adam's defaults (b1 = .9, b2 = .999, eps = 1e-8, bias-corrected moments). Both are the one
trainer's (``torch_impl.trainer`` / ``jax_impl.trainer``), at a constant learning rate and without
clipping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from cogmeta._validation import require_int
from cogmeta.config import TrainConfig
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


def train_config(steps: int, learning_rate: float, optimizer: str = "sgd", dtype: str = "float32") -> TrainConfig:
    """The one trainer's recipe for a participant: ``steps`` updates of one query each (``batch_size`` 1) at
    the constant ``learning_rate``, by ``optimizer`` (:data:`OPTIMIZERS`; Adam with torch's defaults),
    without gradient clipping, in ``dtype``."""
    return TrainConfig(steps=steps, batch_size=1, learning_rate=learning_rate, schedule="constant",
                       optimizer=check_optimizer(optimizer), clip_norm=None, adam_beta1=ADAM_BETAS[0],
                       adam_beta2=ADAM_BETAS[1], adam_eps=ADAM_EPS, dtype=dtype)


def check_queries(inputs: np.ndarray, log_odds: np.ndarray, seeds: Sequence[int] | None) -> tuple[int, ...]:
    """Validate a population's training queries; returns the participants' seeds (default 0 .. S-1).

    ``inputs [S, K, 6]``: participant s trains on ``inputs[s, k]`` at step k; ``log_odds [S, K]``: the
    exact posterior log-odds of those queries; ``seeds``: S distinct integers, participant s's seed.
    """
    inputs, log_odds = np.asarray(inputs), np.asarray(log_odds)
    if inputs.ndim != 3 or inputs.shape[-1] != QUERY_FEATURES or inputs.shape[0] < 1 or inputs.shape[1] < 1:
        raise ValueError(f"training inputs must have shape [participants, steps, {QUERY_FEATURES}] with at least one "
                         f"of each, got {inputs.shape}")
    if log_odds.shape != inputs.shape[:2]:
        raise ValueError(f"training log_odds must have shape [participants, steps] = {inputs.shape[:2]} (one per "
                         f"query of inputs), got {log_odds.shape}")
    seeds = tuple(range(inputs.shape[0])) if seeds is None else tuple(int(seed) for seed in seeds)
    if len(seeds) != inputs.shape[0] or len(set(seeds)) != len(seeds):
        raise ValueError(f"need {inputs.shape[0]} distinct seeds, one per participant of the training queries, got "
                         f"{list(seeds)}")
    return seeds


@dataclass
class PopulationRun:
    """What training a population returns (``train_population`` of ``torch_impl.amortized`` / ``jax_impl.amortized``).

    Attributes:
        weights: canonical weights ``[S, ...]``, participant s at index s.
        steps: ``[S]`` updates applied to each participant.
        stopped: ``[S]`` bool: a non-finite loss or gradient stopped the participant (it diverged; its
            weights are not meaningful and analyses leave it out).
    """

    weights: dict[str, np.ndarray]
    steps: np.ndarray
    stopped: np.ndarray
