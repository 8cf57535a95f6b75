"""A GRU meta-learner whose every linear map is sparse-variational (Binz et al. 2022, ``model.py``).

Layers (``LinearSVDO``, torch layout): ``ih`` (3H, K+2) and ``hh`` (3H, H) of the GRU (gates r, z, n as
torch's GRU, with ``b_hn`` inside the reset product), readouts ``mu`` (K, H) and ``logscale`` (K, H),
and a learned initial state ``initial_state`` (H,).

For inputs u_t = [dx_t, y_t, 1 - y_t] ``[T, B, K+2]`` and hidden states h_0 (learned), h_t = GRU(h_{t-1}, u_t):
    m_t = mu(h_{t-1}),  s_t = exp(logscale(h_{t-1}))                  ``[T, B, K]`` (read *before* trial t)
    z_t = dx_t . m_t / sqrt(2 sigma^2 + sum_k dx_{t,k}^2 s_{t,k}^2)     ``[T, B]``, sigma = 0.1 fixed
    p(y_t = 1) = Phi(z_t)
    loss = -mean_{t,b} [y log Phi(z) + (1 - y) log Phi(-z)] + kl_weight * sum_layers KL
The reparameterisation noise (one ``(out, in)`` draw per layer per forward pass) can be injected as
``{"ih": eps, "hh": eps, "mu": eps, "logscale": eps}``; else it is drawn from ``key``.

Training is the one trainer's (``jax_impl.trainer``, ``jax_impl.engine``) on :class:`BoundedObjective`:
loss = NLL + kl_weight_k * KL with kl_weight_k = beta * min((k + 1) / warmup, 1) (``cogmeta.contract.kl_weight``).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cogmeta._validation import require_int, require_real
from cogmeta.config import RunConfig, TrainConfig
from cogmeta.contract import Checkpoint
from cogmeta.tasks.paired_comparison import CONDITIONS, PairedComparisonTask
from jax_impl.numerics import configure, resolve_dtype
from jax_impl.paired_comparison_samplers import model_inputs, sample_batch
from jax_impl.recurrent_layers import gru_layer
from jax_impl.svdo import LinearSVDO
from jax_impl.trainer import Trainer, default_member, stack_on_host
from jax_impl.weights import canonical_to_state, load_canonical

LAYERS = ("ih", "hh", "mu", "logscale")
MODEL_NOISE_STD = 0.1


class BoundedOutputs(NamedTuple):
    """``mean``, ``scale`` ``[T, B, K]``: the Gaussian over cue weights; ``z`` ``[T, B]``: the probit argument."""

    mean: jax.Array
    scale: jax.Array
    z: jax.Array


class BoundedMetaLearner(nnx.Module):
    """The bounded meta-learned inference model (module doc) for K cues and H hidden units."""

    def __init__(self, num_cues: int = 4, hidden_size: int = 64, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.num_cues, self.hidden_size = num_cues, hidden_size
        self.ih = LinearSVDO(num_cues + 2, 3 * hidden_size, rngs=rngs, dtype=dtype)
        self.hh = LinearSVDO(hidden_size, 3 * hidden_size, rngs=rngs, dtype=dtype)
        self.mu = LinearSVDO(hidden_size, num_cues, rngs=rngs, dtype=dtype)
        self.logscale = LinearSVDO(hidden_size, num_cues, rngs=rngs, dtype=dtype)
        self.initial_state = nnx.Param(jnp.zeros((hidden_size,), dtype))
        orthogonal = jax.nn.initializers.orthogonal()
        for layer in (self.ih, self.hh):  # the paper's init: orthogonal per gate block, zero GRU biases
            inputs = layer.weight[...].shape[1]
            blocks = [orthogonal(rngs.params(), (hidden_size, inputs), dtype) for _ in range(3)]
            layer.weight[...] = jnp.concatenate(blocks, axis=0)
            layer.bias[...] = jnp.zeros_like(layer.bias[...])

    def layers(self) -> dict[str, LinearSVDO]:
        return {name: getattr(self, name) for name in LAYERS}

    def kl(self) -> jax.Array:
        """Sum of the layers' KL approximations."""
        return sum(layer.kl() for layer in self.layers().values())

    def __call__(
        self,
        inputs: jax.Array,
        cues: jax.Array,
        mode: str = "sample",
        noise: Mapping[str, jax.Array] | None = None,
        key: jax.Array | None = None,
    ) -> BoundedOutputs:
        """``inputs`` ``[T, B, K+2]``, ``cues`` ``[T, B, K]`` -> :class:`BoundedOutputs`."""
        noise = noise or {}
        keys = dict(zip(LAYERS, jax.random.split(key, len(LAYERS)))) if key is not None else {}
        weights = {
            name: layer.effective_weight(mode, noise.get(name), keys.get(name)) for name, layer in self.layers().items()
        }
        hidden = self.hidden_size
        h0 = jnp.broadcast_to(self.initial_state[...], (inputs.shape[1], hidden))
        projected = self.ih(inputs[:-1], weights["ih"])  # [T-1, B, 3H]: the last input is never needed
        # the library's GRU layer with its hand-written reverse pass (jax_impl/recurrent_layers.py), fed this
        # forward pass's sampled recurrent weight; autodiff carries d/dW on to W_mu and log sigma
        later = gru_layer(projected, h0, weights["hh"], self.hh.bias[...])
        states = jnp.concatenate([h0[None], later], axis=0)  # [T, B, H]: h_0 .. h_{T-1}
        mean = self.mu(states, weights["mu"])
        scale = jnp.exp(self.logscale(states, weights["logscale"]))
        spread = 2 * MODEL_NOISE_STD**2 + jnp.sum(cues**2 * scale**2, axis=-1)
        return BoundedOutputs(mean, scale, jnp.sum(cues * mean, axis=-1) / jnp.sqrt(spread))


