"""cogmeta's JAX/Flax backend: samplers, models and training on the shared task spec.

Module for module it mirrors ``torch_impl``: the same file names, class names and function names, so
the two can be read side by side. Models are ``flax.nnx`` modules that hold PyTorch's exact tensors;
training is a functional core (``nnx.split`` once, pure steps under ``jax.jit`` and ``lax.scan``).
"""

import importlib.util


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # an import hook that refuses the module
        return False


# Installed, not imported: importing Flax here (0.2-0.5 s) would come before any module of the package, and
# ``jax_impl.program_keys`` starts loading a run's programs with JAX alone, while Flax is still being imported.
if not all(_installed(name) for name in ("flax", "jax", "optax")):  # pragma: no cover - exercised only without jax
    from cogmeta.backends import missing_framework_error

    raise missing_framework_error("JAX", "jax")
