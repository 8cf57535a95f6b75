"""RL² in JAX: a recurrent actor-critic meta-trained by advantage actor-critic (A2C) across bandit episodes.

Duan et al. (2016) and Wang et al. (2018): one recurrent network plays a whole episode of n trials on a
k-armed bandit drawn from the task's prior, reading its own previous action and reward, so that learning
*within* an episode happens in its hidden state and training *across* episodes (the outer loop) shapes
that learning algorithm. The twin, ``torch_impl.rl2``, has the same names and maths.

Agent (:class:`RL2Agent`), at trial t = 0..n-1 of B episodes at once (time-major):

    x_t      = [onehot(a_{t-1}) (k), r_{t-1}, t / n]          [B, k + 2]   (zeros at t = 0, time 0)
    h_t      = core(x_t, h_{t-1})                             [B, H]       (GRU or LSTM, ``jax_impl.recurrent``)
    logits_t = policy(h_t)  [B, k],   V_t = value(h_t)[..., 0]  [B],   pi_t = softmax(logits_t)
    a_t      = sample_action(sg(pi_t), action_uniform[t])  (or argmax logits_t when greedy)
    r_t      = step(batch, t, a_t)                          (``jax_impl.bandit``)

Objective (:func:`a2c_loss`; ``cogmeta.config.RLConfig``), averaged over the n x B trials:

    G_t  = r_t + gamma G_{t+1},  G_n = 0                  (:func:`discounted_returns`; no bootstrap)
    A_t  = G_t - sg(V_t)
    loss = mean[-log pi_t(a_t) A_t] + c_v mean[(G_t - V_t)^2 / 2] - c_e mean[H(pi_t)],  H = -sum_i pi log pi

``sg`` stops the gradient (``lax.stop_gradient``). There are two stops: the action draw (the actions are
samples; their probability enters the loss only through ``log pi_t(a_t)``, the REINFORCE score) and the
baseline V_t in the advantage (the critic is trained by the value term only). The returns G are functions of
sampled rewards and carry no gradient by construction; the inputs x_t likewise (actions and rewards are data).

The n trials run as one ``lax.scan`` (jit- and grad-traceable), differentiated one of two ways with the same
maths (:func:`rollout`): ``replay`` (single runs) plays them without gradients, recording the core's gates, and
differentiates the core's replay of the recording (the layers' hand-written reverse pass: weight gradients as
one contraction over all n x B trials); ``replay=False`` lets autodiff tape the trial loop (weight gradients
formed trial by trial inside its reverse loop), which batches better under ``jax.vmap`` over members
(:meth:`RL2Objective.for_vmap`) and which evaluation (:func:`play`) runs, without gradients.
"""

from __future__ import annotations

import functools
from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint
from cogmeta.tasks.bandit import EPISODE_AXES, BanditBatch
from cogmeta.weights import validate_weights
from jax_impl.bandit import from_numpy, sample_action, sample_episodes, step
from jax_impl.host_random import initial_rngs
from jax_impl.linear import Linear
from jax_impl.numerics import HIGHEST, configure, resolve_dtype
from jax_impl.pieces import in_pieces
from jax_impl.recurrent import CORES
from jax_impl.samplers import step_key
from jax_impl.trainer import Trainer, compiled_init, default_member, init_runs
from jax_impl.weights import abstract_split, canonical_to_state, model_to_canonical


class Rollout(NamedTuple):
    """B episodes of n trials played by the agent (time-major).

    Attributes:
        actions: ``[n, B]`` int32 arms pulled.
        rewards: ``[n, B]`` rewards in {0, 1} (batch dtype).
        logits: ``[n, B, k]`` policy logits (differentiable).
        values: ``[n, B]`` value estimates V_t (differentiable).
    """

    actions: jax.Array
    rewards: jax.Array
    logits: jax.Array
    values: jax.Array


