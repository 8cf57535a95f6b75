"""The training step of the meta-learner and the loops built on it: eager steps, one Python step per update.

The model is an ``nn.Module`` updated in place; every builder here closes over it and returns a step
or a loop over steps that updates its parameters and the Adam state (``torch_impl.optim.AdamState``)
in place, reading the loss and the gradient norm back to the host after each step (the twin,
``jax_impl.training``, returns the same callables as pure functions of ``(params, opt_state, ...)``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple

import numpy as np
import torch

from cogmeta.config import RunConfig, TrainConfig
from torch_impl.model import MetaLearner, sequence_nll
from torch_impl.numerics import resolve_dtype
from torch_impl.optim import AdamState, adam_step, clip_by_global_norm, learning_rate
from torch_impl.samplers import model_inputs, sample_batch, step_generator


class StepOutputs(NamedTuple):
    """Per-step values: scalars for one step, ``[K]`` arrays for a loop of K steps (floats: read back to the host)."""

    loss: float | np.ndarray
    grad_norm: float | np.ndarray
    learning_rate: float | np.ndarray


def native_batch(config: RunConfig, step: int, dtype: torch.dtype) -> torch.Tensor:
    """Observations ``[T, B, 1]`` of training step ``step``, sampled with torch's RNG."""
    generator = step_generator(config.train.seed, step)
    return sample_batch(config.task, generator, config.train.batch_size, dtype).observations


def make_loss(model: MetaLearner) -> Callable:
    """``loss(observations [T, B, 1]) -> mean NLL`` of ``model`` (its own parameters)."""

    def loss(observations):
        return sequence_nll(model, model_inputs(observations), observations)

    return loss


def make_train_step(model: MetaLearner, config: RunConfig, loss_and_grad: Callable | None = None) -> Callable:
    """``step(opt_state, observations, step, peak_lr=None) -> StepOutputs`` (floats).

    Clip, then Adam at lr(step) (``torch_impl.optim``; ``opt_state`` is its ``AdamState``), written into
    the model's parameters and ``opt_state`` in place (:func:`clip_and_adam_in_place`). A non-finite
    loss applies no update and returns a NaN norm; a non-finite gradient norm applies no update either.
    ``loss_and_grad(observations) -> (loss, grads)`` defaults to :func:`make_loss` and ``backward``
    (skipped for a non-finite loss). ``peak_lr`` replaces ``config.train.learning_rate``.
    """
    train = config.train
    params = dict(model.named_parameters())
    loss_and_grad = _value_and_grad(model, params) if loss_and_grad is None else loss_and_grad

    def step_fn(opt_state, observations, step, peak_lr=None):
        lr = learning_rate(step, train, peak=peak_lr)
        loss, grads = loss_and_grad(observations)
        value = float(loss)
        if not math.isfinite(value):
            return StepOutputs(value, math.nan, float(lr))
        norm = _clip_and_adam(params, grads, opt_state, lr, train)
        return StepOutputs(value, norm, float(lr))

    return step_fn


def make_train_on_batches(model: MetaLearner, config: RunConfig, loss_and_grad: Callable | None = None) -> Callable:
    """``run(opt_state, batches [K, T, B, 1], start) -> StepOutputs [K]``: one step per given batch."""
    step_fn = make_train_step(model, config, loss_and_grad=loss_and_grad)
    dtype = resolve_dtype(config.train.dtype)

    def run(opt_state, batches, start):
        outputs = [step_fn(opt_state, torch.as_tensor(observations, dtype=dtype), start + k)
                   for k, observations in enumerate(batches)]
        return _stack(outputs)

    return run


