"""cogmeta's JAX/Flax backend: samplers, models and training on the shared task spec.

Module for module it mirrors ``torch_impl``: the same file names, class names and function names, so
the two can be read side by side. Models are ``flax.nnx`` modules that hold PyTorch's exact tensors;
training is a functional core (``nnx.split`` once, pure steps under ``jax.jit`` and ``lax.scan``).
"""

try:
    import flax  # noqa: F401
    import jax  # noqa: F401
    import optax  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised only without jax
    from cogmeta.backends import missing_framework_error

    raise missing_framework_error("JAX", "jax") from error
