"""One GRU or LSTM layer over a whole sequence, with a hand-written reverse pass.

Autodiff of ``lax.scan`` puts every gradient of the cell inside the reverse loop, including the weight
gradient ``dW_hh += dg_t^T h_{t-1}``: per step a second small ``[B, G*H] x [B, H]`` matmul and a
read-modify-write of the whole ``[G*H, H]`` accumulator. The reverse pass here keeps only what is
truly sequential in the loop, the pre-activation gradient ``dg_t`` and ``dh_{t-1} = dg_t W_hh``, and
forms the weight and bias gradients after it as single contractions over all T x B rows:

    dW_hh = sum_t dg_t^T h_{t-1}   ([G*H, T*B] x [T*B, H], one matmul)
    db_hh = sum_{t, b} dg_t

The same split is what cuDNN's and oneDNN's RNN kernels do (weight gradients outside the
recurrence). The local derivatives of the gates (``s' = s (1 - s)``, ``tanh' = 1 - tanh^2`` and their
products) of the GRU are also formed before its reverse loop, as elementwise operations over all T
steps at once: XLA:CPU runs elementwise work several times faster over one large array than step by step
inside a loop (docs/performance.md). The maths is exactly autodiff's (checked against ``jax.vjp`` of the
plain scan and by finite differences in ``tests/test_recurrent_layers.py``); only the order of float additions
changes (docs/framework-differences.md#recurrent-reverse-pass).

Shapes: ``projected [T, B, G*H]`` is the hoisted input projection ``x W_ih^T + b_ih``; ``w_hh [G*H, H]``
and ``b_hh [G*H]`` are torch's tensors; gates in torch's order (GRU r, z, n; LSTM i, f, g, o).
``jax.custom_vjp`` composes with ``jit``, ``vmap`` and ``lax.map``; forward-mode differentiation
(``jax.jvp``) of these layers is not supported.

GRU:  r = s(gi_r + gh_r),  z = s(gi_z + gh_z),  n = tanh(gi_n + r * gh_n),  h' = (1 - z) n + z h,
      with gh = h W_hh^T + b_hh.
LSTM: i, f, g, o = s, s, tanh, s of (gi + h W_hh^T + b_hh);  c' = f c + i g,  h' = o tanh(c').
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jax_impl.numerics import HIGHEST


def _weight_grad(dgates: jax.Array, previous: jax.Array) -> jax.Array:
    """sum_t dgates_t^T previous_t: ``[T, B, G*H] x [T, B, H] -> [G*H, H]`` as one matmul."""
    rows = dgates.shape[-1]
    return jnp.matmul(dgates.reshape(-1, rows).T, previous.reshape(-1, previous.shape[-1]), precision=HIGHEST)


def _previous(h0: jax.Array, outputs: jax.Array) -> jax.Array:
    """h_{t-1} for t = 0..T-1: ``[T, B, H]`` from ``h0 [B, H]`` and ``outputs [T, B, H]``."""
    return jnp.concatenate([h0[None], outputs], axis=0)[: outputs.shape[0]]  # T = 0 gives [0, B, H]


# ----------------------------------------------------------------------------------------------- GRU
def split_gates(projected: jax.Array, count: int) -> tuple[jax.Array, ...]:
    """``[T, B, count*H]`` -> ``count`` arrays ``[T, B, H]``, split before the loop.

    Inside ``lax.scan`` each step reads its slice of the scanned input with a dynamic slice; XLA:CPU fuses
    that into the gate arithmetic, and slicing the gates out of it along the minor axis made the fused
    loop ~3x slower per step than slicing them here once (docs/performance.md).
    """
    hidden = projected.shape[-1] // count
    return tuple(projected[..., k * hidden : (k + 1) * hidden] for k in range(count))


def gru_cell(gi: tuple[jax.Array, ...], h: jax.Array, w_hh_t: jax.Array, b_hh: jax.Array):
    """One GRU step: ``(h', (r, z, n, gh_n))``, the new state and the gates the reverse pass reads.

    From the step's gate-split input projection ``gi`` (3 x ``[B, H]``, :func:`split_gates`), ``h [B, H]``
    and the *transposed* recurrent weight ``w_hh_t [H, 3H]``.
    """
    hidden = h.shape[-1]
    gi_r, gi_z, gi_n = gi
    gh = jnp.matmul(h, w_hh_t, precision=HIGHEST) + b_hh
    r = jax.nn.sigmoid(gi_r + gh[..., :hidden])
    z = jax.nn.sigmoid(gi_z + gh[..., hidden : 2 * hidden])
    gh_n = gh[..., 2 * hidden :]
    n = jnp.tanh(gi_n + r * gh_n)
    return (1 - z) * n + z * h, (r, z, n, gh_n)


def _gru_forward(projected, h0, w_hh, b_hh):
    w_hh_t = w_hh.T  # transposed once, outside the loop (XLA:CPU would re-layout it every step)

    def step(h, gi):
        h, gates = gru_cell(gi, h, w_hh_t, b_hh)
        return h, (h, *gates)

    _, (outputs, r, z, n, gh_n) = lax.scan(step, h0, split_gates(projected, 3))
    return outputs, (r, z, n, gh_n)


@jax.custom_vjp
def gru_layer(projected: jax.Array, h0: jax.Array, w_hh: jax.Array, b_hh: jax.Array) -> jax.Array:
    """GRU outputs ``[T, B, H]`` (the final state is ``outputs[-1]``) from ``projected [T, B, 3H]``, ``h0 [B, H]``."""
    return _gru_forward(projected, h0, w_hh, b_hh)[0]


def _gru_fwd(projected, h0, w_hh, b_hh):
    outputs, gates = _gru_forward(projected, h0, w_hh, b_hh)
    return outputs, (outputs, gates, h0, w_hh)


def _gru_bwd(residuals, d_outputs):
    outputs, (r, z, n, gh_n), h0, w_hh = residuals
    previous = _previous(h0, outputs)
    # dL/da_n = dh (1 - z)(1 - n^2);  dL/da_z = dh (h - n) z (1 - z);  dL/da_r = dL/da_n gh_n r (1 - r)
    to_n, to_z, n_to_r = (1 - z) * (1 - n * n), (previous - n) * z * (1 - z), gh_n * r * (1 - r)

    hidden = h0.shape[-1]
    # dh_prev = dh z + dgh W_hh written as one product per gate block: XLA:CPU (jax 0.10.2) miscompiles the
    # single [B, 3H] x [3H, H] product of this loop body in float64 at B = 4, H = 5 (an O(1) error in every
    # weight gradient; the only failing shape of B, H <= 16), found by `cogmeta verify`; pinned by
    # tests/test_recurrent_layers.py::test_outputs_and_gradients_match_autodiff
    w_r, w_z, w_n = (w_hh[k * hidden : (k + 1) * hidden] for k in range(3))

    def step(dh, inputs):
        dy, to_n, to_z, n_to_r, r, z = inputs
        dh = dh + dy
        da_n = dh * to_n
        da_r = da_n * n_to_r
        da_z = dh * to_z
        dgh_n = da_n * r
        previous = (dh * z + jnp.matmul(da_r, w_r, precision=HIGHEST) + jnp.matmul(da_z, w_z, precision=HIGHEST)
                    + jnp.matmul(dgh_n, w_n, precision=HIGHEST))
        return previous, (jnp.concatenate([da_r, da_z, dgh_n], axis=-1), da_n)

    dh0, (dgh, da_n) = lax.scan(step, jnp.zeros_like(h0), (d_outputs, to_n, to_z, n_to_r, r, z), reverse=True)
    d_projected = jnp.concatenate([dgh[..., : 2 * hidden], da_n], axis=-1)  # d gi = d gh except the n block
    return d_projected, dh0, _weight_grad(dgh, previous), dgh.sum(axis=(0, 1))


gru_layer.defvjp(_gru_fwd, _gru_bwd)


@jax.custom_vjp
def gru_replay(projected: jax.Array, h0: jax.Array, w_hh: jax.Array, b_hh: jax.Array, record) -> jax.Array:
    """:func:`gru_layer` over a sequence whose forward already ran, one :func:`gru_cell` call per step.

    When each input depends on the previous output (RL²: the action drawn from the policy at t is the
    input at t + 1) the steps cannot run as one layer call; differentiating each step's cell inside the
    outer loop then forms the weight gradients trial by trial. Here the steps run without gradients,
    recording ``record = (outputs [T, B, H], (r, z, n, gh_n) [T, B, H] each)``; this function returns the
    recorded outputs and its reverse pass is :func:`gru_layer`'s on the recorded gates (the weight gradients
    as single contractions after the reverse loop). ``projected`` must be the step inputs' projection
    ``x W_ih^T + b_ih`` (``[T, B, 3H]``; only its cotangent is used). ``record`` gets no gradient.
    """
    return record[0]


def _gru_replay_fwd(projected, h0, w_hh, b_hh, record):
    outputs, gates = record
    return outputs, (outputs, gates, h0, w_hh)


def _gru_replay_bwd(residuals, d_outputs):
    outputs, gates = residuals[:2]
    return (*_gru_bwd(residuals, d_outputs), jax.tree.map(jnp.zeros_like, (outputs, gates)))


gru_replay.defvjp(_gru_replay_fwd, _gru_replay_bwd)


# ---------------------------------------------------------------------------------------------- LSTM
def lstm_cell(gi: tuple[jax.Array, ...], h: jax.Array, c: jax.Array, w_hh_t: jax.Array, b_hh: jax.Array):
    """One LSTM step: ``(h', c', (i, f, g, o))``.

    From the step's gate-split input projection ``gi`` (4 x ``[B, H]``, :func:`split_gates`), ``h``,
    ``c [B, H]`` and the *transposed* recurrent weight ``w_hh_t [H, 4H]``.

    c' = s(f) * c + s(i) * tanh(g), h' = s(o) * tanh(c'), with i, f, g, o = gi + h W_hh^T + b_hh.
    """
    hidden = h.shape[-1]
    gh = jnp.matmul(h, w_hh_t, precision=HIGHEST) + b_hh
    i, f, g, o = (gi[k] + gh[..., k * hidden : (k + 1) * hidden] for k in range(4))
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * c + i * g
    return o * jnp.tanh(c), c, (i, f, g, o)


def _lstm_forward(projected, h0, c0, w_hh, b_hh):
    w_hh_t = w_hh.T  # transposed once, outside the loop (XLA:CPU would re-layout it every step)

    def step(carry, gi):
        h, c_previous = carry
        h, c, (i, f, g, o) = lstm_cell(gi, h, c_previous, w_hh_t, b_hh)
        return (h, c), (h, c_previous, i, f, g, o, c)

    (_, c_final), (outputs, *saved) = lax.scan(step, (h0, c0), split_gates(projected, 4))
    return outputs, c_final, saved


@jax.custom_vjp
def lstm_layer(projected: jax.Array, h0: jax.Array, c0: jax.Array, w_hh: jax.Array,
               b_hh: jax.Array) -> tuple[jax.Array, jax.Array]:
    """LSTM ``(outputs [T, B, H], final c [B, H])`` from ``projected [T, B, 4H]``, ``h0``, ``c0 [B, H]``.

    The final h is ``outputs[-1]``.
    """
    outputs, c_final, _ = _lstm_forward(projected, h0, c0, w_hh, b_hh)
    return outputs, c_final


def _lstm_fwd(projected, h0, c0, w_hh, b_hh):
    outputs, c_final, saved = _lstm_forward(projected, h0, c0, w_hh, b_hh)
    return (outputs, c_final), (outputs, saved, h0, w_hh)


def _lstm_bwd(residuals, cotangents):
    outputs, saved, h0, w_hh = residuals
    d_outputs, dc_final = cotangents

    # Unlike the GRU, precomputing the gates' local derivatives outside the loop measured slower here
    # (more arrays streamed through the loop than it saves), so they are formed step by step.
    def step(carry, inputs):
        dh, dc = carry
        dy, c_previous, i, f, g, o, c = inputs
        dh = dh + dy
        tanh_c = jnp.tanh(c)
        dc = dc + dh * o * (1 - tanh_c * tanh_c)
        dgates = jnp.concatenate([dc * g * i * (1 - i), dc * c_previous * f * (1 - f), dc * i * (1 - g * g),
                                  dh * tanh_c * o * (1 - o)], axis=-1)
        return (jnp.matmul(dgates, w_hh, precision=HIGHEST), dc * f), dgates

    (dh0, dc0), dgates = lax.scan(step, (jnp.zeros_like(h0), dc_final), (d_outputs, *saved), reverse=True)
    return dgates, dh0, dc0, _weight_grad(dgates, _previous(h0, outputs)), dgates.sum(axis=(0, 1))


lstm_layer.defvjp(_lstm_fwd, _lstm_bwd)


@jax.custom_vjp
def lstm_replay(projected: jax.Array, h0: jax.Array, c0: jax.Array, w_hh: jax.Array, b_hh: jax.Array,
                record) -> jax.Array:
    """:func:`lstm_layer`'s outputs ``[T, B, H]`` over a sequence whose forward already ran step by step
    (:func:`gru_replay` says why): ``record = (outputs, (c_previous, i, f, g, o, c))``, each ``[T, B, H]``,
    from :func:`lstm_cell` (``c_previous`` the cell state before the step, ``c`` after it). Its reverse pass
    is :func:`lstm_layer`'s with no gradient on the final cell state; ``record`` gets no gradient."""
    return record[0]


def _lstm_replay_fwd(projected, h0, c0, w_hh, b_hh, record):
    outputs, saved = record
    return outputs, (outputs, list(saved), h0, w_hh)


def _lstm_replay_bwd(residuals, d_outputs):
    outputs, saved, h0, _ = residuals
    grads = _lstm_bwd(residuals, (d_outputs, jnp.zeros_like(h0)))
    return (*grads, jax.tree.map(jnp.zeros_like, (outputs, tuple(saved))))


lstm_replay.defvjp(_lstm_replay_fwd, _lstm_replay_bwd)


# ------------------------------------------------------------------------------------------ masked LSTM
def _masked_lstm_forward(projected, valid, w_hh, b_hh, reverse):
    w_hh_t = w_hh.T
    zeros = jnp.zeros((projected.shape[1], w_hh.shape[1]), projected.dtype)

    def step(carry, inputs):
        h_previous, c_previous = carry
        gi, keep = inputs
        h_new, c_new, (i, f, g, o) = lstm_cell(gi, h_previous, c_previous, w_hh_t, b_hh)
        keep = keep[:, None]
        carry = jnp.where(keep, h_new, h_previous), jnp.where(keep, c_new, c_previous)
        return carry, (jnp.where(keep, h_new, jnp.zeros_like(h_new)), h_previous, c_previous, i, f, g, o, c_new)

    (h_final, _), (outputs, *saved) = lax.scan(step, (zeros, zeros), (split_gates(projected, 4), valid),
                                               reverse=reverse)
    return outputs, h_final, saved


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def masked_lstm_layer(projected: jax.Array, valid: jax.Array, w_hh: jax.Array, b_hh: jax.Array,
                      reverse: bool = False) -> tuple[jax.Array, jax.Array]:
    """An LSTM over padded sequences from zero states: ``(outputs [T, B, H], final h [B, H])``.

    ``valid [T, B]`` (bool) marks the real steps; on the others the state (h, c) is carried unchanged and the
    output is 0, so each sequence ends in the state of its last real step (torch's packed sequences;
    docs/framework-differences.md). ``reverse``: run from t = T - 1 down to 0 (the backward direction of a
    bidirectional LSTM). The reverse pass is :func:`lstm_layer`'s with the mask: where a step is padding its
    gate gradients are 0 and the state's gradient passes through unchanged,

        dh_{t-1} = m_t dg_t W_hh + (1 - m_t) dh_t,    dc_{t-1} = m_t dc'_t f_t + (1 - m_t) dc_t,

    and dW_hh = sum_t dg_t^T h_{t-1} with the carried (not the output) h_{t-1}.
    """
    outputs, h_final, _ = _masked_lstm_forward(projected, valid, w_hh, b_hh, reverse)
    return outputs, h_final


def _masked_lstm_fwd(projected, valid, w_hh, b_hh, reverse):
    outputs, h_final, saved = _masked_lstm_forward(projected, valid, w_hh, b_hh, reverse)
    return (outputs, h_final), (saved, valid, w_hh)


def _masked_lstm_bwd(reverse, residuals, cotangents):
    (h_previous, c_previous, i, f, g, o, c_new), valid, w_hh = residuals
    d_outputs, dh_final = cotangents

    def step(carry, inputs):
        dh, dc = carry  # d(loss) / d(state after this step)
        dy, keep, c_before, i, f, g, o, c = inputs
        keep = keep[:, None]
        dh_new, dc_new = jnp.where(keep, dh + dy, 0.0), jnp.where(keep, dc, 0.0)
        tanh_c = jnp.tanh(c)
        dc_new = dc_new + dh_new * o * (1 - tanh_c * tanh_c)
        dgates = jnp.concatenate([dc_new * g * i * (1 - i), dc_new * c_before * f * (1 - f), dc_new * i * (1 - g * g),
                                  dh_new * tanh_c * o * (1 - o)], axis=-1)
        dh = jnp.matmul(dgates, w_hh, precision=HIGHEST) + jnp.where(keep, 0.0, dh)
        dc = dc_new * f + jnp.where(keep, 0.0, dc)
        return (dh, dc), dgates

    (_, _), dgates = lax.scan(step, (dh_final, jnp.zeros_like(dh_final)),
                              (d_outputs, valid, c_previous, i, f, g, o, c_new), reverse=not reverse)
    return dgates, None, _weight_grad(dgates, h_previous), dgates.sum(axis=(0, 1))


masked_lstm_layer.defvjp(_masked_lstm_fwd, _masked_lstm_bwd)


__all__ = ["gru_cell", "gru_layer", "gru_replay", "lstm_cell", "lstm_layer", "lstm_replay", "masked_lstm_layer",
           "split_gates"]
