"""The JAX backend behind ``cogmeta train/evaluate --backend jax`` (see ``cogmeta.backends``)."""

from __future__ import annotations

import functools
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint, StepMetrics
from cogmeta.weights import validate_weights
from jax_impl.heads import predictive_params
from jax_impl.model import MetaLearner
from jax_impl.numerics import configure, resolve_dtype
from jax_impl.optim import init_adam
from jax_impl.samplers import model_inputs
from jax_impl.training import make_run_steps
from jax_impl.weights import (
    canonical_to_state,
    load_canonical,
    model_to_canonical,
    state_to_canonical,
)

FRAMEWORK = "jax"


def build_model(config: RunConfig, seed: int | None = None) -> MetaLearner:
    """A freshly initialised model (torch-matched init distributions, JAX random numbers)."""
    configure(dtype=config.train.dtype)
    rngs = nnx.Rngs(config.train.seed if seed is None else seed)
    return MetaLearner(config, resolve_dtype(config.train.dtype), rngs=rngs)


def init_weights(config: RunConfig, seed: int | None = None) -> dict[str, np.ndarray]:
    """Canonical initial weights of a fresh model."""
    return model_to_canonical(build_model(config, seed))


class Trainer:
    """Functional JAX training: ``steps_per_call`` optimizer steps per compiled ``lax.scan`` call; the
    optimizer state :attr:`opt_state` is ``jax_impl.optim``'s ``AdamState``."""

    def __init__(self, config: RunConfig, checkpoint: Checkpoint | None = None):
        self.config = config
        model = build_model(config)
        if checkpoint is not None:
            load_canonical(model, checkpoint.params)
        self.graphdef, self.params = nnx.split(model)
        self.opt_state = init_adam(self.params)
        self.step = 0
        self.chunk_size = config.jax.steps_per_call
        if checkpoint is not None:
            self._restore(checkpoint)
        self._run = make_run_steps(self.graphdef, config, self.chunk_size)
        self._forward = jax.jit(lambda params, inputs: nnx.merge(self.graphdef, params)(inputs))

    def run(self, count: int) -> StepMetrics:
        """Up to ``count`` updates in one compiled call; stops before applying one whose loss or gradient is non-finite."""
        if not 0 <= count <= self.chunk_size:
            raise ValueError(f"count must lie in [0, {self.chunk_size}] (jax.steps_per_call steps per call), got {count}")
        params, opt_state, outputs = self._run(self.params, self.opt_state, jnp.asarray(self.step), jnp.asarray(count))
        loss, norm = np.asarray(outputs.loss)[:count], np.asarray(outputs.grad_norm)[:count]
        finite = np.isfinite(loss) & np.isfinite(norm)
        attempted = count if finite.all() else int(np.argmin(finite)) + 1
        self.params, self.opt_state = params, opt_state
        self.step += attempted if finite.all() else attempted - 1
        return StepMetrics(loss[:attempted], norm[:attempted], np.asarray(outputs.learning_rate)[:attempted])

    def weights(self) -> dict[str, np.ndarray]:
        return state_to_canonical(self.params)

    def predictive(self, observations: np.ndarray) -> dict[str, np.ndarray]:
        """Predictive parameters ``[T, B]`` of the current model on numpy observations ``[T, B, 1]``."""
        inputs = model_inputs(jnp.asarray(np.asarray(observations), dtype=resolve_dtype(self.config.train.dtype)))
        return predictive_params(self.config.task.family, self._forward(self.params, inputs))

    def checkpoint(self) -> Checkpoint:
        adam = self.opt_state
        return Checkpoint(self.step, self.weights(), state_to_canonical(adam.exp_avg), state_to_canonical(adam.exp_avg_sq),
                          FRAMEWORK)

    def _restore(self, checkpoint: Checkpoint) -> None:
        adam = self.opt_state
        self.opt_state = adam._replace(
            count=jnp.asarray(checkpoint.step, adam.count.dtype),
            exp_avg=canonical_to_state(adam.exp_avg, checkpoint.exp_avg),
            exp_avg_sq=canonical_to_state(adam.exp_avg_sq, checkpoint.exp_avg_sq),
        )
        self.step = checkpoint.step


def predict(config: RunConfig, weights: Mapping[str, np.ndarray], observations: np.ndarray) -> dict[str, np.ndarray]:
    """Predictive parameters ``[T, B]`` (float64 numpy) of the model with ``weights`` on ``observations``."""
    validate_weights(weights, config)
    model = build_model(config)
    load_canonical(model, weights)
    _, params = nnx.split(model)
    inputs = model_inputs(jnp.asarray(np.asarray(observations), dtype=resolve_dtype(config.train.dtype)))
    return predictive_params(config.task.family, _compiled_forward(config)(params, inputs))


@functools.lru_cache(maxsize=16)
def _compiled_forward(config: RunConfig):
    """One jitted forward pass per architecture, reused by every ``predict`` call (e.g. evaluation chunks)."""
    graphdef, _ = nnx.split(build_model(config))
    return jax.jit(lambda params, inputs: nnx.merge(graphdef, params)(inputs))