def choice_nll(z: jax.Array, targets: jax.Array) -> jax.Array:
    """-mean [y log Phi(z) + (1 - y) log Phi(-z)] over ``[T, B]``."""
    return -jnp.mean(targets * jax.scipy.special.log_ndtr(z) + (1 - targets) * jax.scipy.special.log_ndtr(-z))


def bounded_loss(
    model: BoundedMetaLearner,
    inputs: jax.Array,
    cues: jax.Array,
    targets: jax.Array,
    kl_weight: float | jax.Array,
    noise: Mapping[str, jax.Array] | None = None,
    key: jax.Array | None = None,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """(loss, (nll, kl)) with sampled weights: loss = nll + kl_weight * kl (the aux pair suits ``has_aux``)."""
    outputs = model(inputs, cues, "sample", noise, key)
    nll = choice_nll(outputs.z, targets)
    kl = model.kl()
    return nll + kl_weight * kl, (nll, kl)


# ---------------------------------------------------------------------------------------- training
#: The engine strategy of the heuristics grid: ``vmap`` over members in one compiled program (the
#: program that produced the study's JAX figures; ``jax_impl.engine``).
STRATEGY = "vmap"


class BoundedBatch(NamedTuple):
    """One training step's data: ``cues`` ``[T, B, K]``, ``targets`` ``[T, B]`` and ``noise``, the weight
    noise: a PRNG key (drawn per layer in the forward pass) or injected ``{layer: eps (out, in)}``
    (a stack of batches has a leading axis on every leaf: ``Trainer.run_on``)."""

    cues: jax.Array
    targets: jax.Array
    noise: jax.Array | Mapping[str, jax.Array]


class BoundedObjective:
    """The bounded meta-learner as an objective of the one trainer (``jax_impl.trainer.Objective``).

    Step k of a member trains on loss = NLL + w_k * KL with w_k = beta * min((k + 1) / warmup, 1)
    (``warmup = 0``: w_k = beta). Its batch and weight noise come from
    ``batch_key, noise_key = split(fold_in(member["key"], k))``, where the member's key is
    ``fold_in(key(seed), condition)``, folded once more with ``stream`` (> 0) for fine-tuning runs.

    Args:
        task: the paired-comparison task (its ``condition`` is the members' default).
        hidden_size: H, the GRU's units.
        train: steps, batch size, Adam, clipping and dtype (a ``bounded_gru`` preset's ``train`` section).
        beta: the members' default KL weight (>= 0).
        warmup: steps over which the KL weight ramps up to beta (>= 0).
        stream: the members' default random stream (>= 0; ``BoundConfig.stream``).
    """

    def __init__(self, task: PairedComparisonTask, hidden_size: int, train: TrainConfig, beta: float = 0.0,
                 warmup: int = 0, stream: int = 0):
        self.task, self.train = task, train
        self.hidden_size = require_int("BoundedObjective", "hidden_size", hidden_size, 1)
        self.beta = _check_beta(beta)
        self.warmup = require_int("BoundedObjective", "warmup", warmup, 0)
        self.stream = require_int("BoundedObjective", "stream", stream, 0)
        self.dtype = resolve_dtype(train.dtype)
        self.graphdef = nnx.split(self._model(0), nnx.Param)[0]

    def _model(self, seed: int) -> BoundedMetaLearner:
        return BoundedMetaLearner(self.task.num_cues, self.hidden_size, rngs=nnx.Rngs(seed), dtype=self.dtype)

    def init(self, seed: int) -> nnx.State:
        """The parameters of a fresh model (``nnx.Rngs(seed)``)."""
        return nnx.split(self._model(seed), nnx.Param)[1]

    def member(self, seed: int, learning_rate: float | None = None, condition: int | None = None,
               beta: float | None = None, stream: int | None = None) -> dict:
        """Run ``seed``'s member: ``condition`` (an index into ``CONDITIONS``; default the task's), ``beta``
        (default the objective's) and ``key`` (the class docstring; ``stream`` 0: pretraining,
        1 + i: fine-tuning at the i-th beta of a grid)."""
        condition = self.task.condition_index if condition is None else require_int(
            "BoundedObjective.member", "condition", condition, 0, len(CONDITIONS) - 1)
        stream = self.stream if stream is None else require_int("BoundedObjective.member", "stream", stream, 0)
        key = jax.random.fold_in(jax.random.key(seed), condition)
        if stream > 0:
            key = jax.random.fold_in(key, stream)
        beta = self.beta if beta is None else _check_beta(beta)
        return default_member(self.train, seed, learning_rate, condition=jnp.asarray(condition, jnp.int32),
                              beta=jnp.asarray(beta, self.dtype), key=key)

    def sample(self, step, member: dict) -> BoundedBatch:
        """Batch and weight-noise key of training step ``step`` (traceable; the condition is traced too)."""
        batch_key, noise_key = jax.random.split(jax.random.fold_in(member["key"], step))
        batch = sample_batch(self.task, batch_key, self.train.batch_size, self.dtype, member["condition"])
        return BoundedBatch(batch.cues, batch.targets, noise_key)

    def loss(self, params, batch: BoundedBatch, step, member: dict):
        """``(NLL + w_k * KL, {"nll": NLL, "kl": KL})`` with sampled weights."""
        ramp = jnp.minimum((step + 1) / self.warmup, 1.0) if self.warmup > 0 else 1.0
        weight = (member["beta"] * ramp).astype(self.dtype)
        injected, key = (batch.noise, None) if isinstance(batch.noise, Mapping) else (None, batch.noise)
        model = nnx.merge(self.graphdef, params)
        inputs = model_inputs(batch.cues, batch.targets)
        loss, (nll, kl) = bounded_loss(model, inputs, batch.cues, batch.targets, weight, injected, key)
        return loss, {"nll": nll, "kl": kl}


def make_objective(config: RunConfig) -> BoundedObjective:
    """The objective of a ``bounded_gru`` run: ``config.task``, ``model.hidden_size``, ``train`` and the
    ``bound`` section's beta, warm-up and stream."""
    bound = config.bound
    return BoundedObjective(config.task, config.model.hidden_size, config.train, bound.beta, bound.warmup_steps,
                            bound.stream)


def make_trainer(config: RunConfig, checkpoint: Checkpoint | None = None) -> Trainer:
    """The one trainer on :func:`make_objective`, ``config.jax.steps_per_call`` steps per compiled call (64-bit
    types switched on for a float64 run), resumed (or started, for fine-tuning) from ``checkpoint`` if given."""
    configure(dtype=config.train.dtype)
    return Trainer(make_objective(config), checkpoint, steps_per_call=config.jax.steps_per_call)


def engine_start(objective: BoundedObjective, weights: list[Mapping[str, np.ndarray]]) -> dict:
    """The ``jax_impl.engine.Engine.train`` keyword that starts member s from canonical ``weights[s]``:
    ``{"params": stacked nnx.State [S, ...]}`` (fine-tuning)."""
    template = objective.init(0)
    states = [canonical_to_state(template, tensors) for tensors in weights]
    return {"params": stack_on_host(states)}


def predict(weights, cues, targets, hidden_size: int, mode: str = "pruned", key: int = 0):
    """Model outputs on numpy ``cues [T, B, K]``, ``targets [T, B]``: (mean ``[T, B, K]``, p(y=1) ``[T, B]``)."""
    dtype = jnp.asarray(next(iter(weights.values()))).dtype
    model = BoundedMetaLearner(cues.shape[-1], hidden_size, rngs=nnx.Rngs(0), dtype=dtype)
    load_canonical(model, weights)
    cues_j, targets_j = jnp.asarray(cues, dtype), jnp.asarray(targets, dtype)
    out = model(model_inputs(cues_j, targets_j), cues_j, mode, key=jax.random.key(key) if mode == "sample" else None)
    return np.asarray(out.mean), np.asarray(jax.scipy.special.ndtr(out.z))


def _check_beta(beta) -> float:
    value = require_real("BoundedObjective", "beta", beta)
    if value < 0:
        raise ValueError(f"BoundedObjective.beta must be >= 0 (the KL weight of the description-length bound), "
                         f"got {value!r}")
    return value
