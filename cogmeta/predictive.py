"""Predictive families in numpy: log-likelihoods and exact KL divergences used to score models.

A family's parameters are a dict of ``[T, B]`` float arrays:
    gaussian:  {"mean", "std"}   density N(x; mean, std^2)
    bernoulli: {"prob"}          P(x = 1) = prob
Both frameworks' heads convert their raw outputs into these dicts, so scoring is written once here.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

FAMILIES = ("gaussian", "bernoulli")

#: Number of raw outputs the head of each family produces per time step.
OUTPUT_SIZE = {"gaussian": 2, "bernoulli": 1}


def nll(family: str, params: Mapping[str, np.ndarray], targets: np.ndarray) -> np.ndarray:
    """-log q(target), elementwise ``[T, B]`` (targets ``[T, B]`` or ``[T, B, 1]``)."""
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim == 3:
        y = y[..., 0]
    if family == "gaussian":
        mean, std = np.asarray(params["mean"], np.float64), np.asarray(params["std"], np.float64)
        return 0.5 * math.log(2 * math.pi) + np.log(std) + 0.5 * ((y - mean) / std) ** 2
    if family == "bernoulli":
        prob = np.asarray(params["prob"], np.float64)
        return -(y * np.log(prob) + (1 - y) * np.log1p(-prob))
    raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")


def kl_divergence(family: str, p: Mapping[str, np.ndarray], q: Mapping[str, np.ndarray]) -> np.ndarray:
    """Exact KL(p || q) between two predictives of one family, elementwise ``[T, B]``.

    gaussian:  log(s_q / s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2
    bernoulli: p log(p / q) + (1 - p) log((1 - p) / (1 - q))
    """
    if family == "gaussian":
        mp, sp = np.asarray(p["mean"], np.float64), np.asarray(p["std"], np.float64)
        mq, sq = np.asarray(q["mean"], np.float64), np.asarray(q["std"], np.float64)
        return np.log(sq / sp) + (sp**2 + (mp - mq) ** 2) / (2 * sq**2) - 0.5
    if family == "bernoulli":
        pp = np.asarray(p["prob"], np.float64)
        # The model's probability is clipped away from 0 and 1 so that a saturated float32 sigmoid
        # gives a large finite KL instead of inf.
        qq = np.clip(np.asarray(q["prob"], np.float64), 1e-12, 1 - 1e-12)
        with np.errstate(divide="ignore", invalid="ignore"):
            heads = np.where(pp > 0, pp * np.log(pp / qq), 0.0)
            tails = np.where(pp < 1, (1 - pp) * np.log((1 - pp) / (1 - qq)), 0.0)
        return heads + tails
    raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
