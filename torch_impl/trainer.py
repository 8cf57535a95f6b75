"""The one trainer (PyTorch): every workload's objective, clipped and updated by Adam or SGD, one Python step per update.

An *objective* (:class:`Objective`) says what a workload trains: its model, the batch of a step, the
loss and its extra metrics. Everything else is this module's and the same for every model family of the
library (the tutorial meta-learner, the bounded GRU, the amortized posterior, meta seq2seq), written once:

    loss, aux = objective.loss(model, batch_k, k, member);  g = backward(loss)
    g <- g * min(1, c / (||g|| + 1e-6))                (unless train.clip_norm is None)
    lr_k = schedule(k, peak = member["learning_rate"])  (cosine, constant or step; ``torch_impl.optim``)
    parameters, opt <- Adam or SGD at lr_k, in place; a non-finite loss or ||g|| applies nothing

A *member* is one training run of the objective: a dict, at least ``seed`` and ``learning_rate``, plus
whatever the objective varies per run (the bounded GRU's condition and beta). Builders close over the
``nn.Module`` and return steps or loops that update its parameters and the optimizer state in place,
reading the loss and the gradient norm back to the host after each step (the twin, ``jax_impl.trainer``,
returns the same callables as pure functions of ``(params, opt_state, ...)``). :class:`Trainer` holds one
run; ``torch_impl.engine`` trains many members.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple, Protocol

import numpy as np
import torch
from torch import nn

from cogmeta.config import TrainConfig
from cogmeta.contract import Checkpoint, StepMetrics
from cogmeta.held_out_check import HeldOutCheck
from torch_impl.optim import AdamState, adam_step, clip_by_global_norm, init_adam, learning_rate
from torch_impl.weights import load_canonical, model_to_canonical

FRAMEWORK = "torch"


class StepOutputs(NamedTuple):
    """Per-step values: floats for one step, ``[K]`` arrays for K steps (read back to the host).

    ``aux``: the objective's extra values by name (``{}`` for most; ``nll`` and ``kl`` for the bounded GRU).
    """

    loss: float | np.ndarray
    grad_norm: float | np.ndarray
    learning_rate: float | np.ndarray
    aux: dict


class Objective(Protocol):
    """What one workload trains.

    Attributes:
        train: the update rule, schedule and run length (``cogmeta.config.TrainConfig``).
        batch_axes: optional; the task axis of each leaf of the batch (an int, or a NamedTuple of ints matching
            the batch), for objectives whose loss and metrics are means over tasks. Declaring it lets the
            data-parallel trainer (``distributed.py``) split a run's batch over devices or processes.
    """

    train: TrainConfig

    def init(self, seed: int) -> nn.Module:
        """A fresh model of run ``seed`` (its initial weights)."""

    def member(self, seed: int, learning_rate: float | None = None) -> dict:
        """Run ``seed``'s member dict (``learning_rate`` defaults to ``train.learning_rate``)."""

    def sample(self, step: int, member: dict) -> Any:
        """The batch of training step ``step`` of ``member``, drawn from the run's own stream."""

    def loss(self, model: nn.Module, batch, step: int, member: dict) -> tuple[torch.Tensor, dict]:
        """``(scalar loss, aux)`` of ``model`` on ``batch``; ``aux`` maps names to scalar tensors."""


def make_train_step(objective: Objective, model: nn.Module, loss_and_grad: Callable | None = None) -> Callable:
    """``step(opt_state, batch, step, member) -> StepOutputs`` (floats), updating ``model`` and ``opt_state`` in place.

    A non-finite loss applies no update and returns a NaN norm; a non-finite gradient norm applies no
    update either. ``loss_and_grad(batch, step, member) -> (loss, aux, grads)`` defaults to
    ``objective.loss`` and ``backward`` (skipped for a non-finite loss).
    """
    train = objective.train
    params = dict(model.named_parameters())
    loss_and_grad = _value_and_grad(objective, model, params) if loss_and_grad is None else loss_and_grad

    def step_fn(opt_state, batch, step, member):
        lr = learning_rate(step, train, peak=member["learning_rate"])
        loss, aux, grads = loss_and_grad(batch, step, member)
        value, aux = float(loss), {name: float(v) for name, v in aux.items()}
        if not math.isfinite(value):
            return StepOutputs(value, math.nan, float(lr), aux)
        norm = clip_and_update_in_place(params, grads, opt_state, lr, train)
        return StepOutputs(value, norm, float(lr), aux)

    return step_fn


