"""Import a framework backend only when it is asked for.

``cogmeta`` itself needs neither torch nor jax. Each backend package (``torch_impl``, ``jax_impl``)
exposes the same module ``backend`` with:

    Trainer(config, checkpoint=None)   .step, .chunk_size, .run(n) -> StepMetrics,
                                       .checkpoint() -> Checkpoint, .weights() -> dict,
                                       .predictive(observations) -> predictive params dict
    predict(config, weights, observations) -> predictive params dict (numpy float64, [T, B])
    init_weights(config, seed) -> dict of canonical numpy arrays
"""

from __future__ import annotations

import importlib
from types import ModuleType

BACKENDS = {"torch": ("torch_impl", "torch"), "jax": ("jax_impl", "jax")}


def load_backend(name: str) -> ModuleType:
    """Return ``torch_impl.backend`` or ``jax_impl.backend``.

    Raises:
        ValueError: unknown backend name.
        ImportError: the framework is not installed; the message names the extra to install.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(sorted(BACKENDS))}")
    package, _ = BACKENDS[name]
    return importlib.import_module(f"{package}.backend")


def missing_framework_error(framework: str, extra: str) -> ImportError:
    """The ImportError raised when a backend package is imported without its framework."""
    return ImportError(
        f"the cogmeta {framework} backend needs {framework}, which is not installed. "
        f"Install it with:  pip install 'cogmeta[{extra}]'  (or 'cogmeta[all]' for both backends)"
    )
