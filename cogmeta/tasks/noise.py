"""The numpy reference draw of base noise (see :class:`cogmeta.tasks.base.NoiseSpec`)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from cogmeta.tasks.base import NoiseSpec


def draw_noise(spec: Mapping[str, NoiseSpec], rng: np.random.Generator, dtype=np.float64) -> dict[str, np.ndarray]:
    """Draw every array in ``spec`` with the seeded generator ``rng`` and cast it to ``dtype``."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    noise = {}
    for name, item in spec.items():
        if item.kind == "normal":
            values = rng.standard_normal(item.shape)
        elif item.kind == "uniform":
            values = rng.random(item.shape)
        elif item.kind == "gamma":
            values = rng.standard_gamma(item.concentration, item.shape)
        else:
            raise ValueError(f"unknown noise kind {item.kind!r} for {name!r}")
        noise[name] = values.astype(dtype)
    return noise
