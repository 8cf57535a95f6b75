"""RL² in PyTorch: a recurrent actor-critic meta-trained by advantage actor-critic (A2C) across bandit episodes.

Duan et al. (2016) and Wang et al. (2018): one recurrent network plays a whole episode of n trials on a
k-armed bandit drawn from the task's prior, reading its own previous action and reward, so that learning
*within* an episode happens in its hidden state and training *across* episodes (the outer loop) shapes
that learning algorithm. The twin, ``jax_impl.rl2``, has the same names and maths.

Agent (:class:`RL2Agent`), at trial t = 0..n-1 of B episodes at once (time-major):

    x_t      = [onehot(a_{t-1}) (k), r_{t-1}, t / n]          [B, k + 2]   (zeros at t = 0, time 0)
    h_t      = core(x_t, h_{t-1})                             [B, H]       (GRU or LSTM, ``torch_impl.recurrent``)
    logits_t = policy(h_t)  [B, k],   V_t = value(h_t)[..., 0]  [B],   pi_t = softmax(logits_t)
    a_t      = sample_action(sg(pi_t), action_uniform[t])  (or argmax logits_t when greedy)
    r_t      = step(batch, t, a_t)                          (``torch_impl.bandit``)

Objective (:func:`a2c_loss`; ``cogmeta.config.RLConfig``), averaged over the n x B trials:

    G_t  = r_t + gamma G_{t+1},  G_n = 0                  (:func:`discounted_returns`; no bootstrap)
    A_t  = G_t - sg(V_t)
    loss = mean[-log pi_t(a_t) A_t] + c_v mean[(G_t - V_t)^2 / 2] - c_e mean[H(pi_t)],  H = -sum_i pi log pi

``sg`` stops the gradient. There are two stops: the action draw (the actions are samples; their
probability enters the loss only through ``log pi_t(a_t)``, the REINFORCE score) and the baseline V_t in
the advantage (the critic is trained by the value term only). The returns G are functions of sampled
rewards and carry no gradient by construction; the inputs x_t likewise (actions and rewards are data).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np
import torch
from torch import nn

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint
from cogmeta.tasks.bandit import EPISODE_AXES, BanditBatch
from cogmeta.weights import validate_weights
from torch_impl.bandit import from_numpy, sample_action, sample_episodes, step
from torch_impl.numerics import configure, resolve_device, resolve_dtype
from torch_impl.recurrent import CORES
from torch_impl.samplers import step_generator
from torch_impl.trainer import Trainer, default_member
from torch_impl.weights import load_canonical, model_to_canonical


class Rollout(NamedTuple):
    """B episodes of n trials played by the agent (time-major).

    Attributes:
        actions: ``[n, B]`` int64 arms pulled.
        rewards: ``[n, B]`` rewards in {0, 1} (batch dtype).
        logits: ``[n, B, k]`` policy logits (differentiable).
        values: ``[n, B]`` value estimates V_t (differentiable).
    """

    actions: torch.Tensor
    rewards: torch.Tensor
    logits: torch.Tensor
    values: torch.Tensor


class RL2Agent(nn.Module):
    """``core`` (GRU/LSTM over inputs of size k + 2), ``policy`` (Linear H -> k) and ``value`` (Linear H -> 1).

    Canonical tensors: ``core.weight_ih_l{j}`` ... (``torch_impl.recurrent``), ``policy.weight [k, H]``,
    ``policy.bias [k]``, ``value.weight [1, H]``, ``value.bias [1]``; torch's default init.

    Args:
        config: an rl2-family run config (``model`` and ``task.arms`` are read).
        dtype: parameter dtype.
    """

    def __init__(self, config: RunConfig, dtype: torch.dtype = torch.float32):
        super().__init__()
        model, self.arms = config.model, config.task.arms
        self.core = CORES[model.cell](self.arms + 2, model.hidden_size, model.num_layers, dtype=dtype)
        self.policy = nn.Linear(model.hidden_size, self.arms, dtype=dtype)
        self.value = nn.Linear(model.hidden_size, 1, dtype=dtype)

    def initial_state(self, batch_size: int, dtype: torch.dtype, device: torch.device | str = "cpu"):
        """Zeros: ``[L, B, H]`` (GRU) or ``(h, c)``, each ``[L, B, H]`` (LSTM), torch's ``hx=None``."""
        zeros = torch.zeros(self.core.num_layers, batch_size, self.core.hidden_size, dtype=dtype, device=device)
        return zeros if isinstance(self.core, nn.GRU) else (zeros, zeros.clone())

    def forward(self, inputs: torch.Tensor, state) -> tuple[torch.Tensor, torch.Tensor, object]:
        """One trial: ``inputs [B, k + 2]`` and the core's state -> ``(logits [B, k], values [B], new state)``.

        Each input depends on the previous action, so the core advances one step per call: layer by layer
        with ``torch.gru_cell`` / ``torch.lstm_cell`` on the core's own tensors, the arithmetic of
        ``nn.GRU``/``nn.LSTM`` without their sequence API (flattening, checks, a length-1 sequence), which cost
        a sixth of a 100-trial update (``docs/performance.md``). GRU: bit-identical to ``self.core`` on a
        length-1 sequence; LSTM: ``nn.LSTM`` may take oneDNN's kernel on the CPU, which rounds differently
        in the last bits (``tests/test_rl2.py::test_one_trial_of_the_cell_equals_the_sequence_core``).
        """
        core, x = self.core, inputs
        if isinstance(core, nn.GRU):
            layers = []
            for j in range(core.num_layers):
                x = torch.gru_cell(x, state[j], *_layer_tensors(core, j))
                layers.append(x)
            state = torch.stack(layers)
        else:
            hs, cs = [], []
            for j in range(core.num_layers):
                x, c = torch.lstm_cell(x, (state[0][j], state[1][j]), *_layer_tensors(core, j))
                hs.append(x), cs.append(c)
            state = (torch.stack(hs), torch.stack(cs))
        return self.policy(x), self.value(x)[..., 0], state


