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
``{"ih": eps, "hh": eps, "mu": eps, "logscale": eps}``.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import torch
from torch import nn

from torch_impl.svdo import LinearSVDO

LAYERS = ("ih", "hh", "mu", "logscale")
MODEL_NOISE_STD = 0.1


class BoundedOutputs(NamedTuple):
    """``mean``, ``scale`` ``[T, B, K]``: the Gaussian over cue weights; ``z`` ``[T, B]``: the probit argument."""

    mean: torch.Tensor
    scale: torch.Tensor
    z: torch.Tensor


class BoundedMetaLearner(nn.Module):
    """The bounded meta-learned inference model (module doc) for K cues and H hidden units."""

    def __init__(self, num_cues: int = 4, hidden_size: int = 64, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.num_cues, self.hidden_size = num_cues, hidden_size
        self.ih = LinearSVDO(num_cues + 2, 3 * hidden_size, dtype)
        self.hh = LinearSVDO(hidden_size, 3 * hidden_size, dtype)
        self.mu = LinearSVDO(hidden_size, num_cues, dtype)
        self.logscale = LinearSVDO(hidden_size, num_cues, dtype)
        self.initial_state = nn.Parameter(torch.zeros(hidden_size, dtype=dtype))
        with torch.no_grad():  # the paper's init: orthogonal per gate block, zero GRU biases
            for layer in (self.ih, self.hh):
                for block in layer.weight.split(hidden_size, dim=0):
                    nn.init.orthogonal_(block)
                layer.bias.zero_()

    def layers(self) -> dict[str, LinearSVDO]:
        return {name: getattr(self, name) for name in LAYERS}

    def kl(self) -> torch.Tensor:
        """Sum of the layers' KL approximations."""
        return sum(layer.kl() for layer in self.layers().values())

    def forward(
        self,
        inputs: torch.Tensor,
        cues: torch.Tensor,
        mode: str = "sample",
        noise: Mapping[str, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> BoundedOutputs:
        """``inputs`` ``[T, B, K+2]``, ``cues`` ``[T, B, K]`` -> :class:`BoundedOutputs`."""
        noise = noise or {}
        weights = {name: layer.effective_weight(mode, noise.get(name), generator) for name, layer in self.layers().items()}
        hidden = self.hidden_size
        h = self.initial_state.expand(inputs.shape[1], hidden)
        states = [h]
        projected = self.ih(inputs[:-1], weights["ih"])  # [T-1, B, 3H]: the last input is never needed
        for gi in projected:
            gh = self.hh(h, weights["hh"])
            r = torch.sigmoid(gi[..., :hidden] + gh[..., :hidden])
            z = torch.sigmoid(gi[..., hidden : 2 * hidden] + gh[..., hidden : 2 * hidden])
            n = torch.tanh(gi[..., 2 * hidden :] + r * gh[..., 2 * hidden :])
            h = (1 - z) * n + z * h
            states.append(h)
        states = torch.stack(states)  # [T, B, H]: h_0 .. h_{T-1}
        mean = self.mu(states, weights["mu"])
        scale = torch.exp(self.logscale(states, weights["logscale"]))
        spread = 2 * MODEL_NOISE_STD**2 + torch.sum(cues**2 * scale**2, dim=-1)
        return BoundedOutputs(mean, scale, torch.sum(cues * mean, dim=-1) / torch.sqrt(spread))


def choice_nll(z: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-mean [y log Phi(z) + (1 - y) log Phi(-z)] over ``[T, B]``."""
    return -torch.mean(targets * torch.special.log_ndtr(z) + (1 - targets) * torch.special.log_ndtr(-z))


def bounded_loss(
    model: BoundedMetaLearner,
    inputs: torch.Tensor,
    cues: torch.Tensor,
    targets: torch.Tensor,
    kl_weight: float | torch.Tensor,
    noise: Mapping[str, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, nll, kl) with sampled weights: loss = nll + kl_weight * kl."""
    outputs = model(inputs, cues, "sample", noise, generator)
    nll = choice_nll(outputs.z, targets)
    kl = model.kl()
    return nll + kl_weight * kl, nll, kl
