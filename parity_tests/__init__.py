"""Cross-framework (PyTorch <-> JAX/Flax) parity tests; a package so its module names cannot clash with tests/."""
