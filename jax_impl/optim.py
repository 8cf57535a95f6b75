"""Adam with global-norm clipping in optax, matching ``torch_impl.optim`` exactly.

clip:  g <- g * min(1, c / (||g||_2 + 1e-6))   torch's ``clip_grad_norm_``; optax's own
       ``clip_by_global_norm`` has no 1e-6 and only rescales when ||g|| >= c, hence a custom transform.
Adam:  optax's moments and update (``scale_by_adam``'s maths), with the bias corrections 1 - b^k
       evaluated as -expm1(k log b): optax computes 1 - b**k in the parameter dtype, which in float32
       loses ~1e-5 of the step size to cancellation (1 - 0.999 -> 9.99987e-4), while torch computes
       it in Python float64, hence a custom transform.
step:  p <- p - lr_k * adam_direction, with lr_k from :func:`learning_rate` (the formula of
       ``cogmeta.schedules``), applied explicitly like torch's ``param_group["lr"]``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from cogmeta.config import TrainConfig

#: torch adds this to the norm before dividing (optax's clip_by_global_norm does not).
CLIP_EPS = 1e-6


def clip_by_global_norm_torch(max_norm: float, eps: float = CLIP_EPS) -> optax.GradientTransformation:
    """g * min(1, max_norm / (||g|| + eps)), as ``torch.nn.utils.clip_grad_norm_``."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        norm = optax.tree.norm(updates)
        coef = jnp.minimum(max_norm / (norm + eps), 1.0)
        return jax.tree.map(lambda g: g * coef.astype(g.dtype), updates), state

    return optax.GradientTransformation(init, update)


def scale_by_adam_torch(b1: float, b2: float, eps: float) -> optax.GradientTransformation:
    """``optax.scale_by_adam`` (same state, moments and update) with torch-accurate bias corrections.

    1 - b**k is evaluated as -expm1(k * log(b)), accurate to a few ulps in float32 too; optax's
    ``1 - b**k`` in float32 is off by up to 1.3e-5 relative at k = 1 for b = 0.999.
    """

    def init(params):
        zeros = optax.tree.zeros_like
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros(params), nu=zeros(params))

    def update(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)

        def direction(m, v):
            correction1 = _one_minus_power(b1, count, m.dtype)
            correction2 = _one_minus_power(b2, count, v.dtype)
            return (m / correction1) / (jnp.sqrt(v / correction2) + eps)

        updates = jax.tree.map(direction, mu, nu)
        return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


def _one_minus_power(base: float, count: jax.Array, dtype) -> jax.Array:
    """1 - base**count, accurately: -expm1(count * log(base)); exactly 1 for base = 0 (no momentum)."""
    if base == 0.0:
        return jnp.ones([], dtype)
    return -jnp.expm1(count.astype(dtype) * math.log(base))


def make_optimizer(train: TrainConfig) -> optax.GradientTransformation:
    """Clip, then Adam's direction (the learning rate is applied by the caller every step)."""
    return optax.chain(
        clip_by_global_norm_torch(train.clip_norm),
        scale_by_adam_torch(b1=train.adam_beta1, b2=train.adam_beta2, eps=train.adam_eps),
    )


def learning_rate(step: jax.Array, train: TrainConfig, total_steps: int | None = None, peak: jax.Array | None = None) -> jax.Array:
    """``cogmeta.schedules.learning_rate`` in jnp (traceable in ``step``).

    ``peak`` replaces ``train.learning_rate`` by a traced value (one per member of a vmapped sweep,
    ``jax_impl.engine``); the formula and its order of operations are unchanged.
    """
    total = train.steps if total_steps is None else total_steps
    peak = train.learning_rate if peak is None else peak
    if train.schedule == "constant":
        return jnp.asarray(peak)
    progress = jnp.minimum(step, total) / total
    fraction = train.final_lr_fraction
    return peak * (fraction + (1.0 - fraction) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))


def apply_update(params, direction, lr: jax.Array):
    """p <- p - lr * direction."""
    return jax.tree.map(lambda p, d: p - lr.astype(p.dtype) * d, params, direction)
