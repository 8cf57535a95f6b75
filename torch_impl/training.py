"""One training step and a loop over many, on natively sampled or given batches."""

from __future__ import annotations

import math

import numpy as np
import torch

from cogmeta.config import RunConfig
from cogmeta.schedules import learning_rate
from torch_impl.model import MetaLearner, sequence_nll
from torch_impl.optim import clip_and_step
from torch_impl.samplers import model_inputs, sample_batch, step_generator


def train_step(
    model: MetaLearner, optimizer: torch.optim.Adam, observations: torch.Tensor, step: int, config: RunConfig
) -> tuple[float, float, float]:
    """One update on a batch of observations ``[T, B, 1]``.

    Returns:
        (loss, pre-clip gradient norm, learning rate). A non-finite loss applies no update and returns
        a NaN norm; a non-finite gradient norm applies no update either.
    """
    train = config.train
    lr = learning_rate(step, train.learning_rate, train.steps, train.schedule, train.final_lr_fraction)
    optimizer.zero_grad(set_to_none=True)
    loss = sequence_nll(model, model_inputs(observations), observations)
    value = float(loss.detach())
    if not math.isfinite(value):
        return value, math.nan, lr
    loss.backward()
    norm = clip_and_step(model, optimizer, lr, train.clip_norm)
    return value, norm, lr


def train_on_batches(
    model: MetaLearner, optimizer: torch.optim.Adam, batches: np.ndarray, start: int, config: RunConfig
) -> np.ndarray:
    """Train on given observations ``[K, T, B, 1]`` (one batch per step); return the K losses."""
    dtype = model.head.weight.dtype
    losses = []
    for k, observations in enumerate(batches):
        loss, _, _ = train_step(model, optimizer, torch.as_tensor(observations, dtype=dtype), start + k, config)
        losses.append(loss)
    return np.asarray(losses)


def native_batch(config: RunConfig, step: int, dtype: torch.dtype) -> torch.Tensor:
    """Observations of training step ``step``, sampled with torch's RNG."""
    generator = step_generator(config.train.seed, step)
    return sample_batch(config.task, generator, config.train.batch_size, dtype).observations
