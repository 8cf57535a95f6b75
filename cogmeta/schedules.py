"""The learning-rate schedule, one explicit formula shared by both frameworks.

torch schedulers and optax schedules differ in details (torch's CosineAnnealingLR is periodic past
T_max, optax's alpha is a multiplier, optax evaluates in float32), so cogmeta defines its own:

    cosine:   lr(k) = lr0 * (f + (1 - f) * 0.5 * (1 + cos(pi * min(k, K) / K)))
    constant: lr(k) = lr0
    step:     lr(k) = lr0 * d ** floor(k / E)        (Lake 2019: d = 0.1 every E = 5,000 episodes)

for update k = 0, 1, ... (k counts updates already applied), K total steps, f the final fraction.
``jax_impl.optim.learning_rate`` evaluates the same formula in jnp, ``torch_impl.optim.learning_rate`` on
float64 tensors (a device step counter in the CUDA-graph step).
"""

from __future__ import annotations

import math


def learning_rate(step: int, base: float, total_steps: int, schedule: str, final_fraction: float,
                  decay_every: int = 1, decay_factor: float = 1.0) -> float:
    """Learning rate for update number ``step`` (0-based), as a Python float."""
    if schedule == "constant":
        return base
    if schedule == "step":
        return base * decay_factor ** (step // decay_every)
    if schedule == "cosine":
        progress = min(step, total_steps) / total_steps
        return base * (final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    raise ValueError(f"unknown schedule {schedule!r}; choose 'cosine', 'constant' or 'step'")
