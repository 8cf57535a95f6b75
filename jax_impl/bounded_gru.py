"""A GRU meta-learner whose every linear map is sparse-variational (Binz et al. 2022, ``model.py``).

Layers (``LinearSVDO``, torch layout): ``ih`` (3H, K+2) and ``hh`` (3H, H) of the GRU (gates r, z, n as
torch's GRU, with ``b_hn`` inside the reset product), readouts ``mu`` (K, H) and ``logscale`` (K, H),
and a learned initial state ``initial_state`` (H,).

For inputs u_t = [dx_t, y_t, 1 - y_t] ``[T, B, K+2]`` and hidden states h_0 (learned), h_t = GRU(h_{t-1}, u_t):
    m_t = mu(h_{t-1}),  s_t = exp(logscale(h_{t-1}))                  ``[T, B, K]`` (read *before* trial t)
    z_t = dx_t . m_t / sqrt(2 sigma^2 + sum_k dx_{t,k}^2 s_{t,k}^2)     ``[T, B]``, sigma = 0.1 fixed
    p(y_t = 1) = Phi(z_t)
    loss = -mean_{t,b} [y log Phi(z) + (1 - y) log Phi(-z)] + kl_weight * sum_layers KL
The reparameterisation noise (one ``(out, in)`` draw per layer per forward pass) can be injected as
``{"ih": eps, "hh": eps, "mu": eps, "logscale": eps}``; else it is drawn from ``key``.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from jax_impl.svdo import LinearSVDO

LAYERS = ("ih", "hh", "mu", "logscale")
MODEL_NOISE_STD = 0.1


class BoundedOutputs(NamedTuple):
    """``mean``, ``scale`` ``[T, B, K]``: the Gaussian over cue weights; ``z`` ``[T, B]``: the probit argument."""

    mean: jax.Array
    scale: jax.Array
    z: jax.Array


class BoundedMetaLearner(nnx.Module):
    """The bounded meta-learned inference model (module doc) for K cues and H hidden units."""

    def __init__(self, num_cues: int = 4, hidden_size: int = 64, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.num_cues, self.hidden_size = num_cues, hidden_size
        self.ih = LinearSVDO(num_cues + 2, 3 * hidden_size, rngs=rngs, dtype=dtype)
        self.hh = LinearSVDO(hidden_size, 3 * hidden_size, rngs=rngs, dtype=dtype)
        self.mu = LinearSVDO(hidden_size, num_cues, rngs=rngs, dtype=dtype)
        self.logscale = LinearSVDO(hidden_size, num_cues, rngs=rngs, dtype=dtype)
        self.initial_state = nnx.Param(jnp.zeros((hidden_size,), dtype))
        orthogonal = jax.nn.initializers.orthogonal()
        for layer in (self.ih, self.hh):  # the paper's init: orthogonal per gate block, zero GRU biases
            inputs = layer.weight[...].shape[1]
            blocks = [orthogonal(rngs.params(), (hidden_size, inputs), dtype) for _ in range(3)]
            layer.weight[...] = jnp.concatenate(blocks, axis=0)
            layer.bias[...] = jnp.zeros_like(layer.bias[...])

    def layers(self) -> dict[str, LinearSVDO]:
        return {name: getattr(self, name) for name in LAYERS}

    def kl(self) -> jax.Array:
        """Sum of the layers' KL approximations."""
        return sum(layer.kl() for layer in self.layers().values())

    def __call__(
        self,
        inputs: jax.Array,
        cues: jax.Array,
        mode: str = "sample",
        noise: Mapping[str, jax.Array] | None = None,
        key: jax.Array | None = None,
    ) -> BoundedOutputs:
        """``inputs`` ``[T, B, K+2]``, ``cues`` ``[T, B, K]`` -> :class:`BoundedOutputs`."""
        noise = noise or {}
        keys = dict(zip(LAYERS, jax.random.split(key, len(LAYERS)))) if key is not None else {}
        weights = {
            name: layer.effective_weight(mode, noise.get(name), keys.get(name)) for name, layer in self.layers().items()
        }
        hidden = self.hidden_size
        h0 = jnp.broadcast_to(self.initial_state[...], (inputs.shape[1], hidden))
        projected = self.ih(inputs[:-1], weights["ih"])  # [T-1, B, 3H]: the last input is never needed
        hh = self.hh

        def cell(h, gi):
            gh = hh(h, weights["hh"])
            r = jax.nn.sigmoid(gi[..., :hidden] + gh[..., :hidden])
            z = jax.nn.sigmoid(gi[..., hidden : 2 * hidden] + gh[..., hidden : 2 * hidden])
            n = jnp.tanh(gi[..., 2 * hidden :] + r * gh[..., 2 * hidden :])
            h = (1 - z) * n + z * h
            return h, h

        _, later = lax.scan(cell, h0, projected)
        states = jnp.concatenate([h0[None], later], axis=0)  # [T, B, H]: h_0 .. h_{T-1}
        mean = self.mu(states, weights["mu"])
        scale = jnp.exp(self.logscale(states, weights["logscale"]))
        spread = 2 * MODEL_NOISE_STD**2 + jnp.sum(cues**2 * scale**2, axis=-1)
        return BoundedOutputs(mean, scale, jnp.sum(cues * mean, axis=-1) / jnp.sqrt(spread))


def choice_nll(z: jax.Array, targets: jax.Array) -> jax.Array:
    """-mean [y log Phi(z) + (1 - y) log Phi(-z)] over ``[T, B]``."""
    return -jnp.mean(targets * jax.scipy.special.log_ndtr(z) + (1 - targets) * jax.scipy.special.log_ndtr(-z))


def bounded_loss(
    model: BoundedMetaLearner,
    inputs: jax.Array,
    cues: jax.Array,
    targets: jax.Array,
    kl_weight: float | jax.Array,
    noise: Mapping[str, jax.Array] | None = None,
    key: jax.Array | None = None,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """(loss, (nll, kl)) with sampled weights: loss = nll + kl_weight * kl (the aux pair suits ``has_aux``)."""
    outputs = model(inputs, cues, "sample", noise, key)
    nll = choice_nll(outputs.z, targets)
    kl = model.kl()
    return nll + kl_weight * kl, (nll, kl)