def make_train_on_batches(objective: Objective, model: nn.Module, loss_and_grad: Callable | None = None) -> Callable:
    """``run(opt_state, batches, start, member) -> StepOutputs [attempted]``: one step per given batch (an
    iterable), steps ``start ..``, stopping after the first non-finite loss or gradient norm."""
    step_fn = make_train_step(objective, model, loss_and_grad)

    def run(opt_state, batches, start, member):
        outputs = []
        for index, batch in enumerate(batches):
            outputs.append(step_fn(opt_state, batch, start + index, member))
            if not (math.isfinite(outputs[-1].loss) and math.isfinite(outputs[-1].grad_norm)):
                break
        return stack_outputs(outputs)

    return run


def make_member_chunk(objective: Objective, model: nn.Module, chunk: int, loss_and_grad: Callable | None = None) -> Callable:
    """``run(opt_state, start, count, member) -> StepOutputs [attempted]``.

    Step i trains on ``objective.sample(start + i, member)`` for i < ``count``, stopping after the first
    non-finite loss or gradient norm (that step applies no update). ``chunk`` is the most steps one call
    is meant to run (the JAX twin compiles a scan of that length); here it bounds nothing.
    """
    del chunk
    step_fn = make_train_step(objective, model, loss_and_grad)

    def run(opt_state, start, count, member):
        outputs = []
        for index in range(count):
            outputs.append(step_fn(opt_state, objective.sample(start + index, member), start + index, member))
            if not (math.isfinite(outputs[-1].loss) and math.isfinite(outputs[-1].grad_norm)):
                break
        return stack_outputs(outputs)

    return run


def make_run_steps(objective: Objective, model: nn.Module, chunk: int, member: dict,
                   loss_and_grad: Callable | None = None) -> Callable:
    """``run(opt_state, start, count) -> StepOutputs [attempted]``: one member's :func:`make_member_chunk`."""
    chunk_fn = make_member_chunk(objective, model, chunk, loss_and_grad)
    return lambda opt_state, start, count: chunk_fn(opt_state, start, count, member)