class RL2Agent(nnx.Module):
    """``core`` (GRU/LSTM over inputs of size k + 2), ``policy`` (Linear H -> k) and ``value`` (Linear H -> 1).

    Canonical tensors: ``core.weight_ih_l{j}`` ... (``jax_impl.recurrent``), ``policy.weight [k, H]``,
    ``policy.bias [k]``, ``value.weight [1, H]``, ``value.bias [1]``; torch-matched init distributions.

    Args:
        config: an rl2-family run config (``model`` and ``task.arms`` are read).
        dtype: parameter dtype.
        rngs: initialisation randomness.
    """

    def __init__(self, config: RunConfig, dtype=jnp.float32, *, rngs: nnx.Rngs):
        model, self.arms = config.model, config.task.arms
        self.cell = model.cell
        self.core = CORES[model.cell](self.arms + 2, model.hidden_size, model.num_layers, rngs=rngs, dtype=dtype)
        self.policy = Linear(model.hidden_size, self.arms, rngs=rngs, dtype=dtype)
        self.value = Linear(model.hidden_size, 1, rngs=rngs, dtype=dtype)

    def initial_state(self, batch_size: int, dtype):
        """Zeros: ``[L, B, H]`` (GRU) or ``(h, c)``, each ``[L, B, H]`` (LSTM), torch's ``hx=None``."""
        zeros = jnp.zeros((self.core.num_layers, batch_size, self.core.hidden_size), dtype)
        return zeros if self.cell == "gru" else (zeros, zeros)

    def __call__(self, inputs: jax.Array, state) -> tuple[jax.Array, jax.Array, object]:
        """One trial: ``inputs [B, k + 2]`` and the core's state -> ``(logits [B, k], values [B], new state)``.

        The sequence core runs on a sequence of length 1 (each input depends on the previous action).
        """
        hidden, state = self.core(inputs[None], state)
        return self.policy(hidden[0]), self.value(hidden[0])[..., 0], state


def trial_times(horizon: int, dtype) -> jax.Array:
    """``t / n`` for t = 0..n-1, ``[n]``: divided in float64 by numpy and rounded once to ``dtype``, the
    same constants in both twins (a division in float32 on either side could round differently)."""
    return jnp.asarray(np.arange(horizon) / horizon, dtype)


def rollout(agent: RL2Agent, batch: BanditBatch, greedy: bool = False, replay: bool = True) -> Rollout:
    """Play the B episodes of ``batch`` (arrays in the agent's dtype), all stepped together.

    One ``lax.scan`` over the n trials. ``greedy``: a_t = argmax logits_t (the first index on ties) instead of a
    draw with ``batch.action_uniform[t]``. Both ways below give autodiff's gradient of the trial loop (tested
    against it to 1e-12 in float64); only the order of float additions differs.

    ``replay`` (the default): the trials run on the agent with its weights' gradients stopped, recording each
    trial's input and the core's gates (``core.stepper``); the logits and values returned are formed from the
    recorded hidden states of all trials at once and differentiate through the core's ``replay``
    (``jax_impl.recurrent_layers.gru_replay``), so the weight gradients are single contractions over all n x B
    trials. Not ``replay``: autodiff tapes the loop, each trial's core a length-1 sequence, and forms the weight
    gradients trial by trial inside the scan's reverse loop (~40 small kernels per trial there, against ~15 in the
    replay's); it records no whole-episode gate arrays, and under ``jax.vmap`` over members it is the faster form
    (docs/performance.md, framework-differences 8.5).
    """
    initial = agent.initial_state(batch.reward_uniform.shape[1], batch.reward_uniform.dtype)
    if not replay:
        def taped(inputs, state):
            logits, values, state = agent(inputs, state)
            return logits, state, values

        actions, rewards, logits, _, values = _play_trials(taped, batch, greedy, initial)
        return Rollout(actions, rewards, logits, values)
    graphdef, params = nnx.split(agent)
    # the draw and the recorded steps are data: the gradient enters through replay (and log pi_t(a_t) in a2c_loss)
    frozen = nnx.merge(graphdef, lax.stop_gradient(params))

    core_step = frozen.core.stepper()  # weights transposed here, outside the loop
    policy_t, policy_bias = frozen.policy.weight[...].T, frozen.policy.bias[...]

    def recorded(inputs, state):
        hidden, state, record = core_step(inputs, state)
        return jnp.matmul(hidden, policy_t, precision=HIGHEST) + policy_bias, state, record

    actions, rewards, _, inputs, record = _play_trials(recorded, batch, greedy, initial)
    hidden = agent.core.replay(inputs, initial, record)  # [n, B, H]: the recorded states, differentiable
    return Rollout(actions, rewards, agent.policy(hidden), agent.value(hidden)[..., 0])


