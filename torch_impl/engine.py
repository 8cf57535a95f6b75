"""Many training runs of one architecture: the members of a sweep, each a seed and a learning rate.

The twin of ``jax_impl.engine`` (same names: :class:`Engine`, :func:`make_train`, :func:`train_members`,
:func:`choose_strategy`; same maths per member: clip -> Adam -> p - lr_s(k) * direction on the
batches of ``step_generator(seeds[s], k)``), in PyTorch's best CPU configurations:

- ``loop`` (``auto`` for one member): one ``nn.GRU``/``nn.LSTM`` model + the functional Adam of
  ``torch_impl.optim`` per member, the members trained one after the other with the library's ``train_step``, at
  ``config.torch.threads`` intra-op threads (1 is fastest for these small models on a 2-core machine).
  ``nn.GRU`` runs the whole sequence in one MKL-DNN kernel.
- ``vmap``: ``torch.func.stack_module_state`` + ``torch.func.vmap(grad)``
  over the member axis, and the same ``torch_impl.optim`` clipping and Adam ``vmap``-ed over the stacked
  ``[S, ...]`` tensors, with one learning rate, step count and non-finite guard per member (torch.optim
  has one learning rate per parameter group, not one per member; functorch#782). For 16 GRU-64 members
  at batch 32 it measured 2.6-2.9x the member-updates/s of ``loop`` on CPU (benchmarks/results/suite-cpu.md):
  one Python step drives all members, and eager per-op overhead dominates at these sizes.

``auto`` trains one member with ``loop``; for several it *measures*, as ``jax_impl.engine`` does: each strategy
trains copies of the members for :data:`CALIBRATION_STEPS` steps (after one untimed step) and the fastest is kept
(:attr:`Engine.calibration`); the copies are dropped, so the members' training is the same under either. Which
one wins depends on the sizes: at the README's batch of 128 tasks ``nn.GRU``'s fused kernel amortises the
per-op overhead that ``vmap`` shares, and ``loop`` won for 4 GRU-64 members (354 against 301 member-updates/s,
AMD VM, 2026-12-07), which is what each of two sweep worker processes trains (docs/performance.md).

``Engine(config, strategy, compile=True)`` (opt-in, ``loop`` only) wraps each model in ``torch.compile``: its compile time is
tens of seconds for RNN models and ``nn.GRU`` graph-breaks (pytorch#91439), so it is never the default.
This engine trains on the CPU. One run on CUDA, with its step captured in a CUDA graph, is
``torch_impl.backend.Trainer`` with ``TorchOptions(device="cuda", cuda_graphs=True)`` (``torch_impl.static_step``).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch.func import functional_call, grad_and_value, stack_module_state, vmap
from torch.utils._pytree import tree_map  # batches that are tuples of tensors (the bandit episodes) stack leafwise

from cogmeta.config import RunConfig
from cogmeta.contract import MemberRun, StepMetrics
from cogmeta.progress import progress_bar
from torch_impl.backend import MetaLearnerObjective
from torch_impl.numerics import configure
from torch_impl.optim import (
    AdamState,
    adam_step,
    clip_by_global_norm,
    init_adam,
    learning_rate,
)
from torch_impl.trainer import Objective, make_train_step, stack_members, stack_outputs
from torch_impl.weights import model_to_canonical

STRATEGIES = ("auto", "loop", "vmap")
#: Steps of the timed calls with which ``auto`` compares the strategies (``jax_impl.engine`` times as many): the
#: per-step cost that decides is visible in a few steps, and a short sweep should not pay more than a second for it.
CALIBRATION_STEPS = 20


def choose_strategy(strategy: str, members: int = 2) -> str:
    """Resolve ``auto`` without measuring: ``loop`` for one member (the plain trainer), ``vmap`` for several
    (``Engine`` measures instead when there are several members, and asks for ``loop`` whatever was requested
    when the objective says ``vmappable = False``)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown seed strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if strategy != "auto":
        return strategy
    return "loop" if members == 1 else "vmap"


def objective_for(config: RunConfig) -> Objective:
    """The objective that a ``RunConfig`` of a sweepable model family trains: the tutorial meta-learner's
    (``torch_impl.backend.MetaLearnerObjective``), the RL² agent's (``torch_impl.rl2.RL2Objective``) or the
    bounded GRU's (``torch_impl.bounded_gru.make_objective``)."""
    if config.model.family == "rl2":
        from torch_impl.rl2 import RL2Objective

        return RL2Objective(config)
    if config.model.family == "bounded_gru":
        from torch_impl.bounded_gru import make_objective

        return make_objective(config)
    if config.model.family != "meta_learner":
        raise ValueError(f"the sweep engine trains the meta_learner, rl2 and bounded_gru families, not "
                         f"{config.model.family!r}")
    return MetaLearnerObjective(config)


