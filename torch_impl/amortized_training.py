"""Training the amortized posterior: plain SGD, one query per step, for one or many simulated participants.

Every participant (seed) has its own initial weights and its own stream of training queries; step k
updates the weights on query k alone with grad KL(q || p)(query k): plain SGD, w <- w - lr g, as in the
paper, or Adam (``optimizer="adam"``, torch's defaults; ``cogmeta.experiments.amortized_spec``).

- :func:`train_participant`: one participant, an ``nn.Module`` trained one query per step.
- :func:`train_population_on`: S participants in lockstep on stacked parameters (batched matmuls and
  one backward pass per step), one Python iteration per step.
- :func:`train_population`: initialise, sample the training queries natively, train.
- :func:`predict_log_odds`: the model's posterior log-odds for every participant's queries.

Weights go in and out as canonical numpy dictionaries (``[S, ...]`` for a population), so the JAX twin
(``jax_impl/amortized_training.py``, same function names) can be given the same weights and queries.
The population's forward pass is the private ``_population_logits`` (batched matmuls over the seed axis;
the JAX twin ``vmap``s its private ``_make_run`` instead).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch

from cogmeta.config import TrainConfig
from cogmeta.experiments.amortized_spec import (
    ADAM_BETAS,
    ADAM_EPS,
    PARAMETER_NAMES,
    check_optimizer,
    validate_weights,
)
from cogmeta.tasks.urn import UrnQueries, UrnQueryDistribution
from torch_impl.amortized import (
    AmortizedPosterior,
    get_weights,
    kl_divergence,
    kl_loss,
    model_log_odds,
    set_weights,
)
from torch_impl.numerics import resolve_dtype
from torch_impl.optim import AdamState, adam_step, init_adam
from torch_impl.urn_samplers import sample_queries, seed_generator

#: Adam's constants (torch.optim.Adam's defaults) for ``torch_impl.optim.adam_step``.
ADAM = TrainConfig(adam_beta1=ADAM_BETAS[0], adam_beta2=ADAM_BETAS[1], adam_eps=ADAM_EPS)


def _hidden(weights: Mapping[str, np.ndarray], population: bool) -> int:
    return int(np.shape(weights["rbf.beta"])[1 if population else 0])


def _init_optimizer(params: Mapping[str, torch.Tensor], name: str) -> AdamState | None:
    """The optimizer state for ``params``: ``None`` for SGD, ``torch_impl.optim.init_adam`` for Adam.

    Adam's state is elementwise, so one Adam over stacked ``[S, ...]`` tensors is S independent Adams.
    """
    return init_adam(params) if check_optimizer(name) == "adam" else None


def _apply_update(params: Mapping[str, torch.Tensor], state: AdamState | None, learning_rate: float) -> None:
    """One update from the gradients ``params[n].grad``, in place: SGD, p <- p - lr g (``torch.optim.SGD``'s
    ``p.add_(g, alpha=-lr)``), when ``state`` is None; else ``torch_impl.optim.adam_step`` (no clipping),
    its new state written into ``state``."""
    with torch.no_grad():
        if state is None:
            for param in params.values():
                param.add_(param.grad, alpha=-learning_rate)
            return
        new_params, new_state = adam_step(params, {n: p.grad for n, p in params.items()}, state, learning_rate, ADAM)
        for name, param in params.items():
            param.copy_(new_params[name])
            state.exp_avg[name].copy_(new_state.exp_avg[name])
            state.exp_avg_sq[name].copy_(new_state.exp_avg_sq[name])
        state.count.copy_(new_state.count)


def train_participant(weights: Mapping[str, np.ndarray], inputs: np.ndarray, log_odds: np.ndarray, learning_rate: float,
                      dtype: str = "float32", optimizer: str = "sgd") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Train one participant over ``inputs [K, 6]`` / ``log_odds [K]``, one query per step.

    Returns:
        (final canonical weights, per-step losses ``[K]`` evaluated before each update).
    """
    dt = resolve_dtype(dtype)
    model = set_weights(AmortizedPosterior(_hidden(weights, False), dtype=dt), weights)
    params = dict(model.named_parameters())
    state = _init_optimizer(params, optimizer)
    x, target = torch.as_tensor(np.asarray(inputs), dtype=dt), torch.as_tensor(np.asarray(log_odds), dtype=dt)
    losses = torch.empty(x.shape[0], dtype=dt)
    for k in range(x.shape[0]):
        for param in params.values():
            param.grad = None
        loss = kl_loss(model(x[k : k + 1]), target[k : k + 1])
        loss.backward()
        _apply_update(params, state, learning_rate)
        losses[k] = loss.detach()
    return get_weights(model), losses.numpy()


def init_population(hidden: int, seeds: Sequence[int], dtype: str = "float32") -> dict[str, np.ndarray]:
    """Initial weights ``[S, ...]``: participant ``seed`` is an ``AmortizedPosterior`` built after ``manual_seed(seed)``."""
    per_seed = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            per_seed.append(get_weights(AmortizedPosterior(hidden, dtype=resolve_dtype(dtype))))
    return {name: np.stack([w[name] for w in per_seed]) for name in PARAMETER_NAMES}