def _play_trials(agent_step, batch: BanditBatch, greedy: bool, initial):
    """The trial scan of :func:`rollout`: ``agent_step(inputs [B, k + 2], state) -> (logits [B, k], state, extra)``.

    Returns ``(actions [n, B], rewards [n, B], logits [n, B, k], inputs [n, B, k + 2], extra stacked over n)``.
    """
    horizon, size, arms = batch.reward_uniform.shape
    dtype = batch.reward_uniform.dtype
    times = trial_times(horizon, dtype)
    next_times = jnp.concatenate([times[1:], jnp.zeros((1,), dtype)])  # the time input of trial t + 1

    def trial(carry, scanned):
        state, inputs = carry
        t, next_time, uniform = scanned
        logits, state, extra = agent_step(inputs, state)
        if greedy:
            actions = jnp.argmax(lax.stop_gradient(logits), axis=-1).astype(jnp.int32)
        else:
            # sg(pi_t): the draw is data; the policy's gradient enters through log pi_t(a_t) in a2c_loss
            actions = sample_action(jax.nn.softmax(lax.stop_gradient(logits), axis=-1), uniform)
        rewards = step(batch, t, actions, validate=False)  # traced: nothing to check
        time = jnp.broadcast_to(next_time, (size, 1))
        following = jnp.concatenate([jax.nn.one_hot(actions, arms, dtype=dtype), rewards[:, None], time], axis=-1)
        return (state, following), (actions, rewards, logits, inputs, extra)

    start = (initial, jnp.zeros((size, arms + 2), dtype))  # t = 0: no action or reward yet
    _, played = lax.scan(trial, start, (jnp.arange(horizon, dtype=jnp.int32), next_times, batch.action_uniform))
    return played


def discounted_returns(rewards: jax.Array, discount: float) -> jax.Array:
    """``G_t = r_t + discount * G_{t+1}``, ``G_n = 0``: ``[n, B]`` -> ``[n, B]`` (a reverse ``lax.scan`` over t)."""

    def back(following, reward):
        following = reward + discount * following
        return following, following

    _, returns = lax.scan(back, jnp.zeros_like(rewards[0]), rewards, reverse=True)
    return returns


def a2c_loss(rollout: Rollout, discount: float, value_weight: float, entropy_weight) -> tuple[jax.Array, dict]:
    """The A2C loss of a rollout and its metrics (module docstring for the formula).

    Args:
        rollout: the episodes (:func:`rollout`).
        discount: gamma in (0, 1].
        value_weight: c_v, the weight of the value loss.
        entropy_weight: c_e, the weight of the entropy bonus (a float or a traced scalar, cast to the
            logits' dtype so that an annealed weight never promotes a float32 loss).

    Returns:
        ``(loss, aux)``: the scalar loss and ``{"reward": mean over episodes of sum_t r_t, "entropy": mean
        H(pi_t), "value_loss": mean (G_t - V_t)^2 / 2}`` (scalars, gradients stopped).
    """
    returns = discounted_returns(rollout.rewards, discount)  # of sampled rewards: no gradient to stop
    log_probs = jax.nn.log_softmax(rollout.logits, axis=-1)  # [n, B, k]
    chosen = jnp.take_along_axis(log_probs, rollout.actions[..., None], axis=-1)[..., 0]  # log pi_t(a_t)
    advantage = returns - lax.stop_gradient(rollout.values)  # sg(V_t): the baseline is not trained by the policy term
    policy_loss = jnp.mean(-chosen * advantage)
    value_loss = jnp.mean((returns - rollout.values) ** 2 / 2)
    entropy = jnp.mean(-jnp.sum(jax.nn.softmax(rollout.logits, axis=-1) * log_probs, axis=-1))
    weight = jnp.asarray(entropy_weight, log_probs.dtype)
    loss = policy_loss + value_weight * value_loss - weight * entropy
    aux = {"reward": jnp.mean(jnp.sum(rollout.rewards, axis=0)), "entropy": entropy, "value_loss": value_loss}
    return loss, jax.tree.map(lax.stop_gradient, aux)


