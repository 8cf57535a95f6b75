"""Many training runs of one architecture: the members of a sweep, each a seed and a learning rate.

The twin of ``jax_impl.engine`` (same names: :class:`Engine`, :func:`make_train`, :func:`train_members`,
:func:`choose_strategy`; same maths per member: clip -> Adam -> p - lr_s(k) * direction on the
batches of ``step_generator(seeds[s], k)``), in PyTorch's best CPU configurations:

- ``loop`` (``auto`` for one member): one ``nn.GRU``/``nn.LSTM`` model + the functional Adam of
  ``torch_impl.optim`` per member, the members trained one after the other with the library's ``train_step``, at
  ``config.torch.threads`` intra-op threads (1 is fastest for these small models on a 2-core machine).
  ``nn.GRU`` runs the whole sequence in one MKL-DNN kernel.
- ``vmap`` (``auto`` for several members): ``torch.func.stack_module_state`` + ``torch.func.vmap(grad)``
  over the member axis, and the same ``torch_impl.optim`` clipping and Adam ``vmap``-ed over the stacked
  ``[S, ...]`` tensors, with one learning rate, step count and non-finite guard per member (torch.optim
  has one learning rate per parameter group, not one per member; functorch#782). For 16 GRU-64 members
  it measured 2.6-2.9x the member-updates/s of ``loop`` on CPU (benchmarks/results/suite-cpu.md): one
  Python step drives all members, and eager per-op overhead dominates at these sizes.

``Engine(config, strategy, compile=True)`` (opt-in, ``loop`` only) wraps each model in ``torch.compile``: its compile time is
tens of seconds for RNN models and ``nn.GRU`` graph-breaks (pytorch#91439), so it is never the default.
This engine trains on the CPU. One run on CUDA, with its step captured in a CUDA graph, is
``torch_impl.backend.Trainer`` with ``TorchOptions(device="cuda", cuda_graphs=True)`` (``torch_impl.static_step``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from cogmeta.config import RunConfig
from cogmeta.contract import MemberRun, StepMetrics
from cogmeta.progress import progress_bar
from torch_impl.backend import build_model
from torch_impl.heads import nll
from torch_impl.numerics import configure, resolve_dtype
from torch_impl.optim import (
    AdamState,
    adam_step,
    clip_by_global_norm,
    init_adam,
    learning_rate,
)
from torch_impl.samplers import model_inputs
from torch_impl.training import make_train_step, native_batch
from torch_impl.weights import model_to_canonical

STRATEGIES = ("auto", "loop", "vmap")


def choose_strategy(strategy: str, members: int = 2) -> str:
    """Resolve ``auto``: ``loop`` for one member (the plain trainer), ``vmap`` for several."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown seed strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if strategy != "auto":
        return strategy
    return "loop" if members == 1 else "vmap"