def sample_training_queries(distributions: Sequence[UrnQueryDistribution], seeds: Sequence[int], steps: int,
                            dtype: str = "float32") -> UrnQueries:
    """Training queries ``[S, steps, ...]`` (numpy): query k of a participant comes from distribution k mod D.

    Participant ``seed`` draws distribution j's queries from ``seed_generator`` of ``(seed, j)``.
    """
    per_part = math.ceil(steps / len(distributions))
    rows = []
    for seed in seeds:
        parts = [sample_queries(spec, seed_generator(int(seed), j), per_part, resolve_dtype(dtype))
                 for j, spec in enumerate(distributions)]
        rows.append([np.stack([q[f].numpy() for q in parts], axis=1).reshape((-1,) + tuple(parts[0][f].shape[1:]))[:steps]
                     for f in range(len(UrnQueries._fields))])
    return UrnQueries(*(np.stack([row[f] for row in rows]) for f in range(len(UrnQueries._fields))))


def _population_logits(params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """:class:`AmortizedPosterior`'s forward pass for S stacked participants: ``x [S, B, 6]`` -> ``[S, B, 2]``.

    ``params`` holds canonical tensors with a leading seed axis (``input.weight [S, H, 6]``, ...).
    Written with batched matmuls instead of ``torch.func.vmap`` over ``functional_call``, whose
    per-call overhead dominates for a model this small (measured ~4 ms vs ~0.3 ms per step, S = 20).
    """
    a = torch.matmul(x, params["input.weight"].transpose(1, 2)) + params["input.bias"][:, None, :]
    phi = torch.exp(-params["rbf.beta"][:, None, :] * (a - params["rbf.centre"][:, None, :]) ** 2)
    return torch.matmul(phi, params["output.weight"].transpose(1, 2)) + params["output.bias"][:, None, :]


def train_population_on(weights: Mapping[str, np.ndarray], inputs: np.ndarray, log_odds: np.ndarray,
                        learning_rate: float, dtype: str = "float32",
                        optimizer: str = "sgd") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """S participants in lockstep: ``weights [S, ...]``, ``inputs [S, K, 6]``, ``log_odds [S, K]``.

    Step k backpropagates the *sum* over participants of each one's loss on its own query k; as no
    participant's loss depends on another's weights, each gets exactly its own gradient, so participant s
    follows the updates of :func:`train_participant` on its own queries (SGD and Adam act elementwise).

    Returns:
        (final weights ``[S, ...]``, losses ``[S, K]`` before each update).
    """
    validate_weights(weights, _hidden(weights, True), population=True)
    dt = resolve_dtype(dtype)
    params = {name: torch.as_tensor(np.array(weights[name]), dtype=dt).requires_grad_(True) for name in PARAMETER_NAMES}
    x, target = torch.as_tensor(np.asarray(inputs), dtype=dt), torch.as_tensor(np.asarray(log_odds), dtype=dt)
    losses = torch.empty(x.shape[:2], dtype=dt)
    state = _init_optimizer(params, optimizer)
    for k in range(x.shape[1]):
        for param in params.values():
            param.grad = None
        logits = _population_logits(params, x[:, k : k + 1])[:, 0]
        per_seed = kl_divergence(logits, target[:, k])
        per_seed.sum().backward()
        _apply_update(params, state, learning_rate)
        losses[:, k] = per_seed.detach()
    return {name: p.detach().numpy() for name, p in params.items()}, losses.numpy()


def train_population(distributions: Sequence[UrnQueryDistribution], seeds: Sequence[int], *, hidden: int,
                     learning_rate: float, steps: int, dtype: str = "float32", optimizer: str = "sgd") -> dict[str, np.ndarray]:
    """Initialise S participants, sample their training queries natively and train them: weights ``[S, ...]``."""
    queries = sample_training_queries(distributions, seeds, steps, dtype)
    weights, _ = train_population_on(init_population(hidden, seeds, dtype), queries.inputs, queries.log_odds,
                                     learning_rate, dtype, optimizer)
    return weights


def predict_log_odds(weights: Mapping[str, np.ndarray], inputs: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """Model log-odds ``[S, Q]`` (float64) of ``weights [S, ...]`` on ``inputs [S, Q, 6]`` (or shared ``[Q, 6]``)."""
    dt = resolve_dtype(dtype)
    params = {name: torch.as_tensor(np.asarray(value), dtype=dt) for name, value in weights.items()}
    x = torch.as_tensor(np.asarray(inputs), dtype=dt)
    if x.ndim == 2:
        x = x.expand(params["rbf.beta"].shape[0], *x.shape)
    with torch.no_grad():
        return model_log_odds(_population_logits(params, x)).numpy().astype(np.float64)
