"""Training the amortized posterior: plain SGD, one query per step, for one or many simulated participants.

Every participant (seed) has its own initial weights and its own stream of training queries; step k
updates the weights on query k alone with grad KL(q || p)(query k): plain SGD, w <- w - lr g, as in the
paper, or Adam (``optimizer="adam"``, torch's defaults; ``cogmeta.experiments.amortized_spec``).

- :func:`train_participant`: one participant, a ``lax.scan`` over steps of a pure step function.
- :func:`train_population_on`: S participants in ONE compiled program, ``jax.vmap`` over participants
  of the same ``lax.scan``.
- :func:`train_population`: initialise, sample the training queries natively, train.
- :func:`predict_log_odds`: the model's posterior log-odds for every participant's queries.

Weights go in and out as canonical numpy dictionaries (``[S, ...]`` for a population), so the PyTorch
twin (``torch_impl/amortized_training.py``, same function names) can be given the same weights and
queries. The model is ``nnx.split`` once; the traced code merges it back (see ``jax_impl/training.py``).
Both twins keep their step machinery private (here ``_make_run``, a pure ``lax.scan`` of K steps; in
PyTorch ``_population_logits``, the batched forward pass of S stacked participants): the public names
are the same seven in both.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cogmeta.config import TrainConfig
from cogmeta.experiments.amortized_spec import (
    ADAM_BETAS,
    ADAM_EPS,
    PARAMETER_NAMES,
    check_optimizer,
    validate_weights,
)
from cogmeta.tasks.urn import UrnQueries, UrnQueryDistribution
from jax_impl.amortized import AmortizedPosterior, get_weights, kl_loss, model_log_odds
from jax_impl.numerics import resolve_dtype
from jax_impl.optim import adam_step, init_adam
from jax_impl.urn_samplers import sample_queries, seed_key

#: Adam's constants (torch.optim.Adam's defaults) for ``jax_impl.optim.adam_step``.
ADAM = TrainConfig(adam_beta1=ADAM_BETAS[0], adam_beta2=ADAM_BETAS[1], adam_eps=ADAM_EPS)


def _hidden(weights: Mapping[str, np.ndarray], population: bool) -> int:
    return int(np.shape(weights["rbf.beta"])[1 if population else 0])


def _split(hidden: int, dtype) -> tuple[nnx.GraphDef, nnx.State]:
    return nnx.split(AmortizedPosterior(hidden, rngs=nnx.Rngs(0), dtype=dtype))


def _to_state(template: nnx.State, weights: Mapping[str, np.ndarray], dtype) -> nnx.State:
    """Canonical dictionary -> the model's parameter state (leading axes kept, e.g. ``[S, ...]``)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: jnp.asarray(np.asarray(weights[f"{path[0].key}.{path[1].key}"]), dtype), template)


def _to_weights(state: nnx.State) -> dict[str, np.ndarray]:
    """Parameter state -> canonical dictionary of numpy arrays."""
    flat = {f"{path[0].key}.{path[1].key}": np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]}
    return {name: flat[name] for name in PARAMETER_NAMES}


def _make_run(graphdef: nnx.GraphDef, optimizer: str = "sgd") -> Callable:
    """Pure ``run(params, inputs [K, 6], log_odds [K], lr) -> (params, losses [K])``: K steps in a ``lax.scan``.

    SGD: p <- p - lr g. Adam: ``jax_impl.optim.adam_step`` (no clipping); its state starts at zero
    inside ``run``.
    """
    adam = check_optimizer(optimizer) == "adam"

    def loss(params, x, target):
        return kl_loss(nnx.merge(graphdef, params)(x), target)

    loss_and_grad = jax.value_and_grad(loss)

    def run(params, inputs, log_odds, learning_rate):
        def step(carry, query):
            params, state = carry
            x, target = query
            value, grads = loss_and_grad(params, x[None], target[None])
            if adam:
                return adam_step(params, grads, state, learning_rate, ADAM), value
            return (jax.tree.map(lambda p, g: p - learning_rate * g, params, grads), state), value

        state = init_adam(params) if adam else ()
        (params, _), losses = jax.lax.scan(step, (params, state), (inputs, log_odds))
        return params, losses

    return run


