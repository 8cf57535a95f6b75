"""A disk cache of :func:`cogmeta.baselines.exact_bayes.posterior_predictive` (numpy only).

The exact reference costs T x B x M evaluations of ``log_ndtr`` (minutes for 1000 held-out tasks at
M = 2^16 on one core) and is a deterministic function of its inputs: the cues, the targets, the
condition, sigma, the target flip, M and the sample seed. Studies that evaluate several trained grids on
the same held-out tasks (both backends, several training lengths) therefore compute it once. The key is
the SHA-256 of all inputs (the arrays' bytes included), so a changed task or sample count can never be
served a stale result; the entry is an ``.npz`` written atomically (temp file, then rename).

Location: ``$COGMETA_CACHE`` if set, else ``$XDG_CACHE_HOME/cogmeta`` (default ``~/.cache/cogmeta``),
subfolder ``exact-bayes``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from cogmeta.baselines.exact_bayes import ExactPredictive, posterior_predictive


def default_cache_dir() -> Path:
    """``$COGMETA_CACHE/exact-bayes``, else ``$XDG_CACHE_HOME/cogmeta/exact-bayes`` (``~/.cache/...``)."""
    root = os.environ.get("COGMETA_CACHE")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cogmeta"
    return Path(root) / "exact-bayes"


def cache_key(cues: Any, targets: Any, condition: str, noise_std: float, flip_targets: bool, num_samples: int,
              seed: int) -> str:
    """SHA-256 (hex) of every input of :func:`posterior_predictive` that changes its output."""
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(cues, np.float64), np.ascontiguousarray(targets, np.float64)):
        digest.update(repr(array.shape).encode())
        digest.update(array.tobytes())
    digest.update(repr((condition, float(noise_std), bool(flip_targets), int(num_samples), int(seed))).encode())
    return digest.hexdigest()


def cached_posterior_predictive(cues: Any, targets: Any, condition: str, noise_std: float = 0.1,
                                flip_targets: bool = False, num_samples: int = 2**16, seed: int = 0,
                                cache_dir: str | os.PathLike | None = None) -> ExactPredictive:
    """:func:`posterior_predictive`, read from ``cache_dir`` (default :func:`default_cache_dir`) when the
    same inputs were computed before, else computed and stored there."""
    from cogmeta.io import atomic_write_with

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{condition}-M{num_samples}-{cache_key(cues, targets, condition, noise_std, flip_targets, num_samples, seed)[:24]}.npz"
    if path.exists():
        with np.load(path) as stored:
            return ExactPredictive(stored["prob"], stored["std_error"], stored["ess"], stored["mean"], num_samples)
    result = posterior_predictive(cues, targets, condition, noise_std, flip_targets, num_samples, seed)
    folder.mkdir(parents=True, exist_ok=True)

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.savez(handle, prob=result.prob, std_error=result.std_error, ess=result.ess, mean=result.mean)

    atomic_write_with(path, write)
    return result
