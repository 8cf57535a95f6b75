"""The hand-written reverse pass of ``jax_impl.recurrent_layers`` against autodiff and finite differences.

The reference is JAX's own autodiff of a plain ``lax.scan`` of the documented cell equations (written
here, independently of the module), in float64: the custom VJP must give the same gradients for every
input (input projection, initial state, recurrent weight and bias) to rounding, and a central finite
difference along a random direction must agree with it.
"""

from __future__ import annotations

import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

from jax_impl.recurrent_layers import gru_layer, lstm_layer  # noqa: E402

T, B, H = 6, 3, 5


def _reference_gru(projected, h0, w_hh, b_hh):
    H = h0.shape[-1]  # noqa: N806

    def step(h, gi):
        gh = h @ w_hh.T + b_hh
        r = 1 / (1 + jnp.exp(-(gi[:, :H] + gh[:, :H])))
        z = 1 / (1 + jnp.exp(-(gi[:, H : 2 * H] + gh[:, H : 2 * H])))
        n = jnp.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
        h = (1 - z) * n + z * h
        return h, h

    return lax.scan(step, h0, projected)[1]


def _reference_lstm(projected, h0, c0, w_hh, b_hh):
    H = h0.shape[-1]  # noqa: N806

    def step(carry, gi):
        h, c = carry
        a = gi + h @ w_hh.T + b_hh
        i, f, o = (1 / (1 + jnp.exp(-a[:, k * H : (k + 1) * H])) for k in (0, 1, 3))
        c = f * c + i * jnp.tanh(a[:, 2 * H : 3 * H])
        h = o * jnp.tanh(c)
        return (h, c), h

    (_, c), outputs = lax.scan(step, (h0, c0), projected)
    return outputs, c


def _inputs(cell: str, seed: int = 0, dtype=jnp.float64, batch: int | None = None, hidden: int | None = None):
    B, H = batch or globals()["B"], hidden or globals()["H"]  # noqa: N806
    gates = 3 if cell == "gru" else 4
    keys = jax.random.split(jax.random.PRNGKey(seed), 7)
    normal = lambda k, shape, scale=1.0: scale * jax.random.normal(k, shape, dtype)  # noqa: E731
    arguments = [normal(keys[0], (T, B, gates * H)), normal(keys[1], (B, H))]
    if cell == "lstm":
        arguments.append(normal(keys[2], (B, H)))
    arguments += [normal(keys[3], (gates * H, H), 0.5), normal(keys[4], (gates * H,))]
    cotangents = (normal(keys[5], (T, B, H)), normal(keys[6], (B, H)))
    return arguments, cotangents


def _loss(cell: str, layer, cotangents):
    """A scalar that weights every output (and the LSTM's final c) by a fixed random cotangent."""
    if cell == "gru":
        return lambda *a: jnp.sum(layer(*a) * cotangents[0])

    def loss(*a):
        outputs, c = layer(*a)
        return jnp.sum(outputs * cotangents[0]) + jnp.sum(c * cotangents[1])

    return loss


LAYERS = {"gru": (gru_layer, _reference_gru), "lstm": (lstm_layer, _reference_lstm)}


#: (batch, hidden): the default, and B = 4, H = 5, the float64 shape at which XLA:CPU (jax 0.10.2)
#: miscompiled the GRU's reverse pass when it took one [B, 3H] x [3H, H] product per step (found by
#: ``cogmeta verify``; the layer now takes one product per gate block), with its neighbours.
SHAPES = [(None, None), (4, 5), (4, 6), (6, 5), (3, 5), (1, 1)]


