"""The meta-learner: recurrent core + linear head, over time-major ``[T, B, 2]`` inputs.

The output at step t depends on x_1..x_t only (the inputs are the start token and the shifted
observations), so one forward pass yields the predictive for every prefix length t = 0..T-1 and one
sequence trains all of them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from cogmeta.config import INPUT_SIZE, RunConfig
from jax_impl.heads import nll
from jax_impl.linear import Linear
from jax_impl.recurrent import CORES


class MetaLearner(nnx.Module):
    """``core`` (GRU/LSTM) then ``head`` (Linear H -> O).

    Args:
        config: the run config (model section and the task's predictive family are used).
        dtype: parameter dtype.
        rngs: initialisation randomness.
    """

    def __init__(self, config: RunConfig, dtype=jnp.float32, *, rngs: nnx.Rngs):
        self.family = config.task.family
        model = config.model
        self.core = CORES[model.cell](INPUT_SIZE, model.hidden_size, model.num_layers, rngs=rngs, dtype=dtype)
        self.head = Linear(model.hidden_size, config.output_size, rngs=rngs, dtype=dtype)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """``[T, B, 2]`` -> raw predictive parameters ``[T, B, O]``."""
        check_inputs(inputs, self.head.weight[...].dtype)
        hidden, _ = self.core(inputs)
        return self.head(hidden)


def sequence_nll(model: MetaLearner, inputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean NLL over all T steps and B tasks (the training loss)."""
    return nll(model.family, model(inputs), targets).mean()


def check_inputs(inputs: jax.Array, dtype) -> None:
    """Raise a ValueError on a wrong shape or dtype instead of an opaque XLA error (works under jit)."""
    if not hasattr(inputs, "shape") or not hasattr(inputs, "dtype"):
        raise TypeError(f"inputs must be an array of shape [T, B, {INPUT_SIZE}], got {type(inputs).__name__}")
    if inputs.ndim != 3 or inputs.shape[-1] != INPUT_SIZE:
        raise ValueError(f"inputs must have shape [T, B, {INPUT_SIZE}] (time-major), got {tuple(inputs.shape)}")
    if jnp.dtype(inputs.dtype) != jnp.dtype(dtype):
        raise ValueError(f"inputs have dtype {inputs.dtype} but the model's parameters are {jnp.dtype(dtype)}; cast the inputs")