def entropy_weight(config: RunConfig, step) -> jax.Array | float:
    """c_e of 0-based update ``step`` (traceable): ``RLConfig.entropy_at``'s linear anneal in jnp operations,
    ``c_0 + (c_final - c_0) * min(step / max(steps - 1, 1), 1)``; the constant ``c_0`` without ``entropy_final``."""
    rl = config.rl
    if rl.entropy_final is None:
        return float(rl.entropy_weight)
    fraction = jnp.minimum(jnp.asarray(step) / max(config.train.steps - 1, 1), 1.0)
    return rl.entropy_weight + (rl.entropy_final - rl.entropy_weight) * fraction


def build_model(config: RunConfig, seed: int | None = None) -> RL2Agent:
    """A freshly initialised agent (torch-matched init distributions, JAX random numbers)."""
    configure(dtype=config.train.dtype)
    rngs = initial_rngs(config.train.seed if seed is None else seed)  # drawn on the host: no program to compile
    return RL2Agent(config, resolve_dtype(config.train.dtype), rngs=rngs)


def init_weights(config: RunConfig, seed: int | None = None) -> dict[str, np.ndarray]:
    """Canonical initial weights of a fresh agent."""
    return model_to_canonical(build_model(config, seed))


def _as_numpy(played: dict) -> dict[str, np.ndarray]:
    return {"actions": np.asarray(played["actions"]).astype(np.int64),
            **{name: np.asarray(played[name]).astype(np.float64) for name in ("rewards", "probabilities", "values")}}


class RL2Objective:
    """The RL² workload (``jax_impl.trainer.Objective``): the A2C loss of :class:`RL2Agent` on the task's
    episodes, the batch of step k of run ``seed`` drawn from ``step_key(seed, k)`` (traceable); the entropy
    weight annealed by ``config.rl`` (:func:`entropy_weight`)."""

    batch_axes = EPISODE_AXES  # the task axis of each batch leaf (data-parallel trainers split it)

    def __init__(self, config: RunConfig, replay: bool = True):
        self.config, self.train = config, config.train
        self.replay = replay  # how the loss differentiates the trial loop (:func:`rollout`)
        self.dtype = resolve_dtype(config.train.dtype)
        self.graphdef = _graphdef(config)

    def for_vmap(self) -> "RL2Objective":
        """This objective with the taped trial loop (``rollout(replay=False)``), for ``jax.vmap`` over members
        (``jax_impl.engine``): the replay's passes over whole-episode arrays cost more there than the per-trial
        work they remove (16 seeds on two CPU devices: 1.5x slower, docs/performance.md)."""
        return RL2Objective(self.config, replay=False)

    def init(self, seed: int):
        return nnx.split(build_model(self.config, seed))[1]

    def init_many(self, seeds) -> nnx.State:
        """Runs ``seeds``' initial parameters stacked ``[S, ...]``, bit for bit :meth:`init` of each (one compiled
        draw for many: ``jax_impl.trainer.init_runs``)."""
        return init_runs(seeds, self.init, lambda: compiled_init(RL2Agent, self.config, self.dtype))

    def member(self, seed: int, learning_rate: float | None = None) -> dict:
        return default_member(self.train, seed, learning_rate)

    def sample(self, step, member: dict) -> BanditBatch:
        """The :class:`BanditBatch` of ``train.batch_size`` episodes of training step ``step`` of ``member``."""
        return sample_episodes(self.config.task, step_key(member["seed"], step), self.train.batch_size, self.dtype)

    def loss(self, params, batch: BanditBatch, step, member: dict) -> tuple[jax.Array, dict]:
        rl = self.config.rl
        played = rollout(nnx.merge(self.graphdef, params), batch, replay=self.replay)
        return a2c_loss(played, rl.discount, rl.value_weight, entropy_weight(self.config, step))

    def play(self, params, batch: BanditBatch, greedy: bool = False) -> dict[str, np.ndarray]:
        """:func:`play` with ``params``: numpy ``batch`` in, numpy ``actions``, ``rewards``, ``probabilities``,
        ``values`` out."""
        return _as_numpy(_compiled_play(self.config, greedy)(params, from_numpy(batch, self.dtype)))