def train_participant(weights: Mapping[str, np.ndarray], inputs: np.ndarray, log_odds: np.ndarray, learning_rate: float,
                      dtype: str = "float32", optimizer: str = "sgd") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Train one participant over ``inputs [K, 6]`` / ``log_odds [K]``, one query per step.

    Returns:
        (final canonical weights, per-step losses ``[K]`` evaluated before each update).
    """
    with jax.enable_x64(dtype == "float64"):
        dt = resolve_dtype(dtype)
        validate_weights(weights, _hidden(weights, False))
        graphdef, template = _split(_hidden(weights, False), dt)
        run = jax.jit(_make_run(graphdef, optimizer))
        params, losses = run(_to_state(template, weights, dt), jnp.asarray(inputs, dt), jnp.asarray(log_odds, dt),
                             jnp.asarray(learning_rate, dt))
        return _to_weights(params), np.asarray(losses)


def init_population(hidden: int, seeds: Sequence[int], dtype: str = "float32") -> dict[str, np.ndarray]:
    """Initial weights ``[S, ...]``: participant ``seed`` is an ``AmortizedPosterior`` built with ``nnx.Rngs(seed)``."""
    with jax.enable_x64(dtype == "float64"):
        per_seed = [get_weights(AmortizedPosterior(hidden, rngs=nnx.Rngs(int(seed)), dtype=resolve_dtype(dtype)))
                    for seed in seeds]
    return {name: np.stack([w[name] for w in per_seed]) for name in PARAMETER_NAMES}


def sample_training_queries(distributions: Sequence[UrnQueryDistribution], seeds: Sequence[int], steps: int,
                            dtype: str = "float32") -> UrnQueries:
    """Training queries ``[S, steps, ...]`` (numpy): query k of a participant comes from distribution k mod D.

    Participant ``seed`` draws distribution j's queries from ``fold_in(seed_key(seed), j)``; all
    participants are sampled by one ``vmap``-ed, jitted call per distribution.
    """
    per_part = math.ceil(steps / len(distributions))
    with jax.enable_x64(dtype == "float64"):
        dt = resolve_dtype(dtype)
        keys = jax.vmap(seed_key)(jnp.asarray([int(s) for s in seeds]))
        parts = []
        for j, spec in enumerate(distributions):
            draw = jax.jit(jax.vmap(lambda key: sample_queries(spec, jax.random.fold_in(key, j), per_part, dt)))
            parts.append(jax.tree.map(np.asarray, draw(keys)))
    return UrnQueries(*(np.stack([q[f] for q in parts], axis=2).reshape(
        (len(seeds), -1) + parts[0][f].shape[2:])[:, :steps] for f in range(len(UrnQueries._fields))))


def train_population_on(weights: Mapping[str, np.ndarray], inputs: np.ndarray, log_odds: np.ndarray,
                        learning_rate: float, dtype: str = "float32",
                        optimizer: str = "sgd") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """S participants in one compiled program: ``jax.vmap`` over participants of a ``lax.scan``.

    Args:
        weights: canonical weights ``[S, ...]``.
        inputs: ``[S, K, 6]``; log_odds: ``[S, K]`` (participant s trains on its own K queries).

    Returns:
        (final weights ``[S, ...]``, losses ``[S, K]`` before each update).
    """
    validate_weights(weights, _hidden(weights, True), population=True)
    with jax.enable_x64(dtype == "float64"):
        dt = resolve_dtype(dtype)
        graphdef, template = _split(_hidden(weights, True), dt)
        run = jax.jit(jax.vmap(_make_run(graphdef, optimizer), in_axes=(0, 0, 0, None)))
        params, losses = run(_to_state(template, weights, dt), jnp.asarray(inputs, dt), jnp.asarray(log_odds, dt),
                             jnp.asarray(learning_rate, dt))
        return _to_weights(params), np.asarray(losses)


def train_population(distributions: Sequence[UrnQueryDistribution], seeds: Sequence[int], *, hidden: int,
                     learning_rate: float, steps: int, dtype: str = "float32", optimizer: str = "sgd") -> dict[str, np.ndarray]:
    """Initialise S participants, sample their training queries natively and train them: weights ``[S, ...]``."""
    queries = sample_training_queries(distributions, seeds, steps, dtype)
    weights, _ = train_population_on(init_population(hidden, seeds, dtype), queries.inputs, queries.log_odds,
                                     learning_rate, dtype, optimizer)
    return weights


def predict_log_odds(weights: Mapping[str, np.ndarray], inputs: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """Model log-odds ``[S, Q]`` (float64) of ``weights [S, ...]`` on ``inputs [S, Q, 6]`` (or shared ``[Q, 6]``)."""
    with jax.enable_x64(dtype == "float64"):
        dt = resolve_dtype(dtype)
        graphdef, template = _split(_hidden(weights, True), dt)
        in_x = None if np.ndim(inputs) == 2 else 0
        forward = jax.vmap(lambda p, x: model_log_odds(nnx.merge(graphdef, p)(x)), in_axes=(0, in_x))
        return np.asarray(jax.jit(forward)(_to_state(template, weights, dt), jnp.asarray(inputs, dt))).astype(np.float64)