class Engine:
    """Trains S members of one objective on the CPU, ``loop`` (one after the other) or ``vmap`` (together).

    Args:
        objective: what every member trains (``torch_impl.trainer.Objective``); a ``RunConfig`` means its model
            family's (:func:`objective_for`, at ``config.torch.threads`` threads).
        strategy: ``auto``, ``loop`` or ``vmap`` (see the module docstring). ``vmap`` needs an objective
            whose loss only *calls* the model (``functional_call`` swaps the stacked parameters in).
        compile: wrap each ``loop`` member's model in ``torch.compile`` (opt-in; see the module docstring).
    """

    def __init__(self, objective: Objective | RunConfig, strategy: str = "auto", compile: bool = False):
        if isinstance(objective, RunConfig):
            if objective.torch.cuda_graphs or objective.torch.device != "cpu":
                raise ValueError("the PyTorch sweep engine trains on the CPU; for one run on CUDA use `cogmeta train "
                                 "--backend torch --torch-device cuda [--cuda-graphs]`")
            configure(objective.torch.threads)
            objective = objective_for(objective)
        self.objective = objective
        self.train_config = objective.train
        self.requested = strategy
        self.strategy = choose_strategy(strategy)
        self.compile = compile
        self.calibration: dict[str, float] = {}  # seconds per step of each strategy tried by ``auto``

    def train(self, seeds: Sequence[int], learning_rates: Sequence[float] | None = None, *,
              progress: bool = True, members: Sequence[dict] | None = None, models: Sequence | None = None,
              label: str = "sweep") -> list[MemberRun]:
        """Train every member for ``train.steps`` steps.

        Member s is ``objective.member(seeds[s], learning_rates[s])`` unless ``members`` gives the member
        dicts; ``models`` (one ``nn.Module`` per member) replaces the fresh initial models (fine-tuning).
        A member whose loss or gradient becomes non-finite stops there (its update is not applied and it
        stays frozen), as a single run would; the others go on.
        """
        train = self.train_config
        seeds = [int(seed) for seed in seeds]
        rates = [train.learning_rate] * len(seeds) if learning_rates is None else [float(r) for r in learning_rates]
        if not seeds or len(rates) != len(seeds) or (members is not None and len(members) != len(seeds)):
            raise ValueError(f"need one learning rate per seed (and one member dict per seed, if given) and at least "
                             f"one member; got {len(seeds)} seeds, {len(rates)} learning rates"
                             + ("" if members is None else f", {len(members)} members"))
        members = [self.objective.member(s, r) for s, r in zip(seeds, rates)] if members is None else list(members)
        models = [self.objective.init(seed) for seed in seeds] if models is None else list(models)
        vmappable = getattr(self.objective, "vmappable", True)  # False: its loss draws from a torch.Generator
        if not vmappable and self.requested == "vmap":
            raise ValueError(f"{type(self.objective).__name__} cannot be trained with the 'vmap' strategy (its loss "
                             f"draws random numbers from a torch.Generator); use strategy 'loop' or 'auto'")
        self.strategy = choose_strategy(self.requested if vmappable else "loop", len(seeds))
        if self.compile and self.strategy != "loop":
            raise ValueError("compile=True is available with the 'loop' strategy only")
        if self.requested == "auto" and self.strategy == "vmap" and self._vmap_applies():  # several vmappable members
            self.calibrate(models, members)
        bar = progress_bar(progress, train.steps * (len(seeds) if self.strategy == "loop" else 1),
                           f"{label} (torch, {len(seeds)} members, {self.strategy})")
        try:
            return self._train(self.strategy, models, members, bar)
        finally:
            if bar is not None:
                bar.close()

    def calibrate(self, models: Sequence, members: Sequence[dict]) -> str:
        """Time :data:`CALIBRATION_STEPS` steps of ``loop`` and ``vmap`` on copies of the members (after one untimed
        step each) and keep and return the faster; the members' models are not advanced."""
        steps = min(self.train_config.steps, CALIBRATION_STEPS)
        for strategy in ("loop", "vmap"):
            copies = [copy.deepcopy(model) for model in models]
            self._train(strategy, copies, members, None, 1)  # untimed: first-call allocations (and imports)
            began = time.perf_counter()
            self._train(strategy, copies, members, None, steps)
            self.calibration[strategy] = (time.perf_counter() - began) / steps
        self.strategy = min(self.calibration, key=self.calibration.get)
        return self.strategy

    def _vmap_applies(self) -> bool:
        train = self.train_config
        return train.optimizer == "adam" and train.clip_norm is not None

    def _train(self, strategy: str, models: Sequence, members: Sequence[dict], bar, steps: int | None = None):
        """Every member for ``steps`` steps (default ``train.steps``) with ``strategy``."""
        steps = self.train_config.steps if steps is None else steps
        if strategy == "loop":
            return [self._train_one(model, member, bar, steps) for model, member in zip(models, members)]
        return self._train_vmapped(list(models), list(members), bar, steps)

    def _train_one(self, model, member: dict, bar, steps: int) -> MemberRun:
        """One member with the one trainer's step (``torch_impl.trainer.make_train_step``)."""
        runner = torch.compile(model) if self.compile else model
        state = init_adam(runner.named_parameters())  # names as the step sees them (compiled: "_orig_mod." + name)
        train_step = make_train_step(self.objective, runner)
        outputs = []
        for step in range(steps):
            outputs.append(train_step(state, self.objective.sample(step, member), step, member))
            if bar is not None:
                bar.update(1)
            if not (math.isfinite(outputs[-1].loss) and math.isfinite(outputs[-1].grad_norm)):
                break
        stacked = stack_outputs(outputs)
        stopped = not (np.isfinite(stacked.loss[-1]) and np.isfinite(stacked.grad_norm[-1]))
        metrics = StepMetrics(stacked.loss, stacked.grad_norm, stacked.learning_rate, stacked.aux)
        return MemberRun(member["seed"], member["learning_rate"], model_to_canonical(model), metrics,
                         len(outputs) - int(stopped), stopped)

    def _train_vmapped(self, models: list, members: list[dict], bar, steps: int) -> list[MemberRun]:
        """All members at once: ``vmap(grad)`` over stacked parameters, then ``torch_impl.optim``'s
        ``clip_by_global_norm`` and ``adam_step`` ``vmap``-ed over the members (member s at step k: its own
        gradient norm, learning rate lr_s(k), Adam count and non-finite guard)."""
        objective, train = self.objective, self.train_config
        if train.optimizer != "adam" or train.clip_norm is None:
            raise ValueError("the 'vmap' strategy implements clipped Adam; use strategy='loop' for this objective")
        params, buffers = stack_module_state(models)
        params = {name: tensor.detach() for name, tensor in params.items()}
        base = models[0]

        def loss(p, b, batch, step, member):
            return objective.loss(_Stateless(base, p, b), batch, step, member)

        grads_and_losses = vmap(grad_and_value(loss, has_aux=True), in_dims=(0, 0, 0, None, 0))
        clip = vmap(lambda grads: clip_by_global_norm(grads, train.clip_norm))
        adam = vmap(lambda p, g, state, lr, ok: adam_step(p, g, state, lr, train, apply=ok))
        count = len(members)
        zeros = init_adam(params)
        state = AdamState(torch.zeros(count, dtype=torch.float64), zeros.exp_avg, zeros.exp_avg_sq)  # count per member
        peaks = torch.tensor([m["learning_rate"] for m in members], dtype=torch.float64)
        stacked_members = stack_members(members)
        alive = torch.ones(count, dtype=torch.bool)
        history: dict[str, list] = {"loss": [], "grad_norm": [], "learning_rate": []}
        aux_history: dict[str, list] = {}
        done = np.zeros(count, int)
        for step in range(steps):
            batch = tree_map(lambda *parts: torch.stack(parts), *[objective.sample(step, m) for m in members])
            grads, (losses, aux) = grads_and_losses(params, buffers, batch, step, stacked_members)
            grads, norms = clip(grads)
            finite = torch.isfinite(losses) & torch.isfinite(norms) & alive
            lrs = learning_rate(step, train, peak=peaks).expand(count)
            history["loss"].append(losses.detach().double().numpy().copy())
            history["grad_norm"].append(norms.detach().double().numpy().copy())
            history["learning_rate"].append(lrs.numpy().copy())
            for name, value in aux.items():
                aux_history.setdefault(name, []).append(value.detach().double().numpy().copy())
            params, state = adam(params, grads, state, lrs, finite)
            done += (finite & alive).numpy()
            alive = finite
            if bar is not None:
                bar.update(1)
            if not alive.any():
                break
        stacked = {key: np.stack(values, axis=1) for key, values in history.items()}  # [S, steps]
        stacked_aux = {key: np.stack(values, axis=1) for key, values in aux_history.items()}
        runs = []
        for s, member in enumerate(members):
            attempted = min(done[s] + (0 if alive[s] else 1), stacked["loss"].shape[1])
            metrics = StepMetrics(*(stacked[key][s, :attempted] for key in ("loss", "grad_norm", "learning_rate")),
                                  {key: values[s, :attempted] for key, values in stacked_aux.items()})
            weights = {name: params[name][s].detach().cpu().numpy().copy() for name in params}
            weights.update({name: buffers[name][s].detach().cpu().numpy().copy() for name in buffers})
            runs.append(MemberRun(member["seed"], member["learning_rate"], weights, metrics, int(done[s]),
                                  not bool(alive[s])))
        return runs


class _Stateless:
    """``base`` called with other parameters and buffers (``torch.func.functional_call``); other attributes
    are ``base``'s (e.g. the tutorial model's ``family``)."""

    def __init__(self, base, params, buffers):
        self._base, self._tensors = base, (params, buffers)

    def __call__(self, *args):
        return functional_call(self._base, self._tensors, args)

    def __getattr__(self, name):
        return getattr(self._base, name)


def make_train(config: RunConfig | Objective, strategy: str = "auto", compile: bool = False) -> Callable:
    """``train(seeds, learning_rates=None, progress=True) -> [MemberRun]``, one engine for all calls."""
    return Engine(config, strategy, compile).train


def train_members(config: RunConfig, seeds: Sequence[int], learning_rates: Sequence[float] | None = None, *,
                  strategy: str = "auto", progress: bool = True) -> list[MemberRun]:
    """The backend entry point of ``cogmeta.sweep``: every member of one architecture, trained together."""
    return Engine(config, strategy).train(seeds, learning_rates, progress=progress)
