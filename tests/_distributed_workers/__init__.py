"""Scripts that the distributed tests start as subprocesses (simulated JAX devices, torchrun ranks)."""
