"""The one place where the core picks a framework: import a twin module only when it is asked for.

``cogmeta`` itself needs neither torch nor jax. Each backend package (``torch_impl``, ``jax_impl``) has
the same modules with the same names; :func:`load_module` returns ``<package>.<module>`` for a backend
name, with an install hint when the framework is missing. ``backend`` conforms to
``cogmeta.contract.Backend``; ``launch.make_trainer(config, checkpoint, devices)`` builds the trainer.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from cogmeta.startup_gc import framework_import

BACKENDS = {"torch": ("torch_impl", "torch"), "jax": ("jax_impl", "jax")}


def load_backend(name: str) -> ModuleType:
    """Return ``torch_impl.backend`` or ``jax_impl.backend`` (see :func:`load_module`)."""
    return load_module(name, "backend")


def load_module(name: str, module: str) -> ModuleType:
    """Return the twin module ``<backend package>.<module>`` of backend ``name``, e.g. ``("jax", "engine")``.

    Raises:
        ValueError: unknown backend name.
        ImportError: the framework is not installed; the message names the extra to install.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(sorted(BACKENDS))}")
    package, extra = BACKENDS[name]
    qualified = f"{package}.{module}"
    try:
        if qualified in sys.modules:
            return sys.modules[qualified]
        # in the ``cogmeta`` command: no full collections over the framework's objects, no IPython imported to learn
        # that no shell runs (``cogmeta.startup_gc``, ``cogmeta.shell_probe``)
        with framework_import():
            return importlib.import_module(qualified)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in ("torch", "jax", "jaxlib", "flax", "optax"):
            raise
        raise missing_framework_error(name, extra) from error


def missing_framework_error(framework: str, extra: str) -> ImportError:
    """The ImportError raised when a backend package is imported without its framework."""
    return ImportError(
        f"the cogmeta {framework} backend needs {framework}, which is not installed. "
        f"Install it with:  pip install 'cogmeta[{extra}]'  (or 'cogmeta[all]' for both backends)"
    )
