"""Fresh ``python -c`` processes with the executable store on or off, as the ``cogmeta`` command sets it up (the
tests of ``jax_impl.executable_store`` and ``jax_impl.program_keys``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cogmeta import compilation_cache


def run(script: str, environ: dict, *args: str) -> dict:
    """Run ``script`` with ``args`` in a fresh interpreter; the JSON object its last line of output prints."""
    done = subprocess.run([sys.executable, "-c", script, *args], env=environ, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def environment(tmp_path, store: bool) -> dict:
    """This process's environment less JAX's and cogmeta's settings, then what the ``cogmeta`` command sets before it
    imports JAX: the compilation cache and the store in ``tmp_path/cache`` (or both off), two host devices."""
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith(("JAX_", "COGMETA_", "XLA_"))}
    environ["COGMETA_JAX_CACHE"] = str(tmp_path / "cache") if store else "off"
    with pytest.MonkeyPatch.context() as patch:  # what the ``cogmeta`` command does before it imports JAX
        patch.delitem(sys.modules, "jax", raising=False)
        compilation_cache.enable_for_command(environ)
    assert (compilation_cache.STORE_VARIABLE in environ) == store
    environ["JAX_NUM_CPU_DEVICES"] = "2"
    return environ
