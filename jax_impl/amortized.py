"""The amortized posterior of "learning to infer": a small network maps a query to q(h | d) over two urns.

    x [B, 6] --input: Linear(6 -> H)--> a [B, H]
             --rbf: phi_j = exp(-beta_j (a_j - c_j)^2)--> phi [B, H]     (beta init 0.1, c init 0)
             --output: Linear(H -> 2)--> logits [B, 2]  (hypotheses A, B)

q = softmax(logits); the model's posterior log-odds of B is logits[:, 1] - logits[:, 0]. With H = 1 the
network can only represent a bump of one linear projection of the query: its limited capacity is the
source of the biases the experiments reproduce.

Loss: the exact reverse KL to the true posterior p(h | d), averaged over the batch,

    KL(q || p) = sum_h q_h (log q_h - log p_h),
    log q = z - logsumexp(z),   logsumexp(z) = m + log(exp(z_0 - m) + exp(z_1 - m)),  m = max(z_0, z_1),
    log p = (log sigmoid(-L), log sigmoid(L)),   log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)),

with L the exact log-odds of the query. The paper estimates the gradient of the same objective with a
score-function estimator over 50 samples; with two hypotheses the exact value is cheap. Both frameworks
write these formulas with the same elementary operations (``torch_impl/amortized.py``).

Canonical parameters (torch ``state_dict`` names, shared with JAX): ``input.weight (H, 6)``,
``input.bias (H,)``, ``rbf.beta (H,)``, ``rbf.centre (H,)``, ``output.weight (2, H)``, ``output.bias (2,)``.

Training is the one trainer's (``jax_impl.trainer``): :class:`AmortizedObjective` says what a simulated
participant trains (member = participant: its seed, initial weights and stream of K queries; step k is
query k, loss KL(q || p), plain SGD p - lr g or Adam, no clipping). :func:`train_population` trains S
participants with ``jax_impl.engine`` in one compiled program (``vmap`` over participants of the
member's ``lax.scan`` over steps). The PyTorch twin (``torch_impl/amortized.py``) trains them as one
trainer run of a population model with stacked ``[S, ...]`` parameters; docs/framework-differences.md#populations
gives the measurements behind each choice.
"""

from __future__ import annotations

import functools
import math
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cogmeta.config import RunConfig, TrainConfig
from cogmeta.contract import Checkpoint
from cogmeta.experiments.amortized_spec import (
    BETA_INIT,
    CENTRE_INIT,
    PARAMETER_NAMES,
    QUERY_FEATURES,
    PopulationRun,
    check_hidden,
    check_queries,
    train_config,
    validate_weights,
)
from cogmeta.tasks.urn import UrnQueries, UrnQueryDistribution
from jax_impl.engine import Engine
from jax_impl.host_random import initial_rngs
from jax_impl.linear import Linear
from jax_impl.numerics import configure, resolve_dtype
from jax_impl.trainer import Trainer, compiled_init, default_member, init_runs
from jax_impl.urn_samplers import sample_queries, seed_key
from jax_impl.weights import canonical_to_state

#: Participants from which a population's initial weights are drawn in one compiled program (400 participants:
#: 0.56-0.62 s one by one, drawn on the host; compiled 0.67 s on a machine's first run, 0.14-0.15 s from the
#: compilation cache: break-even near 100 with a warm cache).
COMPILED_INIT_FROM = 128


class RBF(nnx.Module):
    """``[B, H]`` -> ``[B, H]``: exp(-beta (a - centre)^2), one learned width and centre per unit."""

    def __init__(self, hidden: int, dtype=jnp.float32):
        self.beta = nnx.Param(jnp.full((hidden,), BETA_INIT, dtype))
        self.centre = nnx.Param(jnp.full((hidden,), CENTRE_INIT, dtype))

    def __call__(self, a: jax.Array) -> jax.Array:
        return jnp.exp(-self.beta[...] * (a - self.centre[...]) ** 2)


