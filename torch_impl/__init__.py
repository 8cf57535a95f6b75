"""cogmeta's PyTorch backend: samplers, models and training on the shared task spec.

Module for module it mirrors ``jax_impl``: the same file names, class names and function names, so
the two can be read side by side.
"""

try:
    import torch  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised only without torch
    from cogmeta.backends import missing_framework_error

    raise missing_framework_error("PyTorch", "torch") from error
