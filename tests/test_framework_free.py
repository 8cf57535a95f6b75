"""`import cogmeta` works without torch and jax, and a missing backend names the extra to install.

Runs in a subprocess whose import system refuses torch, jax, flax and optax, as in an environment where
only the core (`pip install cogmeta`) is installed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys, importlib.abc

    class RefuseFrameworks(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("torch", "jax", "jaxlib", "flax", "optax", "chex"):
                raise ImportError(f"No module named {name!r}")

    sys.meta_path.insert(0, RefuseFrameworks())
    import cogmeta, cogmeta.cli, cogmeta.evaluation, cogmeta.figures, cogmeta.training, cogmeta.weights
    from cogmeta.backends import load_backend
    for backend, extra in (("torch", "cogmeta[torch]"), ("jax", "cogmeta[jax]")):
        try:
            load_backend(backend)
        except ImportError as error:
            assert extra in str(error), error
        else:
            raise AssertionError(f"{backend} backend imported without its framework")
    assert not any(name.split(".")[0] in ("torch", "jax") for name in sys.modules)
    print("framework-free")
    """
)


def test_core_imports_without_frameworks():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "framework-free" in result.stdout


def test_cli_reports_a_missing_framework(tmp_path):
    script = SCRIPT.split("import cogmeta,")[0] + textwrap.dedent(
        f"""
        from cogmeta.cli import main
        code = main(["train", "--backend", "jax", "--out", r"{tmp_path / 'run'}", "--steps", "1", "--no-progress"])
        sys.exit(code)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "pip install 'cogmeta[jax]'" in result.stderr
