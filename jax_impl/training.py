"""The training step of the meta-learner and the loops built on it: pure steps under ``jax.jit``, many steps per call via ``lax.scan``.

The model is ``nnx.split`` once into a static ``graphdef`` and a ``params`` pytree; every builder here
takes the ``graphdef`` as its ``model`` and returns a step or a loop over steps that is pure in
``(params, opt_state, ...)`` and merges the model back only inside the traced code, so NNX's
object-graph bookkeeping never runs in the hot loop (the twin, ``torch_impl.training``, returns the
same callables as closures over an ``nn.Module`` updated in place).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from cogmeta.config import RunConfig
from jax_impl.model import sequence_nll
from jax_impl.numerics import resolve_dtype
from jax_impl.optim import adam_step, clip_by_global_norm, learning_rate
from jax_impl.samplers import model_inputs, sample_batch, step_key


class StepOutputs(NamedTuple):
    """Per-step values: scalars for one step, ``[K]`` arrays for a loop of K steps (arrays: stacked by ``lax.scan``)."""

    loss: jax.Array
    grad_norm: jax.Array
    learning_rate: jax.Array


def native_batch(config: RunConfig, step, dtype) -> jax.Array:
    """Observations ``[T, B, 1]`` of training step ``step``, sampled with JAX's RNG (traceable in ``step``)."""
    key = step_key(config.train.seed, step)
    return sample_batch(config.task, key, config.train.batch_size, dtype).observations


def make_loss(model: nnx.GraphDef) -> Callable:
    """``loss(params, observations [T, B, 1]) -> mean NLL`` of the model that ``model`` (its ``graphdef``) describes."""

    def loss(params, observations):
        merged = nnx.merge(model, params)
        return sequence_nll(merged, model_inputs(observations), observations)

    return loss


def make_train_step(model: nnx.GraphDef, config: RunConfig, loss_and_grad: Callable | None = None) -> Callable:
    """``step(params, opt_state, observations, step, peak_lr=None) -> (params, opt_state, StepOutputs)``.

    Clip, then Adam at lr(step) (``jax_impl.optim``; ``opt_state`` is its ``AdamState``), returned as new
    pytrees. A non-finite loss or gradient norm leaves params and optimizer state unchanged (the torch
    trainer stops before such an update too). ``loss_and_grad(params, observations) -> (loss, grads)``
    defaults to ``jax.value_and_grad`` of :func:`make_loss`; ``jax_impl.distributed`` passes a
    data-parallel one (per-device gradients averaged over a mesh). ``peak_lr`` replaces
    ``config.train.learning_rate``.
    """
    train = config.train
    loss_and_grad = jax.value_and_grad(make_loss(model)) if loss_and_grad is None else loss_and_grad

    def step_fn(params, opt_state, observations, step, peak_lr=None):
        loss, grads = loss_and_grad(params, observations)
        grads, norm = clip_by_global_norm(grads, train.clip_norm)
        lr = learning_rate(step, train, peak=peak_lr)
        finite = jnp.isfinite(loss) & jnp.isfinite(norm)
        params, opt_state = adam_step(params, grads, opt_state, lr, train, apply=finite)
        return params, opt_state, StepOutputs(loss, norm, lr)

    return step_fn


def make_train_on_batches(model: nnx.GraphDef, config: RunConfig, loss_and_grad: Callable | None = None) -> Callable:
    """Jitted ``run(params, opt_state, batches [K, T, B, 1], start) -> (params, opt_state, StepOutputs [K])``: one step per given batch."""
    step_fn = make_train_step(model, config, loss_and_grad=loss_and_grad)

    @jax.jit
    def run(params, opt_state, batches, start):
        def body(carry, inputs):
            index, observations = inputs
            params, opt_state, outputs = step_fn(*carry, observations, start + index)
            return (params, opt_state), outputs

        indices = jnp.arange(batches.shape[0])
        (params, opt_state), outputs = jax.lax.scan(body, (params, opt_state), (indices, batches))
        return params, opt_state, outputs

    return run


def make_run_steps(model: nnx.GraphDef, config: RunConfig, chunk: int, loss_and_grad: Callable | None = None) -> Callable:
    """Jitted ``run(params, opt_state, start, count) -> (params, opt_state, StepOutputs [chunk])``.

    One compiled call runs ``chunk`` scan iterations; iteration i trains on the batch of step
    ``start + i`` (:func:`native_batch`, from ``step_key(seed, start + i)``) if i < count and no earlier
    loss in the call was non-finite. Masking instead of a shorter scan keeps one compiled program for
    every call (outputs past the stop are computed but not applied; the caller slices them off).
    ``loss_and_grad``: see :func:`make_train_step`.
    """
    chunk_fn = make_member_chunk(model, config, chunk, loss_and_grad)
    seed = config.train.seed
    return jax.jit(lambda params, opt_state, start, count: chunk_fn(params, opt_state, start, count, seed, None))


def make_member_chunk(model: nnx.GraphDef, config: RunConfig, chunk: int, loss_and_grad: Callable | None = None) -> Callable:
    """Un-jitted ``run(params, opt_state, start, count, seed, peak_lr) -> (params, opt_state, StepOutputs [chunk])``.

    :func:`make_run_steps` with the seed of the task stream and the peak learning rate as (traceable)
    arguments (one member of a sweep: ``jax_impl.engine`` vmaps or ``lax.map``s it over the members);
    ``peak_lr=None`` uses ``config.train.learning_rate``.
    """
    step_fn = make_train_step(model, config, loss_and_grad=loss_and_grad)
    dtype = resolve_dtype(config.train.dtype)
    task, batch_size = config.task, config.train.batch_size

    def run(params, opt_state, start, count, seed, peak_lr):
        def body(carry, index):
            params, opt_state, alive = carry
            step = start + index
            observations = sample_batch(task, step_key(seed, step), batch_size, dtype).observations
            new_params, new_opt_state, outputs = step_fn(params, opt_state, observations, step, peak_lr)
            active = alive & (index < count)
            params = _select(active, new_params, params)
            opt_state = _select(active, new_opt_state, opt_state)
            alive = alive & ((index >= count) | (jnp.isfinite(outputs.loss) & jnp.isfinite(outputs.grad_norm)))
            return (params, opt_state, alive), outputs

        carry = (params, opt_state, jnp.asarray(True))
        (params, opt_state, _), outputs = jax.lax.scan(body, carry, jnp.arange(chunk))
        return params, opt_state, outputs

    return run


def _select(condition: jax.Array, new, old):
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), new, old)