@pytest.mark.parametrize("batch, hidden", SHAPES)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_outputs_and_gradients_match_autodiff(cell, batch, hidden):
    with jax.enable_x64(True):
        arguments, cotangents = _inputs(cell, batch=batch, hidden=hidden)
        layer, reference = LAYERS[cell]
        argnums = tuple(range(len(arguments)))
        value_and_grad = lambda f: jax.jit(jax.value_and_grad(_loss(cell, f, cotangents), argnums))  # noqa: E731
        (our_value, ours), (their_value, theirs) = value_and_grad(layer)(*arguments), value_and_grad(reference)(*arguments)
        assert abs(float(our_value - their_value)) < 1e-12 * (1 + abs(float(their_value)))
        names = ("projected", "h0", "c0", "w_hh", "b_hh") if cell == "lstm" else ("projected", "h0", "w_hh", "b_hh")
        for name, a, b in zip(names, ours, theirs):
            assert a.shape == b.shape
            error = float(jnp.max(jnp.abs(a - b)) / (1 + jnp.max(jnp.abs(b))))
            assert error < 1e-13, f"{cell} d{name}: relative error {error:.2e}"


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gradients_match_finite_differences(cell):
    with jax.enable_x64(True):
        arguments, cotangents = _inputs(cell, seed=1)
        loss = jax.jit(_loss(cell, LAYERS[cell][0], cotangents))
        grads = jax.jit(jax.grad(loss, tuple(range(len(arguments)))))(*arguments)
        keys = jax.random.split(jax.random.PRNGKey(2), len(arguments))
        direction = [jax.random.normal(k, a.shape, jnp.float64) for k, a in zip(keys, arguments)]
        eps = 1e-6
        plus = loss(*[a + eps * d for a, d in zip(arguments, direction)])
        minus = loss(*[a - eps * d for a, d in zip(arguments, direction)])
        numeric = (plus - minus) / (2 * eps)
        analytic = sum(jnp.sum(g * d) for g, d in zip(grads, direction))
        assert abs(float(numeric - analytic)) < 1e-7 * (1 + abs(float(analytic)))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_vmap_over_members_equals_one_by_one(cell):
    """The engine vmaps whole training steps over seeds: the custom VJP must batch correctly."""
    members = [_inputs(cell, seed, jnp.float32) for seed in range(3)]
    cotangents = members[0][1]
    loss = _loss(cell, LAYERS[cell][0], cotangents)
    argnums = tuple(range(len(members[0][0])))
    stacked = [jnp.stack([m[0][k] for m in members]) for k in argnums]
    batched = jax.jit(jax.vmap(jax.grad(loss, argnums)))(*stacked)
    single_grad = jax.jit(jax.grad(loss, argnums))
    for s in range(len(members)):
        single = single_grad(*[a[s] for a in stacked])
        for a, b in zip(batched, single):
            assert float(jnp.max(jnp.abs(a[s] - b))) < 1e-5


def test_empty_sequence_gives_zero_gradients():
    arguments, _ = _inputs("gru", dtype=jnp.float32)
    arguments[0] = arguments[0][:0]
    grads = jax.grad(lambda *a: jnp.sum(gru_layer(*a)), (0, 1, 2, 3))(*arguments)
    assert grads[0].shape == (0, B, 3 * H) and all(float(jnp.abs(g).sum()) == 0 for g in grads[1:])


def _reference_masked_lstm(projected, valid, w_hh, b_hh, reverse):
    """The masked LSTM written plainly: the state is carried unchanged on padding, the output there is 0."""
    H = w_hh.shape[1]  # noqa: N806
    zeros = jnp.zeros((projected.shape[1], H), projected.dtype)

    def step(carry, inputs):
        h, c = carry
        gi, keep = inputs
        gates = gi + h @ w_hh.T + b_hh
        i, f = 1 / (1 + jnp.exp(-gates[:, :H])), 1 / (1 + jnp.exp(-gates[:, H : 2 * H]))
        g, o = jnp.tanh(gates[:, 2 * H : 3 * H]), 1 / (1 + jnp.exp(-gates[:, 3 * H :]))
        c_new = f * c + i * g
        h_new = o * jnp.tanh(c_new)
        keep = keep[:, None]
        return (jnp.where(keep, h_new, h), jnp.where(keep, c_new, c)), jnp.where(keep, h_new, 0.0)

    (h, _), outputs = lax.scan(step, (zeros, zeros), (projected, valid), reverse=reverse)
    return outputs, h


