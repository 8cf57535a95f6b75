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
``{"ih": eps, "hh": eps, "mu": eps, "logscale": eps}``; else it is drawn from ``generator``.

Training is the one trainer's (``torch_impl.trainer``, ``torch_impl.engine``) on :class:`BoundedObjective`:
loss = NLL + kl_weight_k * KL with kl_weight_k = beta * min((k + 1) / warmup, 1) (``cogmeta.contract.kl_weight``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping, NamedTuple

import numpy as np
import torch
from torch import nn

from cogmeta._validation import require_int, require_real
from cogmeta.config import RunConfig, TrainConfig
from cogmeta.contract import Checkpoint, kl_weight
from cogmeta.tasks.paired_comparison import CONDITIONS, PairedComparisonTask
from torch_impl.numerics import configure, resolve_dtype
from torch_impl.paired_comparison_samplers import model_inputs, sample_batch
from torch_impl.svdo import LinearSVDO
from torch_impl.trainer import Trainer, default_member
from torch_impl.weights import load_canonical

LAYERS = ("ih", "hh", "mu", "logscale")
MODEL_NOISE_STD = 0.1


class BoundedOutputs(NamedTuple):
    """``mean``, ``scale`` ``[T, B, K]``: the Gaussian over cue weights; ``z`` ``[T, B]``: the probit argument."""

    mean: torch.Tensor
    scale: torch.Tensor
    z: torch.Tensor


class BoundedMetaLearner(nn.Module):
    """The bounded meta-learned inference model (module doc) for K cues and H hidden units."""

    def __init__(self, num_cues: int = 4, hidden_size: int = 64, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.num_cues, self.hidden_size = num_cues, hidden_size
        self.ih = LinearSVDO(num_cues + 2, 3 * hidden_size, dtype)
        self.hh = LinearSVDO(hidden_size, 3 * hidden_size, dtype)
        self.mu = LinearSVDO(hidden_size, num_cues, dtype)
        self.logscale = LinearSVDO(hidden_size, num_cues, dtype)
        self.initial_state = nn.Parameter(torch.zeros(hidden_size, dtype=dtype))
        with torch.no_grad():  # the paper's init: orthogonal per gate block, zero GRU biases
            for layer in (self.ih, self.hh):
                for block in layer.weight.split(hidden_size, dim=0):
                    nn.init.orthogonal_(block)
                layer.bias.zero_()

    def layers(self) -> dict[str, LinearSVDO]:
        return {name: getattr(self, name) for name in LAYERS}

    def kl(self) -> torch.Tensor:
        """Sum of the layers' KL approximations."""
        return sum(layer.kl() for layer in self.layers().values())

    def forward(
        self,
        inputs: torch.Tensor,
        cues: torch.Tensor,
        mode: str = "sample",
        noise: Mapping[str, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> BoundedOutputs:
        """``inputs`` ``[T, B, K+2]``, ``cues`` ``[T, B, K]`` -> :class:`BoundedOutputs`."""
        noise = noise or {}
        weights = {name: layer.effective_weight(mode, noise.get(name), generator) for name, layer in self.layers().items()}
        hidden = self.hidden_size
        h = self.initial_state.expand(inputs.shape[1], hidden)
        states = [h]
        projected = self.ih(inputs[:-1], weights["ih"])  # [T-1, B, 3H]: the last input is never needed
        for gi in projected:
            gh = self.hh(h, weights["hh"])
            r = torch.sigmoid(gi[..., :hidden] + gh[..., :hidden])
            z = torch.sigmoid(gi[..., hidden : 2 * hidden] + gh[..., hidden : 2 * hidden])
            n = torch.tanh(gi[..., 2 * hidden :] + r * gh[..., 2 * hidden :])
            h = (1 - z) * n + z * h
            states.append(h)
        states = torch.stack(states)  # [T, B, H]: h_0 .. h_{T-1}
        mean = self.mu(states, weights["mu"])
        scale = torch.exp(self.logscale(states, weights["logscale"]))
        spread = 2 * MODEL_NOISE_STD**2 + torch.sum(cues**2 * scale**2, dim=-1)
        return BoundedOutputs(mean, scale, torch.sum(cues * mean, dim=-1) / torch.sqrt(spread))


def choice_nll(z: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-mean [y log Phi(z) + (1 - y) log Phi(-z)] over ``[T, B]``."""
    return -torch.mean(targets * torch.special.log_ndtr(z) + (1 - targets) * torch.special.log_ndtr(-z))


def bounded_loss(
    model: BoundedMetaLearner,
    inputs: torch.Tensor,
    cues: torch.Tensor,
    targets: torch.Tensor,
    kl_weight: float | torch.Tensor,
    noise: Mapping[str, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, nll, kl) with sampled weights: loss = nll + kl_weight * kl."""
    outputs = model(inputs, cues, "sample", noise, generator)
    nll = choice_nll(outputs.z, targets)
    kl = model.kl()
    return nll + kl_weight * kl, nll, kl


# ---------------------------------------------------------------------------------------- training
#: The engine strategy of the heuristics grid: ``loop``, the members one after another (the loss draws
#: its weight noise from the batch's ``torch.Generator``, which ``torch.func.vmap`` cannot batch).
STRATEGY = "loop"


class BoundedBatch(NamedTuple):
    """One training step's data: ``cues`` ``[T, B, K]``, ``targets`` ``[T, B]`` and ``noise``, the weight
    noise: the step's ``torch.Generator`` (the forward pass draws from it after the batch) or injected
    ``{layer: eps (out, in)}`` (``Trainer.run_on`` takes an iterable of such batches)."""

    cues: torch.Tensor
    targets: torch.Tensor
    noise: torch.Generator | Mapping[str, torch.Tensor]


class BoundedObjective:
    """The bounded meta-learner as an objective of the one trainer (``torch_impl.trainer.Objective``).

    Step k of a member trains on loss = NLL + w_k * KL with w_k = beta * min((k + 1) / warmup, 1)
    (``warmup = 0``: w_k = beta). Its batch, then its weight noise, come from one generator per step,
    seeded with ``SeedSequence([seed, condition, stream, k])``, so the data of a step depend on
    (member, k) only and a resumed run sees the batches of an uninterrupted one.

    Args:
        task: the paired-comparison task (its ``condition`` is the members' default).
        hidden_size: H, the GRU's units.
        train: steps, batch size, Adam, clipping and dtype (a ``bounded_gru`` preset's ``train`` section).
        beta: the members' default KL weight (>= 0).
        warmup: steps over which the KL weight ramps up to beta (>= 0).
        stream: the members' default random stream (>= 0; ``BoundConfig.stream``).
    """

    #: ``torch.func.vmap`` cannot batch the weight noise that the loss draws from each step's generator, so the
    #: engine trains these members one after another (:data:`STRATEGY`).
    vmappable = False

    def __init__(self, task: PairedComparisonTask, hidden_size: int, train: TrainConfig, beta: float = 0.0,
                 warmup: int = 0, stream: int = 0):
        self.task, self.train = task, train
        self.hidden_size = require_int("BoundedObjective", "hidden_size", hidden_size, 1)
        self.beta = _check_beta(beta)
        self.warmup = require_int("BoundedObjective", "warmup", warmup, 0)
        self.stream = require_int("BoundedObjective", "stream", stream, 0)
        self.dtype = resolve_dtype(train.dtype)
        self._tasks = [replace(task, condition=condition) for condition in CONDITIONS]  # by condition index

    def init(self, seed: int) -> BoundedMetaLearner:
        """A fresh model (torch's global RNG seeded with ``seed``, restored afterwards)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return BoundedMetaLearner(self.task.num_cues, self.hidden_size, self.dtype)

    def member(self, seed: int, learning_rate: float | None = None, condition: int | None = None,
               beta: float | None = None, stream: int | None = None) -> dict:
        """Run ``seed``'s member: ``condition`` (an index into ``CONDITIONS``; default the task's), ``beta``
        (default the objective's) and ``stream`` (0: pretraining, 1 + i: fine-tuning at the i-th beta of a
        grid), which with the seed and the condition seed the step generators."""
        condition = self.task.condition_index if condition is None else require_int(
            "BoundedObjective.member", "condition", condition, 0, len(CONDITIONS) - 1)
        stream = self.stream if stream is None else require_int("BoundedObjective.member", "stream", stream, 0)
        beta = self.beta if beta is None else _check_beta(beta)
        return default_member(self.train, seed, learning_rate, condition=condition, beta=beta, stream=stream)

    def sample(self, step: int, member: dict) -> BoundedBatch:
        """Batch and weight-noise generator of training step ``step`` (the batch is drawn first)."""
        seeds = np.random.SeedSequence([member["seed"], member["condition"], member["stream"], int(step)])
        state = seeds.generate_state(2, dtype=np.uint32)
        generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        batch = sample_batch(self._tasks[member["condition"]], generator, self.train.batch_size, self.dtype)
        return BoundedBatch(batch.cues, batch.targets, generator)

    def loss(self, model: BoundedMetaLearner, batch: BoundedBatch, step: int, member: dict):
        """``(NLL + w_k * KL, {"nll": NLL, "kl": KL})`` with sampled weights."""
        weight = kl_weight(step, member["beta"], self.warmup)
        noise = batch.noise
        injected, generator = (None, noise) if isinstance(noise, torch.Generator) else (noise, None)
        inputs = model_inputs(batch.cues, batch.targets)
        loss, nll, kl = bounded_loss(model, inputs, batch.cues, batch.targets, weight, injected, generator)
        return loss, {"nll": nll, "kl": kl}


def make_objective(config: RunConfig) -> BoundedObjective:
    """The objective of a ``bounded_gru`` run: ``config.task``, ``model.hidden_size``, ``train`` and the
    ``bound`` section's beta, warm-up and stream."""
    bound = config.bound
    return BoundedObjective(config.task, config.model.hidden_size, config.train, bound.beta, bound.warmup_steps,
                            bound.stream)


def make_trainer(config: RunConfig, checkpoint: Checkpoint | None = None) -> Trainer:
    """The one trainer on :func:`make_objective` (``config.train.log_every`` steps per call) at
    ``config.torch.threads`` threads, resumed (or started, for fine-tuning) from ``checkpoint`` if given."""
    configure(config.torch.threads)
    return Trainer(make_objective(config), checkpoint, steps_per_call=config.train.log_every)


def engine_start(objective: BoundedObjective, weights: list[Mapping[str, np.ndarray]]) -> dict:
    """The ``torch_impl.engine.Engine.train`` keyword that starts member s from canonical ``weights[s]``:
    ``{"models": [nn.Module]}`` (fine-tuning)."""
    models = []
    for tensors in weights:
        model = objective.init(0)
        load_canonical(model, tensors)
        models.append(model)
    return {"models": models}


def predict(weights, cues, targets, hidden_size: int, mode: str = "pruned", key: int = 0):
    """Model outputs on numpy ``cues [T, B, K]``, ``targets [T, B]``: (mean ``[T, B, K]``, p(y=1) ``[T, B]``)."""
    dtype = torch.from_numpy(np.asarray(next(iter(weights.values())))).dtype
    model = BoundedMetaLearner(cues.shape[-1], hidden_size, dtype)
    load_canonical(model, weights)
    cues_t, targets_t = torch.as_tensor(cues, dtype=dtype), torch.as_tensor(targets, dtype=dtype)
    with torch.no_grad():
        out = model(model_inputs(cues_t, targets_t), cues_t, mode, generator=torch.Generator().manual_seed(key))
        return out.mean.numpy(), torch.special.ndtr(out.z).numpy()


def _check_beta(beta) -> float:
    value = require_real("BoundedObjective", "beta", beta)
    if value < 0:
        raise ValueError(f"BoundedObjective.beta must be >= 0 (the KL weight of the description-length bound), "
                         f"got {value!r}")
    return value