class Engine:
    """Trains S members of one architecture on the CPU, ``loop`` (one after the other) or ``vmap`` (together).

    Args:
        config: the shared run config (its ``train.seed`` and ``train.learning_rate`` are replaced by
            each member's).
        strategy: ``auto``, ``loop`` or ``vmap`` (see the module docstring).
        compile: wrap each ``loop`` member's model in ``torch.compile`` (opt-in; see the module docstring).
    """

    def __init__(self, config: RunConfig, strategy: str = "auto", compile: bool = False):
        if config.torch.cuda_graphs or config.torch.device != "cpu":
            raise ValueError("the PyTorch sweep engine trains on the CPU; for one run on CUDA use `cogmeta train "
                             "--backend torch --torch-device cuda [--cuda-graphs]`")
        self.config = config
        self.requested = strategy
        self.strategy = choose_strategy(strategy)
        self.compile = compile

    def train(self, seeds: Sequence[int], learning_rates: Sequence[float] | None = None, *,
              progress: bool = True) -> list[MemberRun]:
        """Train every member for ``train.steps`` steps.

        A member whose loss or gradient becomes non-finite stops there (its update is not applied and
        it stays frozen), as a single run would; the others go on.
        """
        config = self.config
        seeds = [int(seed) for seed in seeds]
        rates = [config.train.learning_rate] * len(seeds) if learning_rates is None else [float(r) for r in learning_rates]
        if not seeds or len(rates) != len(seeds):
            raise ValueError(f"need one learning rate per seed and at least one member; got {len(seeds)} seeds, "
                             f"{len(rates)} learning rates")
        configure(config.torch.threads)
        self.strategy = choose_strategy(self.requested, len(seeds))
        if self.compile and self.strategy != "loop":
            raise ValueError("compile=True is available with the 'loop' strategy only")
        bar = progress_bar(progress, config.train.steps * (len(seeds) if self.strategy == "loop" else 1),
                           f"sweep (torch, {len(seeds)} members, {self.strategy})")
        try:
            if self.strategy == "loop":
                return [self._train_one(seed, rate, bar) for seed, rate in zip(seeds, rates)]
            return self._train_vmapped(seeds, rates, bar)
        finally:
            if bar is not None:
                bar.close()

    def _train_one(self, seed: int, rate: float, bar) -> MemberRun:
        """One member with the library's step: ``nn.GRU``/``nn.LSTM``, ``torch_impl.optim``'s Adam."""
        config = self.config
        member = _member_config(config, seed, rate)
        dtype = resolve_dtype(config.train.dtype)
        model = build_model(member)
        runner = torch.compile(model) if self.compile else model
        state = init_adam(runner.named_parameters())  # names as train_step sees them (compiled: "_orig_mod." + name)
        losses, norms, lrs = [], [], []
        stopped = False
        train_step = make_train_step(runner, member)
        for step in range(member.train.steps):
            loss, norm, lr = train_step(state, native_batch(member, step, dtype), step)
            losses.append(loss), norms.append(norm), lrs.append(lr)
            if bar is not None:
                bar.update(1)
            if not (math.isfinite(loss) and math.isfinite(norm)):
                stopped = True
                break
        steps = len(losses) - int(stopped)
        metrics = StepMetrics(np.asarray(losses), np.asarray(norms), np.asarray(lrs))
        return MemberRun(seed, rate, model_to_canonical(model), metrics, steps, stopped)

    def _train_vmapped(self, seeds: list[int], rates: list[float], bar) -> list[MemberRun]:
        """All members at once: ``vmap(grad)`` over stacked parameters, then ``torch_impl.optim``'s
        ``clip_by_global_norm`` and ``adam_step`` ``vmap``-ed over the members (member s at step k: its own
        gradient norm, learning rate lr_s(k), Adam count and non-finite guard)."""
        config = self.config
        train, dtype = config.train, resolve_dtype(config.train.dtype)
        models = [build_model(_member_config(config, seed, rate)) for seed, rate in zip(seeds, rates)]
        params, buffers = stack_module_state(models)
        params = {name: tensor.detach() for name, tensor in params.items()}
        base = models[0]
        family = config.task.family

        def loss(p, b, observations):
            raw = functional_call(base, (p, b), (model_inputs(observations),))
            return nll(family, raw, observations).mean()

        grads_and_losses = vmap(grad_and_value(loss), in_dims=(0, 0, 0))
        clip = vmap(lambda grads: clip_by_global_norm(grads, train.clip_norm))
        adam = vmap(lambda p, g, state, lr, ok: adam_step(p, g, state, lr, train, apply=ok))
        members = len(seeds)
        zeros = init_adam(params)
        state = AdamState(torch.zeros(members, dtype=torch.float64), zeros.exp_avg, zeros.exp_avg_sq)  # count per member
        peaks = torch.tensor(rates, dtype=torch.float64)
        alive = torch.ones(members, dtype=torch.bool)
        history = {"loss": [], "grad_norm": [], "learning_rate": []}
        done = np.zeros(members, int)
        member_configs = [_member_config(config, seed, rate) for seed, rate in zip(seeds, rates)]
        for step in range(train.steps):
            observations = torch.stack([native_batch(m, step, dtype) for m in member_configs])
            grads, losses = grads_and_losses(params, buffers, observations)
            grads, norms = clip(grads)
            finite = torch.isfinite(losses) & torch.isfinite(norms) & alive
            lrs = learning_rate(step, train, peak=peaks).expand(members)
            history["loss"].append(losses.detach().double().numpy().copy())
            history["grad_norm"].append(norms.detach().double().numpy().copy())
            history["learning_rate"].append(lrs.numpy().copy())
            params, state = adam(params, grads, state, lrs, finite)
            done += (finite & alive).numpy()
            alive = finite
            if bar is not None:
                bar.update(1)
            if not alive.any():
                break
        stacked = {key: np.stack(values, axis=1) for key, values in history.items()}  # [S, steps]
        runs = []
        for s, (seed, rate) in enumerate(zip(seeds, rates)):
            attempted = min(done[s] + (0 if alive[s] else 1), stacked["loss"].shape[1])
            metrics = StepMetrics(*(stacked[key][s, :attempted] for key in ("loss", "grad_norm", "learning_rate")))
            weights = {name: params[name][s].detach().cpu().numpy().copy() for name in params}
            weights.update({name: buffers[name][s].detach().cpu().numpy().copy() for name in buffers})
            runs.append(MemberRun(seed, rate, weights, metrics, int(done[s]), not bool(alive[s])))
        return runs


def _member_config(config: RunConfig, seed: int, rate: float) -> RunConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed, learning_rate=rate))


def make_train(config: RunConfig, strategy: str = "auto", compile: bool = False) -> Callable:
    """``train(seeds, learning_rates=None, progress=True) -> [MemberRun]``, one engine for all calls."""
    return Engine(config, strategy, compile).train


def train_members(config: RunConfig, seeds: Sequence[int], learning_rates: Sequence[float] | None = None, *,
                  strategy: str = "auto", progress: bool = True) -> list[MemberRun]:
    """The backend entry point of ``cogmeta.sweep``: every member of one architecture, trained together."""
    return Engine(config, strategy).train(seeds, learning_rates, progress=progress)
