"""The ``cogmeta`` command's persistent JAX compilation cache (``cogmeta.compilation_cache``).

Where the cache goes (``COGMETA_JAX_CACHE``), that a user's own JAX setting and an already imported JAX
are left alone, and, end to end, that a second process reads the executables the first one wrote and
trains to bit-identical weights (a cache that changed results would be worse than none).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cogmeta import compilation_cache


def test_cache_directory_default_path_and_off(tmp_path):
    assert compilation_cache.cache_directory({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "cogmeta" / "jax"
    assert compilation_cache.cache_directory({"COGMETA_JAX_CACHE": str(tmp_path / "c")}) == tmp_path / "c"
    for off in ("off", "OFF", "0", "none"):
        assert compilation_cache.cache_directory({"COGMETA_JAX_CACHE": off}) is None


def test_enable_sets_jax_environment_only_before_jax_is_imported(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    environ = {"COGMETA_JAX_CACHE": str(tmp_path)}
    assert compilation_cache.enable_for_command(environ) == tmp_path
    assert environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path)
    assert environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    assert int(environ["JAX_COMPILATION_CACHE_MAX_SIZE"]) == compilation_cache.MAX_BYTES

    mine = {"COGMETA_JAX_CACHE": str(tmp_path), "JAX_COMPILATION_CACHE_DIR": "/users/own"}
    assert compilation_cache.enable_for_command(mine) is None
    assert mine["JAX_COMPILATION_CACHE_DIR"] == "/users/own" and "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in mine

    off = {"COGMETA_JAX_CACHE": "off"}
    assert compilation_cache.enable_for_command(off) is None and "JAX_COMPILATION_CACHE_DIR" not in off

    monkeypatch.setitem(sys.modules, "jax", object())  # JAX read its environment already: nothing to set
    late = {"COGMETA_JAX_CACHE": str(tmp_path)}
    assert compilation_cache.enable_for_command(late) is None and "JAX_COMPILATION_CACHE_DIR" not in late


@pytest.mark.jax
def test_a_second_process_reads_the_cache_and_trains_the_same_weights(tmp_path):
    pytest.importorskip("jax")
    from safetensors.numpy import load_file

    cache = tmp_path / "cache"
    environ = {key: value for key, value in os.environ.items() if not key.startswith("JAX_")}
    environ["COGMETA_JAX_CACHE"] = str(cache)

    def train(name: str) -> dict[str, np.ndarray]:
        out = tmp_path / name
        command = [sys.executable, "-m", "cogmeta", "train", "--task", "gaussian", "--backend", "jax", "--steps", "20",
                   "--steps-per-call", "10", "--eval-every", "20", "--eval-tasks", "50", "--summary-tasks", "0",
                   "--no-figures", "--no-progress", "--out", str(out)]
        done = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return load_file(out / "weights.safetensors")

    cold = train("cold")
    written = sorted(path.name for path in cache.iterdir())
    assert written, "the first process wrote no compiled programs into the cache"
    warm = train("warm")
    assert sorted(path.name for path in cache.iterdir()) == written, "the second process compiled something new"
    assert cold.keys() == warm.keys()
    for name in cold:
        np.testing.assert_array_equal(cold[name], warm[name], err_msg=name)
    assert Path(compilation_cache.cache_directory(environ)) == cache