def make_run_steps(model: MetaLearner, config: RunConfig, chunk: int, loss_and_grad: Callable | None = None) -> Callable:
    """``run(opt_state, start, count) -> StepOutputs [attempted]``.

    Step i trains on the batch of step ``start + i`` (:func:`native_batch`) for i < ``count``, stopping
    after the first non-finite loss or gradient norm (that step applies no update). ``chunk`` is the
    most steps one call is meant to run (the JAX twin compiles a scan of that length); here it bounds
    nothing. ``loss_and_grad``: see :func:`make_train_step`.
    """
    member = make_member_chunk(model, config, chunk, loss_and_grad=loss_and_grad)
    seed = config.train.seed

    def run(opt_state, start, count):
        return member(opt_state, start, count, seed, None)

    return run


def make_member_chunk(model: MetaLearner, config: RunConfig, chunk: int, loss_and_grad: Callable | None = None) -> Callable:
    """``run(opt_state, start, count, seed, peak_lr) -> StepOutputs [attempted]``.

    :func:`make_run_steps` with the seed of the task stream and the peak learning rate as arguments
    (one member of a sweep, ``torch_impl.engine``); ``peak_lr=None`` uses ``config.train.learning_rate``.
    """
    del chunk
    step_fn = make_train_step(model, config, loss_and_grad=loss_and_grad)
    dtype = resolve_dtype(config.train.dtype)
    device = next(model.parameters()).device

    def run(opt_state, start, count, seed, peak_lr):
        stream = config if seed == config.train.seed else dataclasses.replace(
            config, train=dataclasses.replace(config.train, seed=seed))
        outputs = []
        for index in range(count):
            step = start + index
            observations = native_batch(stream, step, dtype).to(device)
            outputs.append(step_fn(opt_state, observations, step, peak_lr))
            if not (math.isfinite(outputs[-1].loss) and math.isfinite(outputs[-1].grad_norm)):
                break
        return _stack(outputs)

    return run


def clip_and_adam_in_place(params: dict[str, torch.Tensor], state: AdamState, lr, train: TrainConfig) -> float:
    """Clip the gradients ``params[n].grad`` and apply one Adam update, writing the new parameters and
    state into ``params`` and ``state`` (the ``nn.Module`` way); returns the pre-clip norm.

    The maths is ``torch_impl.optim``'s (``clip_by_global_norm``, ``adam_step``). A non-finite norm (a
    NaN or infinite gradient) applies no update.
    """
    return _clip_and_adam(params, {name: param.grad for name, param in params.items()}, state, lr, train)


def write_adam_state(params: dict[str, torch.Tensor], state: AdamState, new_params: dict, new_state: AdamState) -> None:
    """Copy ``new_params`` and ``new_state`` into the tensors of ``params`` and ``state`` (same storage)."""
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(new_params[name])
            state.exp_avg[name].copy_(new_state.exp_avg[name])
            state.exp_avg_sq[name].copy_(new_state.exp_avg_sq[name])
        state.count.copy_(new_state.count)


def _value_and_grad(model: MetaLearner, params: dict[str, torch.Tensor]) -> Callable:
    """``loss_and_grad(observations) -> (loss, grads)`` by ``backward`` into ``params[n].grad``."""
    loss_fn = make_loss(model)

    def loss_and_grad(observations):
        for param in params.values():
            param.grad = None
        loss = loss_fn(observations)
        if math.isfinite(float(loss.detach())):
            loss.backward()
        return loss.detach(), {name: param.grad for name, param in params.items()}

    return loss_and_grad


def _clip_and_adam(params: dict[str, torch.Tensor], grads: dict, state: AdamState, lr, train: TrainConfig) -> float:
    grads, norm = clip_by_global_norm(grads, train.clip_norm)
    value = float(norm)
    if not math.isfinite(value):
        return value
    new_params, new_state = adam_step(params, grads, state, lr, train)
    write_adam_state(params, state, new_params, new_state)
    return value


def _stack(outputs: list[StepOutputs]) -> StepOutputs:
    return StepOutputs(*(np.asarray([getattr(o, f) for o in outputs], dtype=np.float64) for f in StepOutputs._fields))
