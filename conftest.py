"""Test-wide settings for tests/ and parity_tests/: numerics pinned so that results mean the same everywhere.

- torch: 1 intra-op thread (reduction order fixed; also the fastest on 2 cores), TF32 off.
- JAX: no GPU memory preallocation (torch and JAX may share a device); float64 via the
  ``jax.enable_x64(True)`` context in the tests that need it.
- No persistent JAX compilation cache (``COGMETA_JAX_CACHE=off``): a test that calls ``cogmeta.cli.main`` before
  JAX is imported would otherwise switch it on for the whole session (every compiled program serialized to
  disk), and no test may read the user's ``~/.cache/cogmeta/jax``; ``tests/test_compilation_cache.py`` sets
  its own.
- One JAX CPU device (``JAX_NUM_CPU_DEVICES=1``): the ``cogmeta`` command asks for one per CPU
  (``cogmeta.host_devices``) when JAX is not imported yet, which would make an in-process test's engine split its
  members over devices or not depending on test order; tests of several devices start a subprocess with their own.
- JAX's global ``jax_enable_x64`` flag is restored after every test: a float64 run config switches it on for
  the whole process (``jax_impl.numerics.configure``), and what a test sees must not depend on which tests ran
  before it in the same process (pytest-xdist hands each worker a different subset and order).
- ``--runslow`` enables tests marked ``slow``.
"""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ["COGMETA_JAX_CACHE"] = "off"
os.environ["JAX_NUM_CPU_DEVICES"] = "1"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


@pytest.fixture(autouse=True)
def _restore_jax_x64():
    """Put ``jax_enable_x64`` back as the test found it (a no-op while JAX is not imported)."""
    jax = sys.modules.get("jax")
    before = None if jax is None else jax.config.jax_enable_x64
    yield
    jax = sys.modules.get("jax")
    if jax is not None and jax.config.jax_enable_x64 != bool(before):
        jax.config.update("jax_enable_x64", bool(before))
