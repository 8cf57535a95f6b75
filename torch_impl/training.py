"""One training step and a loop over many, on natively sampled or given batches."""

from __future__ import annotations

import math

import numpy as np
import torch

from cogmeta.config import RunConfig, TrainConfig
from torch_impl.model import MetaLearner, sequence_nll
from torch_impl.optim import AdamState, adam_step, clip_by_global_norm, learning_rate
from torch_impl.samplers import model_inputs, sample_batch, step_generator


def train_step(
    model: MetaLearner, state: AdamState, observations: torch.Tensor, step: int, config: RunConfig
) -> tuple[float, float, float]:
    """One update on a batch of observations ``[T, B, 1]``: clip, Adam (``torch_impl.optim``) at lr(step).

    ``state`` (from ``torch_impl.optim.init_adam``) and the model's parameters are updated in place
    (:func:`clip_and_adam_in_place`).

    Returns:
        (loss, pre-clip gradient norm, learning rate). A non-finite loss applies no update and returns
        a NaN norm; a non-finite gradient norm applies no update either.
    """
    train = config.train
    lr = learning_rate(step, train)
    for param in model.parameters():
        param.grad = None
    loss = sequence_nll(model, model_inputs(observations), observations)
    value = float(loss.detach())
    if not math.isfinite(value):
        return value, math.nan, float(lr)
    loss.backward()
    norm = clip_and_adam_in_place(dict(model.named_parameters()), state, lr, train)
    return value, norm, float(lr)


def clip_and_adam_in_place(params: dict[str, torch.Tensor], state: AdamState, lr, train: TrainConfig) -> float:
    """Clip the gradients ``params[n].grad`` and apply one Adam update, writing the new parameters and
    state into ``params`` and ``state`` (the ``nn.Module`` way); returns the pre-clip norm.

    The maths is ``torch_impl.optim``'s (``clip_by_global_norm``, ``adam_step``). A non-finite norm (a
    NaN or infinite gradient) applies no update.
    """
    grads, norm = clip_by_global_norm({name: param.grad for name, param in params.items()}, train.clip_norm)
    value = float(norm)
    if not math.isfinite(value):
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


def train_on_batches(
    model: MetaLearner, state: AdamState, batches: np.ndarray, start: int, config: RunConfig
) -> np.ndarray:
    """Train on given observations ``[K, T, B, 1]`` (one batch per step); return the K losses."""
    dtype = model.head.weight.dtype
    losses = []
    for k, observations in enumerate(batches):
        loss, _, _ = train_step(model, state, torch.as_tensor(observations, dtype=dtype), start + k, config)
        losses.append(loss)
    return np.asarray(losses)


def native_batch(config: RunConfig, step: int, dtype: torch.dtype) -> torch.Tensor:
    """Observations of training step ``step``, sampled with torch's RNG."""
    generator = step_generator(config.train.seed, step)
    return sample_batch(config.task, generator, config.train.batch_size, dtype).observations