def _layer_tensors(core: nn.RNNBase, layer: int) -> tuple[torch.Tensor, ...]:
    """``(weight_ih, weight_hh, bias_ih, bias_hh)`` of ``layer``, the argument order of the cell functions."""
    return tuple(getattr(core, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def trial_times(horizon: int, dtype: torch.dtype) -> torch.Tensor:
    """``t / n`` for t = 0..n-1, ``[n]``: divided in float64 by numpy and rounded once to ``dtype``, the
    same constants in both twins (a division in float32 on either side could round differently)."""
    return torch.as_tensor(np.arange(horizon) / horizon).to(dtype)


def rollout(agent: RL2Agent, batch: BanditBatch, greedy: bool = False) -> Rollout:
    """Play the B episodes of ``batch`` (tensors on the agent's device and dtype), all stepped together.

    A Python loop over the n trials. ``greedy``: a_t = argmax logits_t (the first index on ties) instead of
    a draw with ``batch.action_uniform[t]``.
    """
    horizon, size, arms = batch.reward_uniform.shape
    dtype, device = batch.reward_uniform.dtype, batch.reward_uniform.device
    times = trial_times(horizon, dtype).to(device)
    state = agent.initial_state(size, dtype, device)
    inputs = torch.zeros(size, arms + 2, dtype=dtype, device=device)  # t = 0: no previous action or reward
    actions, rewards, logits, values = [], [], [], []
    for t in range(horizon):
        logits_t, values_t, state = agent(inputs, state)
        if greedy:
            actions_t = torch.argmax(logits_t.detach(), dim=-1)
        else:
            # sg(pi_t): the draw is data; the policy's gradient enters through log pi_t(a_t) in a2c_loss
            actions_t = sample_action(torch.softmax(logits_t.detach(), dim=-1), batch.action_uniform[t])
        rewards_t = step(batch, t, actions_t, validate=False)  # in range by construction; no host sync
        actions.append(actions_t), rewards.append(rewards_t), logits.append(logits_t), values.append(values_t)
        if t + 1 < horizon:
            time = times[t + 1].expand(size, 1)
            # a comparison, not F.one_hot: one_hot checks its range on the host, which torch.func.vmap (the sweep
            # engine) cannot do
            onehot = (actions_t[:, None] == torch.arange(arms, device=device)).to(dtype)
            inputs = torch.cat([onehot, rewards_t[:, None], time], dim=-1)
    return Rollout(torch.stack(actions), torch.stack(rewards), torch.stack(logits), torch.stack(values))


def discounted_returns(rewards: torch.Tensor, discount: float) -> torch.Tensor:
    """``G_t = r_t + discount * G_{t+1}``, ``G_n = 0``: ``[n, B]`` -> ``[n, B]`` (a backward loop over t)."""
    returns = []
    following = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        following = rewards[t] + discount * following
        returns.append(following)
    return torch.stack(returns[::-1]) if returns else torch.zeros_like(rewards)


def a2c_loss(rollout: Rollout, discount: float, value_weight: float, entropy_weight: float) -> tuple[torch.Tensor, dict]:
    """The A2C loss of a rollout and its metrics (module docstring for the formula).

    Args:
        rollout: the episodes (:func:`rollout`).
        discount: gamma in (0, 1].
        value_weight: c_v, the weight of the value loss.
        entropy_weight: c_e, the weight of the entropy bonus.

    Returns:
        ``(loss, aux)``: the scalar loss and ``{"reward": mean over episodes of sum_t r_t, "entropy": mean
        H(pi_t), "value_loss": mean (G_t - V_t)^2 / 2}`` (detached scalars).
    """
    returns = discounted_returns(rollout.rewards, discount)  # of sampled rewards: no gradient to stop
    log_probs = torch.log_softmax(rollout.logits, dim=-1)  # [n, B, k]
    chosen = torch.gather(log_probs, -1, rollout.actions[..., None])[..., 0]  # log pi_t(a_t)
    advantage = returns - rollout.values.detach()  # sg(V_t): the baseline is not trained by the policy term
    policy_loss = torch.mean(-chosen * advantage)
    value_loss = torch.mean((returns - rollout.values) ** 2 / 2)
    entropy = torch.mean(-torch.sum(torch.softmax(rollout.logits, dim=-1) * log_probs, dim=-1))
    loss = policy_loss + value_weight * value_loss - entropy_weight * entropy
    aux = {"reward": torch.mean(torch.sum(rollout.rewards, dim=0)).detach(), "entropy": entropy.detach(),
           "value_loss": value_loss.detach()}
    return loss, aux


def entropy_weight(config: RunConfig, step: int) -> float:
    """c_e of 0-based update ``step``: ``config.rl.entropy_at(step, config.train.steps)`` (a linear anneal)."""
    return config.rl.entropy_at(int(step), config.train.steps)


def build_model(config: RunConfig, seed: int | None = None) -> RL2Agent:
    """A freshly initialised agent (torch's default init), seeded without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed if seed is None else seed)
        return RL2Agent(config, resolve_dtype(config.train.dtype))


def init_weights(config: RunConfig, seed: int | None = None) -> dict[str, np.ndarray]:
    """Canonical initial weights of a fresh agent."""
    return model_to_canonical(build_model(config, seed))


def _as_numpy(rollout: Rollout) -> dict[str, np.ndarray]:
    return {"actions": rollout.actions.cpu().numpy().astype(np.int64),
            "rewards": rollout.rewards.cpu().numpy().astype(np.float64),
            "probabilities": torch.softmax(rollout.logits, dim=-1).cpu().numpy().astype(np.float64),
            "values": rollout.values.cpu().numpy().astype(np.float64)}


class RL2Objective:
    """The RL² workload (``torch_impl.trainer.Objective``): the A2C loss of :class:`RL2Agent` on the task's
    episodes, the batch of step k of run ``seed`` drawn from ``step_generator(seed, k)`` on the CPU, then
    moved to ``config.torch.device``; the entropy weight annealed by ``config.rl`` (:func:`entropy_weight`)."""

    batch_axes = EPISODE_AXES  # the task axis of each batch leaf (data-parallel trainers split it)

    def __init__(self, config: RunConfig):
        self.config, self.train = config, config.train
        self.dtype = resolve_dtype(config.train.dtype)
        self.device = resolve_device(config.torch.device)

    def init(self, seed: int) -> RL2Agent:
        return build_model(self.config, seed)

    def member(self, seed: int, learning_rate: float | None = None) -> dict:
        return default_member(self.train, seed, learning_rate)

    def sample(self, step: int, member: dict) -> BanditBatch:
        """The :class:`BanditBatch` of ``train.batch_size`` episodes of training step ``step`` of ``member``."""
        batch = sample_episodes(self.config.task, step_generator(member["seed"], step), self.train.batch_size, self.dtype)
        return BanditBatch(*(value.to(self.device) for value in batch))

    def loss(self, model: RL2Agent, batch: BanditBatch, step: int, member: dict) -> tuple[torch.Tensor, dict]:
        rl = self.config.rl
        return a2c_loss(rollout(model, batch), rl.discount, rl.value_weight, entropy_weight(self.config, step))

    def play(self, model: RL2Agent, batch: BanditBatch, greedy: bool = False) -> dict[str, np.ndarray]:
        """:func:`play` with ``model``: numpy ``batch`` in, numpy ``actions``, ``rewards``, ``probabilities``,
        ``values`` out."""
        with torch.no_grad():
            played = rollout(model, BanditBatch(*(v.to(self.device) for v in from_numpy(batch, self.dtype))), greedy)
        return _as_numpy(played)


def make_trainer(config: RunConfig, checkpoint: Checkpoint | None = None, devices: int | None = None) -> Trainer:
    """The one trainer on :class:`RL2Objective` (``config.train.log_every`` steps per call) at
    ``config.torch.threads`` threads, resumed from ``checkpoint`` (either framework's) if given; under ``torchrun``
    one rank of a data-parallel run whose episodes are split over the processes (``torch_impl.launch.make_trainer``)."""
    from torch_impl.launch import make_trainer as launch_trainer

    return launch_trainer(config, checkpoint, devices, objective=RL2Objective)


def play(config: RunConfig, weights: Mapping[str, np.ndarray], batch: BanditBatch, greedy: bool = False) -> dict[str, np.ndarray]:
    """The agent with canonical ``weights`` playing the numpy ``batch`` (cast to ``config.train.dtype``).

    Returns:
        ``actions [n, B]`` int64, ``rewards [n, B]``, ``probabilities [n, B, k]`` (softmax of the logits)
        and ``values [n, B]``, float64 numpy.
    """
    configure(config.torch.threads)
    validate_weights(weights, config)
    objective = RL2Objective(config)
    model = build_model(config).to(objective.device)
    load_canonical(model, weights)
    return objective.play(model, batch, greedy)


__all__ = ["RL2Agent", "RL2Objective", "Rollout", "a2c_loss", "build_model", "discounted_returns", "entropy_weight",
           "init_weights", "make_trainer", "play", "rollout", "trial_times"]
