"""Experiments: framework-free drivers that train with a backend and analyse the results."""