def make_trainer(config: RunConfig, checkpoint: Checkpoint | None = None, devices: int | None = None) -> Trainer:
    """The one trainer on :class:`RL2Objective`, ``config.jax.steps_per_call`` steps per compiled call (64-bit
    types switched on for a float64 run), resumed from ``checkpoint`` (either framework's) if given, its episodes
    split over ``devices`` devices (``jax_impl.launch.make_trainer``: by default over the host devices of a CPU
    when each gets at least ``AUTO_SPLIT_FROM`` episodes)."""
    from jax_impl.launch import make_trainer as launch_trainer

    configure(dtype=config.train.dtype)
    return launch_trainer(config, checkpoint, devices, objective=RL2Objective)


def play(config: RunConfig, weights: Mapping[str, np.ndarray], batch: BanditBatch, greedy: bool = False) -> dict[str, np.ndarray]:
    """The agent with canonical ``weights`` playing the numpy ``batch`` (cast to ``config.train.dtype``).

    Returns:
        ``actions [n, B]`` int64, ``rewards [n, B]``, ``probabilities [n, B, k]`` (softmax of the logits)
        and ``values [n, B]``, float64 numpy. One compiled program per config and ``greedy``.
    """
    configure(dtype=config.train.dtype)
    validate_weights(weights, config)
    dtype = resolve_dtype(config.train.dtype)
    _, template = _abstract_split(config)
    params = canonical_to_state(template, weights)
    program = _compiled_play(config, greedy)
    batch = BanditBatch(*(np.asarray(value, dtype=np.dtype(dtype)) for value in batch))  # cast on the host
    return _as_numpy(in_pieces(lambda piece: program(params, piece), batch, EPISODE_AXES, _PLAY_EPISODES,
                               name="episodes"))  # outputs are time-major [n, B, ...]: episodes on axis 1


#: Episodes per call of the compiled rollout in :func:`play` (``jax_impl.pieces.in_pieces``): one program serves
#: the held-out checks (1,000 bandits by default) and the summary (10,000 in chunks of 5,000); each size compiled
#: its own before (0.26-0.96 s cold).
_PLAY_EPISODES = 1_000


@functools.lru_cache(maxsize=16)
def _graphdef(config: RunConfig):
    """The agent's structure (no weights drawn); ``loss`` merges it with the parameters."""
    return _abstract_split(config)[0]


def _abstract_split(config: RunConfig):
    """``(graphdef, abstract params)`` of the agent (:func:`jax_impl.weights.abstract_split`: no weights drawn)."""
    return abstract_split(lambda: RL2Agent(config, resolve_dtype(config.train.dtype), rngs=nnx.Rngs(0)))


@functools.lru_cache(maxsize=16)
def _compiled_play(config: RunConfig, greedy: bool):
    """One jitted rollout per config and ``greedy``, reused by every ``play`` call (e.g. evaluation chunks)."""
    graphdef = _graphdef(config)

    def run(params, batch):
        played = rollout(nnx.merge(graphdef, params), batch, greedy, replay=False)  # no gradient: the plain loop
        return {"actions": played.actions, "rewards": played.rewards,
                "probabilities": jax.nn.softmax(played.logits, axis=-1), "values": played.values}

    return jax.jit(run)


__all__ = ["RL2Agent", "RL2Objective", "Rollout", "a2c_loss", "build_model", "discounted_returns", "entropy_weight",
           "init_weights", "make_trainer", "play", "rollout", "trial_times"]
