"""Adam with global-norm clipping in optax, matching ``torch_impl.optim`` exactly.

clip:  g <- g * min(1, c / (||g||_2 + 1e-6))   torch's ``clip_grad_norm_``; optax's own
       ``clip_by_global_norm`` has no 1e-6 and only rescales when ||g|| >= c, hence a custom transform.
Adam:  ``optax.scale_by_adam`` (same moments and bias corrections as ``torch.optim.Adam``).
step:  p <- p - lr_k * adam_direction, with lr_k from :func:`learning_rate` (the formula of
       ``cogmeta.schedules``), applied explicitly like torch's ``param_group["lr"]``.
"""

from __future__ import annotations

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


def make_optimizer(train: TrainConfig) -> optax.GradientTransformation:
    """Clip, then Adam's direction (the learning rate is applied by the caller every step)."""
    return optax.chain(
        clip_by_global_norm_torch(train.clip_norm),
        optax.scale_by_adam(b1=train.adam_beta1, b2=train.adam_beta2, eps=train.adam_eps),
    )


def learning_rate(step: jax.Array, train: TrainConfig, total_steps: int | None = None) -> jax.Array:
    """``cogmeta.schedules.learning_rate`` in jnp (traceable in ``step``)."""
    total = train.steps if total_steps is None else total_steps
    if train.schedule == "constant":
        return jnp.asarray(train.learning_rate)
    progress = jnp.minimum(step, total) / total
    fraction = train.final_lr_fraction
    return train.learning_rate * (fraction + (1.0 - fraction) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))


def apply_update(params, direction, lr: jax.Array):
    """p <- p - lr * direction."""
    return jax.tree.map(lambda p, d: p - lr.astype(p.dtype) * d, params, direction)