@pytest.mark.parametrize("reverse", [False, True])
def test_masked_lstm_matches_autodiff_of_the_plain_masked_scan(reverse):
    """Outputs, final state and every gradient of ``masked_lstm_layer`` equal autodiff of the plain masked scan
    in float64 (padding at the end of some sequences, one sequence empty), and finite differences agree."""
    import numpy as np

    from jax_impl.recurrent_layers import masked_lstm_layer

    with jax.enable_x64(True):
        rng = np.random.default_rng(7 + reverse)
        projected = jnp.asarray(rng.standard_normal((T, B + 1, 4 * H)))
        w_hh, b_hh = jnp.asarray(rng.standard_normal((4 * H, H)) * 0.4), jnp.asarray(rng.standard_normal(4 * H))
        lengths = np.array([T, 2, 4, 0])
        valid = jnp.asarray(np.arange(T)[:, None] < lengths[None, :])
        weights = jnp.asarray(rng.standard_normal((T, B + 1, H)))

        def loss(fn):
            def value(projected, w_hh, b_hh):
                outputs, h = fn(projected, valid, w_hh, b_hh, reverse)
                return jnp.sum(weights * outputs) + jnp.sum(jnp.sin(h))
            return value

        got, want = (jax.value_and_grad(loss(fn), argnums=(0, 1, 2))(projected, w_hh, b_hh)
                     for fn in (masked_lstm_layer, _reference_masked_lstm))
        assert abs(float(got[0] - want[0])) < 1e-12
        for mine, theirs in zip(got[1], want[1]):
            np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), rtol=1e-10, atol=1e-12)
        assert float(jnp.abs(got[1][0][:, 3]).max()) == 0.0  # the empty sequence gets no gradient
        direction = [jnp.asarray(rng.standard_normal(a.shape)) for a in (projected, w_hh, b_hh)]
        eps = 1e-6
        plus = loss(masked_lstm_layer)(*(a + eps * d for a, d in zip((projected, w_hh, b_hh), direction)))
        minus = loss(masked_lstm_layer)(*(a - eps * d for a, d in zip((projected, w_hh, b_hh), direction)))
        directional = sum(float(jnp.sum(g * d)) for g, d in zip(got[1], direction))
        assert abs((float(plus) - float(minus)) / (2 * eps) - directional) < 1e-6 * max(1.0, abs(directional))


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_replay_of_recorded_steps_equals_autodiff_of_the_step_loop(cell, layers):
    """``core.stepper()``'s step run step by step without gradients, then ``core.replay``: the outputs and every gradient
    (weights and initial state) equal autodiff of the loop that calls the core on length-1 sequences (what
    RL²'s rollout differentiated before), float64 to 1e-12."""
    from flax import nnx

    from jax_impl.recurrent import CORES

    with jax.enable_x64(True):
        T, B, I, H = 9, 5, 4, 6  # noqa: N806
        core = CORES[cell](I, H, layers, rngs=nnx.Rngs(3), dtype=jnp.float64)
        graphdef, params = nnx.split(core)
        keys = jax.random.split(jax.random.key(7), 4)
        inputs = jax.random.normal(keys[0], (T, B, I), jnp.float64)
        h0 = jax.random.normal(keys[1], (layers, B, H), jnp.float64)
        state0 = h0 if cell == "gru" else (h0, jax.random.normal(keys[2], (layers, B, H), jnp.float64))
        cotangent = jax.random.normal(keys[3], (T, B, H), jnp.float64)

        def looped(params, state0):
            module = nnx.merge(graphdef, params)

            def step(state, x):
                outputs, state = module(x[None], state)
                return state, outputs[0]

            return jnp.sum(lax.scan(step, state0, inputs)[1] * cotangent)

        def replayed(params, state0):
            core_step = nnx.merge(graphdef, lax.stop_gradient(params)).stepper()

            def step(state, x):
                _, state, record = core_step(x, state)
                return state, record

            _, record = lax.scan(step, lax.stop_gradient(state0), inputs)
            return jnp.sum(nnx.merge(graphdef, params).replay(inputs, state0, record) * cotangent)

        want_value, want = jax.jit(jax.value_and_grad(looped, (0, 1)))(params, state0)
        value, got = jax.jit(jax.value_and_grad(replayed, (0, 1)))(params, state0)
        assert abs(float(value - want_value)) < 1e-12
        pairs = list(zip(jax.tree.leaves(got), jax.tree.leaves(want)))
        assert len(pairs) == 4 * layers + (1 if cell == "gru" else 2)
        for a, b in pairs:
            assert float(jnp.max(jnp.abs(a - b))) < 1e-12
        assert max(float(jnp.max(jnp.abs(b))) for _, b in pairs) > 1e-3  # the gradients are not all zero