class Trainer:
    """One training run of ``objective``: its model, optimizer state (``torch_impl.optim.AdamState``) and step count.

    Args:
        objective: what to train (see :class:`Objective`).
        checkpoint: resume from a :class:`~cogmeta.contract.Checkpoint` (either framework's): weights,
            optimizer moments and the step count (which also sets the schedule and the batch stream).
        seed: the run's seed (default ``objective.train.seed``).
        steps_per_call: the steps one :meth:`run` call prefers (progress and logging granularity).
        device: where the model and its batches live.
        until: the held-out check of ``train.until_kl`` (``cogmeta.held_out_check.HeldOutCheck``) that
            :meth:`run_checked` runs between its steps (objectives with ``held_out_kl``).
    """

    def __init__(self, objective: Objective, checkpoint: Checkpoint | None = None, *, seed: int | None = None,
                 steps_per_call: int = 500, device: torch.device | str = "cpu", until: HeldOutCheck | None = None):
        if until is not None and not hasattr(objective, "held_out_kl"):
            raise ValueError(f"{type(objective).__name__} has no held-out KL to check (train.until_kl is for the "
                             f"tutorial's meta-learner); leave until_kl unset")
        self.until = until
        self._held_out = None  # the held-out tensors on the model's device, made at the first check
        self.objective = objective
        self.seed = objective.train.seed if seed is None else int(seed)
        self.member = objective.member(self.seed)
        self.device = torch.device(device)
        self.model = objective.init(self.seed).to(self.device)
        self.opt_state = init_adam(self.model.named_parameters())
        self.step = 0
        self.chunk_size = steps_per_call
        if checkpoint is not None:
            self._restore(checkpoint)
        self._run = make_run_steps(objective, self.model, self.chunk_size, self.member)
        self._run_on = make_train_on_batches(objective, self.model)

    def run(self, count: int) -> StepMetrics:
        """Up to ``count`` updates on the objective's own batches; stops before applying one whose loss or
        gradient is non-finite."""
        return self._advance(self._run(self.opt_state, self.step, count))

    def run_checked(self, count: int) -> tuple[StepMetrics, list[tuple[int, float]]]:
        """Up to ``count`` updates with the held-out check of :attr:`until` after every step whose count is a
        multiple of ``until.every``, ending at the first check below ``until.target`` or before applying a
        non-finite update: the metrics of the steps attempted and ``(step, KL)`` of every check made, in order (the
        JAX twin runs it all in one compiled call)."""
        if self.until is None:
            raise ValueError("this trainer has no held-out check: build it with until=HeldOutCheck.of(config), for a "
                             "config with train.until_kl")
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        every, parts, checks, done = self.until.every, [], [], 0
        while done < count:
            metrics = self.run(min(every - self.step % every, count - done))
            parts.append(metrics)
            done += len(metrics.loss)
            finite = np.isfinite(metrics.loss) & np.isfinite(metrics.grad_norm)
            if not finite.all():
                break
            if self.step % every == 0:
                checks.append((self.step, self._check()))
                if checks[-1][1] < self.until.target:
                    break
        return _concatenate(parts), checks

    def _check(self) -> float:
        """The mean held-out KL of the model now (``objective.held_out_kl`` in the run's dtype)."""
        if self._held_out is None:  # at the first check: a torchrun trainer settles its device after __init__
            _, arrays = held_out_arrays(self.until, next(self.model.parameters()).dtype)
            self._held_out = {"observations": arrays["observations"].to(self.device),
                              "exact": {n: v.to(self.device) for n, v in arrays["exact"].items()}}
        return float(self.objective.held_out_kl(self.model, self._held_out))

    def run_on(self, batches) -> StepMetrics:
        """One update per given batch (e.g. episodes); stops before applying one whose loss or gradient is
        non-finite."""
        return self._advance(self._run_on(self.opt_state, batches, self.step, self.member))

    def _advance(self, outputs: StepOutputs) -> StepMetrics:
        finite = np.isfinite(outputs.loss) & np.isfinite(outputs.grad_norm)
        self.step += len(finite) if finite.all() else len(finite) - 1
        return StepMetrics(outputs.loss, outputs.grad_norm, outputs.learning_rate, outputs.aux)

    def weights(self) -> dict[str, np.ndarray]:
        return model_to_canonical(self.model)

    def predictive(self, observations: np.ndarray) -> dict[str, np.ndarray]:
        """The objective's predictive on numpy ``observations`` (objectives that define ``predictive``)."""
        return self.objective.predictive(self.model, observations)

    def checkpoint(self) -> Checkpoint:
        exp_avg, exp_avg_sq = self._moments()
        return Checkpoint(self.step, self.weights(), exp_avg, exp_avg_sq, FRAMEWORK)

    def _moments(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        as_numpy = lambda d: {n: t.detach().cpu().numpy().copy() for n, t in d.items()}  # noqa: E731
        return as_numpy(self.opt_state.exp_avg), as_numpy(self.opt_state.exp_avg_sq)

    def _restore(self, checkpoint: Checkpoint) -> None:
        load_canonical(self.model, checkpoint.params)
        self.step = int(checkpoint.step)
        if checkpoint.step == 0:
            return
        params = dict(self.model.named_parameters())

        def moments(saved):
            return {n: torch.as_tensor(np.asarray(saved[n])).to(p.dtype).to(p.device).clone().contiguous()
                    for n, p in params.items()}

        count = torch.tensor(float(checkpoint.step), dtype=torch.float64, device=self.device)
        self.opt_state = AdamState(count, moments(checkpoint.exp_avg), moments(checkpoint.exp_avg_sq))


def held_out_arrays(until: HeldOutCheck, dtype: torch.dtype) -> tuple[float, dict]:
    """``(target, held_out)`` of ``until`` in ``dtype``: the target and ``{"observations": [T, N, 1], "exact": {name:
    [T, N]}}`` (every leaf's task axis is axis 1) as CPU tensors."""
    held_out = {"observations": torch.as_tensor(until.observations, dtype=dtype),
                "exact": {name: torch.as_tensor(np.asarray(value), dtype=dtype) for name, value in until.exact.items()}}
    return float(until.target), held_out


def _concatenate(parts: list[StepMetrics]) -> StepMetrics:
    """One :class:`StepMetrics` of consecutive calls' (empty for none)."""
    if not parts:
        empty = np.zeros(0)
        return StepMetrics(empty, empty, empty, {})
    return StepMetrics(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("loss", "grad_norm", "learning_rate")),
                       {name: np.concatenate([p.aux[name] for p in parts]) for name in parts[0].aux})