class AmortizedPosterior(nnx.Module):
    """``[B, 6]`` queries -> ``[B, 2]`` logits of (A, B). Linear weights use torch's default init."""

    def __init__(self, hidden: int = 1, *, rngs: nnx.Rngs, dtype=jnp.float32):
        hidden = check_hidden(hidden)
        self.input = Linear(QUERY_FEATURES, hidden, rngs=rngs, dtype=dtype)
        self.rbf = RBF(hidden, dtype=dtype)
        self.output = Linear(hidden, 2, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim < 1 or x.shape[-1] != QUERY_FEATURES:
            raise ValueError(f"queries must have shape [..., {QUERY_FEATURES}], got {tuple(x.shape)}")
        return self.output(self.rbf(self.input(x)))


def model_log_odds(logits: jax.Array) -> jax.Array:
    """``[..., 2]`` logits -> ``[...]`` log q(B) - log q(A)."""
    return logits[..., 1] - logits[..., 0]


def log_sigmoid(x: jax.Array) -> jax.Array:
    """log(1 / (1 + exp(-x))) = min(x, 0) - log1p(exp(-|x|)), stable for any x."""
    return jnp.minimum(x, jnp.zeros_like(x)) - jnp.log1p(jnp.exp(-jnp.abs(x)))


def kl_divergence(logits: jax.Array, target_log_odds: jax.Array) -> jax.Array:
    """KL(q || p) per query: ``logits [B, 2]``, ``target_log_odds [B]`` -> ``[B]`` nats."""
    if logits.shape[-1] != 2 or logits.shape[:-1] != target_log_odds.shape:
        raise ValueError(f"logits [B, 2] and target_log_odds [B] do not match: {tuple(logits.shape)}, "
                         f"{tuple(target_log_odds.shape)}")
    m = jnp.maximum(logits[..., 0], logits[..., 1])
    lse = m + jnp.log(jnp.exp(logits[..., 0] - m) + jnp.exp(logits[..., 1] - m))
    log_q = logits - lse[..., None]
    log_p = jnp.stack([log_sigmoid(-target_log_odds), log_sigmoid(target_log_odds)], axis=-1)
    return jnp.sum(jnp.exp(log_q) * (log_q - log_p), axis=-1)


def kl_loss(logits: jax.Array, target_log_odds: jax.Array) -> jax.Array:
    """Mean over the batch of KL(q || p): ``logits [B, 2]``, ``target_log_odds [B]`` -> scalar."""
    return jnp.mean(kl_divergence(logits, target_log_odds))


def get_weights(model: AmortizedPosterior) -> dict[str, np.ndarray]:
    """Canonical weights (copies) as numpy arrays."""
    return {name: np.array(_variable(model, name)[...]) for name in PARAMETER_NAMES}


def set_weights(model: AmortizedPosterior, weights: Mapping[str, np.ndarray]) -> AmortizedPosterior:
    """Copy canonical weights into ``model`` (validated: names, shapes, finiteness); returns the model."""
    hidden = model.rbf.beta.shape[0]
    validate_weights(weights, hidden)
    dtype = model.rbf.beta[...].dtype
    for name in PARAMETER_NAMES:
        _variable(model, name)[...] = jnp.asarray(np.asarray(weights[name]), dtype)
    return model


class AmortizedObjective:
    """Simulated participants learning to infer (``jax_impl.trainer.Objective``), one per seed.

    Participant ``seeds[s]`` starts from ``weights[s]`` (default: an :class:`AmortizedPosterior` built with
    ``nnx.Rngs(seed)``) and its step k trains on query k of its own stream, ``inputs[s, k]`` with exact
    log-odds ``log_odds[s, k]``: loss = KL(q || p) of that one query (:func:`kl_loss`).

    The queries travel in the member dict (``[K, 6]`` and ``[K]`` per participant), so the engine passes
    them to the compiled program as arguments, stacked ``[S, K, ...]``; held by the objective and indexed
    by a member's row, they would be baked into the program as constants (~100 MB of HLO and seconds of
    compile time for the EU population). Arrays are made when asked for, so ``float64`` needs 64-bit
    JAX then (``jax.enable_x64(True)``; :func:`train_population` does it).

    Args:
        inputs: training queries ``[S, K, 6]`` (numpy; cast to ``dtype``); K is the number of steps.
        log_odds: their exact posterior log-odds ``[S, K]``.
        hidden: H, the RBF units.
        learning_rate: SGD's (or Adam's) constant learning rate.
        optimizer: "sgd" (the paper's) or "adam" (torch's defaults).
        dtype: "float32" or "float64".
        seeds: the S participants' seeds (default 0 .. S-1).
        weights: initial canonical weights ``[S, ...]`` instead of fresh ones (e.g. the same in both frameworks).
    """

    def __init__(self, inputs: np.ndarray, log_odds: np.ndarray, *, hidden: int, learning_rate: float,
                 optimizer: str = "sgd", dtype: str = "float32", seeds: Sequence[int] | None = None,
                 weights: Mapping[str, np.ndarray] | None = None):
        self.seeds = check_queries(inputs, log_odds, seeds)
        self.hidden = check_hidden(hidden)
        self.train = train_config(np.shape(inputs)[1], learning_rate, optimizer, dtype)
        if weights is not None:
            validate_weights(weights, self.hidden, population=True)
            if np.shape(weights["input.bias"])[0] != len(self.seeds):
                raise ValueError(f"initial weights hold {np.shape(weights['input.bias'])[0]} participants, the training "
                                 f"queries {len(self.seeds)}")
        self.weights = weights
        self.inputs, self.log_odds = np.asarray(inputs), np.asarray(log_odds)
        self._index = {seed: s for s, seed in enumerate(self.seeds)}
        self.graphdef, _ = nnx.split(AmortizedPosterior(self.hidden, rngs=nnx.Rngs(0)))  # the same for every dtype

    def index(self, seed: int) -> int:
        """Participant ``seed``'s row in the queries and weights."""
        if int(seed) not in self._index:
            raise ValueError(f"seed {seed} is not one of this objective's participants {list(self.seeds)}")
        return self._index[int(seed)]

    def init(self, seed: int) -> nnx.State:
        """Participant ``seed``'s initial parameters."""
        s = self.index(seed)
        _, params = nnx.split(AmortizedPosterior(self.hidden, rngs=initial_rngs(int(seed)), dtype=self._dtype()))
        return params if self.weights is None else canonical_to_state(params, {n: w[s] for n, w in self.weights.items()})

    def init_many(self, seeds: Sequence[int]) -> nnx.State:
        """The participants' initial parameters stacked ``[S, ...]``, bit for bit :meth:`init` of each: given weights
        one by one, fresh ones from :data:`COMPILED_INIT_FROM` participants on in one compiled program
        (``jax_impl.trainer.init_runs``; 400 participants: ~0.6 s one by one, 0.15 s compiled with a warm
        compilation cache, 0.67 s on a machine's first run)."""
        for seed in seeds:
            self.index(seed)
        compiled = None if self.weights is not None else (
            lambda: compiled_init(AmortizedPosterior, self.hidden, dtype=self._dtype()))
        return init_runs(seeds, self.init, compiled, COMPILED_INIT_FROM)

    def member(self, seed: int, learning_rate: float | None = None) -> dict:
        """``{seed, learning_rate, inputs [K, 6], log_odds [K]}``: the participant and its query stream."""
        s, dtype = self.index(seed), self._dtype()
        return default_member(self.train, seed, learning_rate, inputs=jnp.asarray(self.inputs[s], dtype),
                              log_odds=jnp.asarray(self.log_odds[s], dtype))

    def sample(self, step, member: dict) -> tuple[jax.Array, jax.Array]:
        """Query ``step`` of the participant: ``(inputs [1, 6], log_odds [1])``."""
        return (jax.lax.dynamic_slice_in_dim(member["inputs"], step, 1),
                jax.lax.dynamic_slice_in_dim(member["log_odds"], step, 1))

    def loss(self, params, batch, step, member: dict) -> tuple[jax.Array, dict]:
        x, target = batch
        return kl_loss(nnx.merge(self.graphdef, params)(x), target), {}

    def _dtype(self):
        return resolve_dtype(self.train.dtype)


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


def training_queries(config: RunConfig) -> UrnQueries:
    """A run's whole query stream ``[1, train.steps, ...]`` (numpy): ``urn_queries`` draws it with
    :func:`sample_training_queries` for the run's seed, ``urn_study`` takes its participant's block (numpy)."""
    task, train = config.task, config.train
    if task.name == "urn_study":
        queries, _ = task.queries(train.seed)
        return UrnQueries(*(np.asarray(value)[None] for value in queries))
    return sample_training_queries([task.distribution()], [train.seed], train.steps, train.dtype)


def make_trainer(config: RunConfig, checkpoint: Checkpoint | None = None) -> Trainer:
    """The one trainer on one participant of ``config`` (an ``amortized`` run: :func:`training_queries`, its
    initial weights from ``task.participant_seed``), ``config.jax.steps_per_call`` queries per compiled call
    (64-bit types switched on for a float64 run), resumed from ``checkpoint`` (either framework's) if given."""
    configure(dtype=config.train.dtype)
    train, seed = config.train, config.task.participant_seed(config.train.seed)
    queries = training_queries(config)
    objective = AmortizedObjective(queries.inputs, queries.log_odds, hidden=config.model.hidden_size,
                                   learning_rate=train.learning_rate, optimizer=train.optimizer, dtype=train.dtype,
                                   seeds=[seed])
    return Trainer(objective, checkpoint, seed=seed, steps_per_call=config.jax.steps_per_call)


def train_population(objective: AmortizedObjective, devices: int | None = None) -> PopulationRun:
    """Train every participant of ``objective`` for ``train.steps`` steps in one compiled program.

    ``jax_impl.engine.Engine``, strategy ``vmap`` (the member's ``lax.scan`` over steps, ``vmap``-ed over
    participants), the whole run in one call, the participants split over ``devices`` (default: every local
    device; the ``cogmeta`` command shows one per CPU, ``cogmeta.host_devices``). On one device each
    participant's result is bit-identical to a run of its own (``jax_impl.trainer.Trainer``), whatever S;
    split over several, to the compiler's rounding (docs/framework-differences.md, "whole machine"). A
    participant whose loss or gradient becomes non-finite stops there, as a run of its own would.
    """
    with jax.enable_x64(objective.train.dtype == "float64"):
        params = objective.init_many(objective.seeds)
        members = [objective.member(seed) for seed in objective.seeds]
        runs = _engine(objective.hidden, objective.train, devices).train(
            objective.seeds, members=members, params=params, progress=False, label="participants")
    return PopulationRun({name: np.stack([run.weights[name] for run in runs]) for name in PARAMETER_NAMES},
                         np.array([run.steps for run in runs]), np.array([run.stopped for run in runs]))


def predict_log_odds(weights: Mapping[str, np.ndarray], inputs: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """Model log-odds ``[S, Q]`` (float64) of ``weights [S, ...]`` on ``inputs [S, Q, 6]`` (or shared ``[Q, 6]``)."""
    validate_weights(weights, int(np.shape(weights["rbf.beta"])[1]), population=True)
    with jax.enable_x64(dtype == "float64"):
        dt = resolve_dtype(dtype)
        graphdef, template = nnx.split(AmortizedPosterior(int(np.shape(weights["rbf.beta"])[1]), rngs=nnx.Rngs(0), dtype=dt))
        params = jax.tree_util.tree_map_with_path(
            lambda path, _: jnp.asarray(np.asarray(weights[f"{path[0].key}.{path[1].key}"]), dt), template)
        in_x = None if np.ndim(inputs) == 2 else 0
        forward = jax.vmap(lambda p, x: model_log_odds(nnx.merge(graphdef, p)(x)), in_axes=(0, in_x))
        return np.asarray(jax.jit(forward)(params, jnp.asarray(inputs, dt))).astype(np.float64)


@functools.lru_cache(maxsize=8)
def _engine(hidden: int, train: TrainConfig, devices: int | None = None) -> Engine:
    """One engine, hence one compiled program, per architecture and recipe: the traced step reads only the
    member (queries, seed, learning rate), the graph of H units and ``train``, so populations that differ
    only in their queries (the EU experiment's two conditions) share it (measured: ~1 s of compilation saved)."""
    template = AmortizedObjective(np.zeros((1, train.steps, QUERY_FEATURES)), np.zeros((1, train.steps)), hidden=hidden,
                                  learning_rate=train.learning_rate, optimizer=train.optimizer, dtype=train.dtype)
    if template.train != train:
        raise ValueError(f"not an amortized recipe (amortized_spec.train_config): {train}")
    return Engine(template, "vmap", chunk=train.steps, devices=devices)


def _variable(model: AmortizedPosterior, name: str) -> nnx.Param:
    layer, tensor = name.split(".")
    return getattr(getattr(model, layer), tensor)
