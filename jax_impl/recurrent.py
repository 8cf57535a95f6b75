"""Recurrent cores in Flax NNX that hold PyTorch's exact tensors, time-major.

Flax's own cells cannot be used: ``nnx.GRUCell`` has no ``b_hn`` and every Flax cell merges the
input and hidden biases. A merged bias gives the same forward pass but not the same training: torch
gives ``b_ih`` and ``b_hh`` the same gradient, so their sum moves twice as far per step
(google/flax#5594). These modules store ``weight_ih_l{k}`` ``(G*H, I)``, ``weight_hh_l{k}`` ``(G*H, H)``,
``bias_ih_l{k}``, ``bias_hh_l{k}`` ``(G*H,)`` with torch's gate order, and torch's init
U(-1/sqrt(H), 1/sqrt(H)) for every tensor.

GRU:  r = s(W_ir x + b_ir + W_hr h + b_hr),  z = s(W_iz x + b_iz + W_hz h + b_hz)
      n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h
LSTM: i, f, g, o = split(W_ih x + b_ih + W_hh h + b_hh)
      c' = s(f) * c + s(i) * tanh(g),  h' = s(o) * tanh(c')

The input projection of a whole layer is one matmul outside the time loop; only the recurrent
projection runs inside ``lax.scan``, in :mod:`jax_impl.recurrent_layers`, whose hand-written reverse pass
takes the weight gradients out of the reverse loop as well.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jax_impl.linear import uniform_init
from jax_impl.numerics import HIGHEST, matmul
from jax_impl.recurrent_layers import (
    gru_cell,
    gru_layer,
    gru_replay,
    lstm_cell,
    lstm_layer,
    lstm_replay,
    split_gates,
)


class _Recurrent(nnx.Module):
    """Shared parameter layout of :class:`GRU` and :class:`LSTM` (``gates`` = 3 or 4)."""

    gates: int = 0

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.hidden_size, self.num_layers = hidden_size, num_layers
        bound = 1.0 / math.sqrt(hidden_size)
        rows = self.gates * hidden_size
        for layer in range(num_layers):
            inputs = input_size if layer == 0 else hidden_size
            for name, shape in (
                (f"weight_ih_l{layer}", (rows, inputs)),
                (f"weight_hh_l{layer}", (rows, hidden_size)),
                (f"bias_ih_l{layer}", (rows,)),
                (f"bias_hh_l{layer}", (rows,)),
            ):
                value = uniform_init(rngs.params(), shape, dtype, bound)
                setattr(self, name, nnx.Param(value))

    def layer(self, index: int) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """(weight_ih, weight_hh, bias_ih, bias_hh) of layer ``index``."""
        return tuple(getattr(self, f"{kind}_l{index}")[...] for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


class GRU(_Recurrent):
    """Multi-layer GRU over ``[T, B, I]`` inputs; returns ``([T, B, H] outputs, [L, B, H] final h)``."""

    gates = 3

    def __call__(self, inputs: jax.Array, state: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        hidden = self.hidden_size
        batch = inputs.shape[1]
        if state is None:
            state = jnp.zeros((self.num_layers, batch, hidden), inputs.dtype)
        x, finals = inputs, []
        for index in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self.layer(index)
            projected = matmul(x, w_ih) + b_ih  # [T, B, 3H], hoisted out of the scan
            x = gru_layer(projected, state[index], w_hh, b_hh)
            finals.append(x[-1] if x.shape[0] else state[index])
        return x, jnp.stack(finals)

    def stepper(self) -> Callable:
        """``step(inputs [B, I], state [L, B, H]) -> (top layer's h [B, H], new state [L, B, H], record)``: one step
        of every layer; stacked over steps (``lax.scan``), ``record`` is what :meth:`replay` needs.

        The weights are transposed here, once: call ``stepper()`` outside the loop and ``step`` inside it, so that
        the loop multiplies by ``[I, 3H]`` and ``[H, 3H]`` arrays as laid out (XLA:CPU folds a transpose made inside
        the loop into the product, which then ran ~2x slower, 12.9 against ~6 µs at B 32, H 48).
        """
        layers = [(w_ih.T, w_hh.T, b_ih, b_hh) for w_ih, w_hh, b_ih, b_hh in map(self.layer, range(self.num_layers))]

        def step(inputs: jax.Array, state: jax.Array) -> tuple[jax.Array, jax.Array, tuple]:
            x, finals, record = inputs, [], []
            for index, (w_ih_t, w_hh_t, b_ih, b_hh) in enumerate(layers):
                x, gates = gru_cell(split_gates(jnp.matmul(x, w_ih_t, precision=HIGHEST) + b_ih, 3), state[index],
                                    w_hh_t, b_hh)
                finals.append(x), record.append((x, gates))
            return x, jnp.stack(finals), tuple(record)

        return step

    def replay(self, inputs: jax.Array, state: jax.Array, record: tuple) -> jax.Array:
        """The top layer's outputs ``[T, B, H]`` over ``inputs [T, B, I]`` from ``state [L, B, H]``, whose steps
        already ran through :meth:`stepper` (its ``record``, stacked over T): the recorded outputs, differentiable
        through the layers' reverse pass (``jax_impl.recurrent_layers.gru_replay``)."""
        x = inputs
        for index in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self.layer(index)
            x = gru_replay(matmul(x, w_ih) + b_ih, state[index], w_hh, b_hh, record[index])
        return x


class LSTM(_Recurrent):
    """Multi-layer LSTM over ``[T, B, I]`` inputs; returns ``([T, B, H] outputs, (h, c))``, each ``[L, B, H]``.

    The state is ``(h, c)`` in torch's order (Flax's cells carry ``(c, h)``).
    """

    gates = 4

    def __call__(
        self, inputs: jax.Array, state: tuple[jax.Array, jax.Array] | None = None
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        hidden = self.hidden_size
        batch = inputs.shape[1]
        if state is None:
            zeros = jnp.zeros((self.num_layers, batch, hidden), inputs.dtype)
            state = (zeros, zeros)
        x, final_h, final_c = inputs, [], []
        for index in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self.layer(index)
            projected = matmul(x, w_ih) + b_ih  # [T, B, 4H], hoisted out of the scan
            x, c = lstm_layer(projected, state[0][index], state[1][index], w_hh, b_hh)
            final_h.append(x[-1] if x.shape[0] else state[0][index]), final_c.append(c)
        return x, (jnp.stack(final_h), jnp.stack(final_c))

    def stepper(self) -> Callable:
        """``step(inputs [B, I], (h, c) each [L, B, H]) -> (top layer's h [B, H], new (h, c), record)``: one step of
        every layer; stacked over steps, ``record`` is what :meth:`replay` needs. The weights are transposed once,
        here (:meth:`GRU.stepper` says why)."""
        layers = [(w_ih.T, w_hh.T, b_ih, b_hh) for w_ih, w_hh, b_ih, b_hh in map(self.layer, range(self.num_layers))]

        def step(inputs: jax.Array, state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, tuple, tuple]:
            x, hs, cs, record = inputs, [], [], []
            for index, (w_ih_t, w_hh_t, b_ih, b_hh) in enumerate(layers):
                c_previous = state[1][index]
                x, c, gates = lstm_cell(split_gates(jnp.matmul(x, w_ih_t, precision=HIGHEST) + b_ih, 4),
                                        state[0][index], c_previous, w_hh_t, b_hh)
                hs.append(x), cs.append(c), record.append((x, (c_previous, *gates, c)))
            return x, (jnp.stack(hs), jnp.stack(cs)), tuple(record)

        return step

    def replay(self, inputs: jax.Array, state: tuple[jax.Array, jax.Array], record: tuple) -> jax.Array:
        """The top layer's outputs ``[T, B, H]`` over ``inputs [T, B, I]`` from ``(h, c)``, whose steps already ran
        through :meth:`stepper` (its ``record``, stacked over T): the recorded outputs, differentiable through the
        layers' reverse pass (``jax_impl.recurrent_layers.lstm_replay``)."""
        x = inputs
        for index in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self.layer(index)
            x = lstm_replay(matmul(x, w_ih) + b_ih, state[0][index], state[1][index], w_hh, b_hh, record[index])
        return x


CORES = {"gru": GRU, "lstm": LSTM}