def default_member(train: TrainConfig, seed: int, learning_rate: float | None = None, **extra) -> dict:
    """``{"seed": int, "learning_rate": float, **extra}``: a member dict (``learning_rate`` defaults to
    ``train.learning_rate``)."""
    return {"seed": int(seed), "learning_rate": train.learning_rate if learning_rate is None else float(learning_rate),
            **extra}


def clip_and_update_in_place(params: dict[str, torch.Tensor], grads: dict, state: AdamState, lr, train: TrainConfig) -> float:
    """Clip ``grads`` (unless ``train.clip_norm`` is None) and apply one Adam or SGD update, writing the new
    parameters and state into ``params`` and ``state`` (the ``nn.Module`` way); returns the pre-clip norm.

    The maths is ``torch_impl.optim``'s (``clip_by_global_norm``, ``adam_step``); SGD is p + (-lr) g
    (``torch.optim.SGD``'s ``add_(g, alpha=-lr)``). A non-finite norm applies no update.
    """
    clipped, norm = clip_by_global_norm(grads, math.inf if train.clip_norm is None else train.clip_norm)
    grads = grads if train.clip_norm is None else clipped
    value = float(norm)
    if not math.isfinite(value):
        return value
    if train.optimizer == "sgd":
        with torch.no_grad():
            for name, param in params.items():
                param.add_(grads[name], alpha=-float(lr))
            state.count.add_(1)
        return value
    new_params, new_state = adam_step(params, grads, state, lr, train)
    write_adam_state(params, state, new_params, new_state)
    return value


def write_adam_state(params: dict[str, torch.Tensor], state: AdamState, new_params: dict, new_state: AdamState) -> None:
    """Copy ``new_params`` and ``new_state`` into the tensors of ``params`` and ``state`` (same storage)."""
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(new_params[name])
            state.exp_avg[name].copy_(new_state.exp_avg[name])
            state.exp_avg_sq[name].copy_(new_state.exp_avg_sq[name])
        state.count.copy_(new_state.count)


def stack_outputs(outputs: list[StepOutputs]) -> StepOutputs:
    """Per-step outputs -> one :class:`StepOutputs` of float64 ``[K]`` arrays (aux included)."""
    names = outputs[0].aux if outputs else {}
    column = lambda values: np.asarray(values, dtype=np.float64)  # noqa: E731
    return StepOutputs(column([o.loss for o in outputs]), column([o.grad_norm for o in outputs]),
                       column([o.learning_rate for o in outputs]),
                       {name: column([o.aux[name] for o in outputs]) for name in names})


def stack_members(members: list[Mapping]) -> dict:
    """Member dicts -> one dict of ``[S]`` tensors (the leading axis that the engine's ``vmap`` maps over)."""
    return {name: torch.as_tensor([m[name] for m in members]) for name in members[0]}


def _value_and_grad(objective: Objective, model: nn.Module, params: dict[str, torch.Tensor]) -> Callable:
    """``loss_and_grad(batch, step, member) -> (loss, aux, grads)`` by ``backward`` into ``params[n].grad``."""

    def loss_and_grad(batch, step, member):
        for param in params.values():
            param.grad = None
        loss, aux = objective.loss(model, batch, step, member)
        if math.isfinite(float(loss.detach())):
            loss.backward()
        return loss.detach(), {name: v.detach() for name, v in aux.items()}, {n: p.grad for n, p in params.items()}

    return loss_and_grad


__all__ = ["FRAMEWORK", "Objective", "StepOutputs", "Trainer", "clip_and_update_in_place", "default_member",
           "held_out_arrays", "make_member_chunk", "make_run_steps", "make_train_on_batches", "make_train_step", "stack_members",
           "stack_outputs", "write_adam_state"]
