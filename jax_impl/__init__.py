"""cogmeta's JAX/Flax backend: samplers, models and training on the shared task spec.

Module for module it mirrors ``torch_impl``: the same file names, class names and function names, so
the two can be read side by side. Models are ``flax.nnx`` modules that hold PyTorch's exact tensors;
training is a functional core (``nnx.split`` once, pure steps under ``jax.jit`` and ``lax.scan``).
"""

import importlib.util

# Installed, not imported: importing Flax here (0.2-0.5 s) would come before any module of the package, and
# ``jax_impl.program_keys`` starts loading a run's programs with JAX alone, while Flax is still being imported.
if any(importlib.util.find_spec(name) is None for name in ("flax", "jax", "optax")):  # pragma: no cover - without jax
    from cogmeta.backends import missing_framework_error

    raise missing_framework_error("JAX", "jax")
