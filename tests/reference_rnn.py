"""A float64 numpy forward pass of the meta-learner, written from the documented equations.

The reference for the PyTorch and JAX models in tests/test_torch_backend.py and tests/test_jax_backend.py
(torch's nn.GRU / nn.LSTM documentation; canonical tensors as in cogmeta.weights):

GRU:  r = s(W_ir x + b_ir + W_hr h + b_hr),  z = s(W_iz x + b_iz + W_hz h + b_hz)
      n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h
LSTM: i, f, g, o = split(W_ih x + b_ih + W_hh h + b_hh)
      c' = s(f) * c + s(i) * tanh(g),  h' = s(o) * tanh(c')
head: raw = h W^T + b;  gaussian: mean = raw_0, std = exp(raw_1);  bernoulli: P(x = 1) = sigmoid(raw_0)
"""

from __future__ import annotations

import numpy as np

from cogmeta.config import RunConfig
from cogmeta.tasks import model_inputs


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _split(x, parts):
    return np.split(x, parts, axis=-1)


def reference_raw(config: RunConfig, weights, observations) -> np.ndarray:
    """Raw head outputs ``[T, B, O]`` in float64, one time step and one sequence element at a time."""
    w = {name: np.asarray(value, np.float64) for name, value in weights.items()}
    hidden = config.model.hidden_size
    x = model_inputs(np.asarray(observations, np.float64))
    steps, batch, _ = x.shape
    for layer in range(config.model.num_layers):
        w_ih, w_hh = w[f"core.weight_ih_l{layer}"], w[f"core.weight_hh_l{layer}"]
        b_ih, b_hh = w[f"core.bias_ih_l{layer}"], w[f"core.bias_hh_l{layer}"]
        out = np.zeros((steps, batch, hidden))
        for b in range(batch):
            h, c = np.zeros(hidden), np.zeros(hidden)
            for t in range(steps):
                gi, gh = w_ih @ x[t, b] + b_ih, w_hh @ h + b_hh
                if config.model.cell == "gru":
                    ir, iz, in_ = _split(gi, 3)
                    hr, hz, hn = _split(gh, 3)
                    r, z = _sigmoid(ir + hr), _sigmoid(iz + hz)
                    n = np.tanh(in_ + r * hn)
                    h = (1 - z) * n + z * h
                else:
                    i, f, g, o = _split(gi + gh, 4)
                    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
                    h = _sigmoid(o) * np.tanh(c)
                out[t, b] = h
        x = out
    return x @ w["head.weight"].T + w["head.bias"]


def reference_predictive(config: RunConfig, weights, observations) -> dict[str, np.ndarray]:
    """``cogmeta.predictive`` parameters ``[T, B]`` of the reference forward pass."""
    raw = reference_raw(config, weights, observations)
    if config.task.family == "gaussian":
        return {"mean": raw[..., 0], "std": np.exp(raw[..., 1])}
    return {"prob": _sigmoid(raw[..., 0])}


def random_weights(shapes, seed: int, scale: float = 0.6, dtype=np.float64) -> dict[str, np.ndarray]:
    """Canonical weights drawn from N(0, scale^2) (larger than torch's init, so every gate matters)."""
    rng = np.random.default_rng(seed)
    return {name: (scale * rng.standard_normal(shape)).astype(dtype) for name, shape in shapes.items()}


class AdamReference:
    """Torch semantics: clip g <- g min(1, c / (||g|| + 1e-6)), then bias-corrected Adam (torch.optim.Adam docs)."""

    def __init__(self, params, clip_norm, beta1, beta2, eps):
        self.params = {name: np.asarray(value, np.float64).copy() for name, value in params.items()}
        self.m = {name: np.zeros_like(value) for name, value in self.params.items()}
        self.v = {name: np.zeros_like(value) for name, value in self.params.items()}
        self.clip_norm, self.beta1, self.beta2, self.eps, self.count = clip_norm, beta1, beta2, eps, 0

    def step(self, grads, lr):
        """Apply one update with ``grads`` (the gradient at the current parameters); return the pre-clip norm."""
        self.count += 1
        norm = float(np.sqrt(sum(np.sum(np.asarray(g, np.float64) ** 2) for g in grads.values())))
        coef = min(1.0, self.clip_norm / (norm + 1e-6))
        b1, b2, k = self.beta1, self.beta2, self.count
        for name in self.params:
            g = np.asarray(grads[name], np.float64) * coef
            self.m[name] = b1 * self.m[name] + (1 - b1) * g
            self.v[name] = b2 * self.v[name] + (1 - b2) * g**2
            m_hat, v_hat = self.m[name] / (1 - b1**k), self.v[name] / (1 - b2**k)
            self.params[name] = self.params[name] - lr * m_hat / (np.sqrt(v_hat) + self.eps)
        return norm
