"""One functional clip + Adam + schedule, torch semantics (the reference that ``jax_impl.optim`` matches).

schedule: lr_k = lr0 * (f + (1 - f) * 0.5 * (1 + cos(pi * min(k, K) / K)))   (``cogmeta.schedules``;
          or constant, or lr0 * d ** floor(k / E))
clip:     g <- g * min(1, c / (||g||_2 + 1e-6))                      (``torch.nn.utils.clip_grad_norm_``)
Adam:     m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  c <- c + 1
          p <- p - lr_k * (m / (1 - b1^c)) / (sqrt(v / (1 - b2^c)) + eps)

The twin modules define the same names with the same parameters; only the order of operations of
the last line differs, each framework keeping the order of its reference:

- torch (this module): ``torch.optim.Adam``'s non-capturable order, bit for bit: the bias corrections
  1 - b^c in float64 (torch evaluates them as Python floats), step_size = lr_k / (1 - b1^c),
  denom = sqrt(v) / sqrt(1 - b2^c) + eps, p <- p + (-step_size) * m / denom (``addcdiv``'s order).
  Unlike ``torch.optim.Adam`` nothing here reads a value back to the host (the count, the learning
  rate and the guard are tensors), so the same function runs in a CUDA graph
  (``torch_impl.static_step``) and under ``torch.func.vmap`` (``torch_impl.engine``).
  ``tests/test_functional_adam.py`` checks it against ``torch.optim.Adam`` + ``clip_grad_norm_``.
- JAX (``jax_impl.optim``): optax's ``scale_by_adam`` order, (m / (1 - b1^c)) / (sqrt(v / (1 - b2^c)) + eps),
  then p - lr_k * direction.

Parameters, gradients and moments are dicts keyed by canonical parameter names (``named_parameters()``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from cogmeta.config import TrainConfig

#: torch adds this to the norm before dividing (optax's clip_by_global_norm does not).
CLIP_EPS = 1e-6


def learning_rate(step, train: TrainConfig, total_steps: int | None = None, peak=None) -> torch.Tensor:
    """``cogmeta.schedules.learning_rate`` on tensors: a float64 scalar, with no host value in ``step``.

    ``step`` is an int or an integer tensor (a device step counter: capturable in a CUDA graph);
    ``peak`` replaces ``train.learning_rate`` by a tensor (one per member of a vmapped sweep,
    ``torch_impl.engine``); the formula and its order of operations are unchanged.
    """
    total = train.steps if total_steps is None else total_steps
    peak = train.learning_rate if peak is None else peak
    device = step.device if isinstance(step, torch.Tensor) else None
    peak = torch.as_tensor(peak, dtype=torch.float64, device=device)
    if train.schedule == "constant":
        return peak
    if train.schedule == "step":
        decays = torch.div(torch.as_tensor(step, device=device), train.decay_every, rounding_mode="floor")
        return peak * torch.pow(torch.as_tensor(train.decay_factor, dtype=torch.float64, device=device), decays)
    step = torch.as_tensor(step, device=device).to(torch.float64)
    progress = torch.clamp(step, max=total) / total
    fraction = train.final_lr_fraction
    return peak * (fraction + (1.0 - fraction) * 0.5 * (1.0 + torch.cos(math.pi * progress)))


class AdamState(NamedTuple):
    """Adam's state: the number of updates applied and the two moments per parameter name."""

    count: torch.Tensor  # float64 scalar
    exp_avg: dict[str, torch.Tensor]
    exp_avg_sq: dict[str, torch.Tensor]


def init_adam(params) -> AdamState:
    """Zero moments shaped like ``params`` and a zero count (``params``: name -> tensor)."""
    params = dict(params)
    device = next(iter(params.values())).device
    zeros = lambda: {n: torch.zeros_like(p, memory_format=torch.contiguous_format).detach() for n, p in params.items()}  # noqa: E731
    return AdamState(torch.zeros((), dtype=torch.float64, device=device), zeros(), zeros())


def clip_by_global_norm(grads, max_norm: float, eps: float = CLIP_EPS):
    """g * min(1, max_norm / (||g|| + eps)), as ``torch.nn.utils.clip_grad_norm_``; returns (clipped, ||g||).

    ||g|| is the norm of the per-tensor norms (``clip_grad_norm_``'s order; ``_foreach_norm`` on CUDA).
    """
    tensors = list(grads.values())
    if tensors[0].device.type == "cuda":
        norms = torch._foreach_norm(tensors, 2.0)
    else:
        norms = [torch.linalg.vector_norm(g, 2.0) for g in tensors]
    norm = torch.linalg.vector_norm(torch.stack(norms), 2.0)
    coef = torch.clamp(max_norm / (norm + eps), max=1.0)
    return {name: g * coef for name, g in grads.items()}, norm


def adam_step(params, grads, state: AdamState, lr, train: TrainConfig, apply=None):
    """One Adam update at learning rate ``lr``; returns ``(new_params, new_state)``.

    ``train`` supplies ``adam_beta1``, ``adam_beta2`` and ``adam_eps``. ``apply`` (a boolean scalar, the
    non-finite guard): where false, the parameters and the state, count included, come back unchanged;
    ``None`` applies the update. Pure: nothing in ``params`` or ``state`` is modified.
    """
    b1, b2, eps = train.adam_beta1, train.adam_beta2, train.adam_eps
    with torch.no_grad():
        count = state.count + 1
        step_size = torch.as_tensor(lr, dtype=torch.float64, device=count.device) / (1 - b1**count)
        bias_correction2_sqrt = (1 - b2**count).sqrt()
        new_params, exp_avg, exp_avg_sq = {}, {}, {}
        for name, param in params.items():
            grad = grads[name]
            m = state.exp_avg[name].lerp(grad, 1 - b1)
            v = (state.exp_avg_sq[name] * b2).addcmul(grad, grad, value=1 - b2)
            denom = v.sqrt() / bias_correction2_sqrt.to(param.dtype) + eps
            new_params[name] = param + (-step_size).to(param.dtype) * m / denom
            exp_avg[name], exp_avg_sq[name] = m, v
        if apply is not None:
            keep = lambda new, old: torch.where(apply, new, old)  # noqa: E731
            new_params = {n: keep(new_params[n], params[n]) for n in params}
            exp_avg = {n: keep(exp_avg[n], state.exp_avg[n]) for n in params}
            exp_avg_sq = {n: keep(exp_avg_sq[n], state.exp_avg_sq[n]) for n in params}
            count = keep(count, state.count)
    return new_params, AdamState(count, exp_avg, exp_avg_sq)


__all__ = ["CLIP_EPS", "AdamState", "adam_step", "clip_by_global_norm", "init_adam", "learning_rate"]
