"""JAX's persistent compilation cache for the ``cogmeta`` command: compile a program once per machine, not per run.

A JAX command spends most of a short run compiling: at the README's main size the 100-step training
program, the held-out forward pass and the eager operations of initialisation take about 4.4 s of XLA
compilation, against about 0.4 s of optimizer work (docs/performance.md, "Time to quality"). XLA can
write every compiled executable to disk, keyed by its HLO, the compile options and the JAX and XLA
versions, and read it back in a later process instead of compiling again, so the second run of a
command starts training almost at once. PyTorch compiles nothing here, so this is JAX's alone.

The ``cogmeta`` command turns the cache on before JAX is imported by setting JAX's own environment
variables (``JAX_COMPILATION_CACHE_DIR`` and friends), so that library code never changes JAX's global
configuration behind a caller's back. ``COGMETA_JAX_CACHE`` chooses:

    unset           ``$XDG_CACHE_HOME/cogmeta/jax`` (``~/.cache/cogmeta/jax``)
    a path          that folder
    ``off``         no persistent cache (every process compiles afresh)

A ``JAX_COMPILATION_CACHE_DIR`` already in the environment wins (the user configured JAX directly).
The cache keeps at most :data:`MAX_BYTES` (JAX evicts the least recently used entries) and every
program, however short its compilation (the eager operations of initialisation add up).

The same folder's ``executables/`` holds the executable store of the training programs
(``jax_impl.executable_store``: found by a key computed without tracing, so a warm run skips tracing and
lowering as well); :data:`STORE_VARIABLE` names it, and it is on and off with the cache.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import MutableMapping

#: The environment variable that chooses the cache folder, or ``off``.
ENVIRONMENT_VARIABLE = "COGMETA_JAX_CACHE"
#: The environment variable of the executable store's folder (``jax_impl.executable_store`` reads it).
STORE_VARIABLE = "COGMETA_EXECUTABLE_STORE"
#: The cache's size limit, bytes (least recently used entries are evicted beyond it).
MAX_BYTES = 1 << 30
_OFF = {"off", "0", "false", "no", "none"}


def cache_directory(environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """The folder ``COGMETA_JAX_CACHE`` chooses (module docstring), or None when it says ``off``."""
    value = environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if value.lower() in _OFF:
        return None
    if value:
        return Path(value).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "cogmeta" / "jax"


def enable_for_command(environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """Point JAX's persistent cache at :func:`cache_directory` through JAX's environment variables.

    Returns the folder in use, or None: when the cache is off, when the user set ``JAX_COMPILATION_CACHE_DIR``
    (left as it is), or when JAX was imported already (it read its environment then; a process that
    imports JAX itself configures JAX itself, e.g. ``jax.config.update("jax_compilation_cache_dir", ...)``).
    With the folder it also sets :data:`STORE_VARIABLE` to its ``executables/`` (unless set already).
    """
    if "jax" in sys.modules or "JAX_COMPILATION_CACHE_DIR" in environ:
        return None
    directory = cache_directory(environ)
    if directory is None:
        return None
    environ["JAX_COMPILATION_CACHE_DIR"] = str(directory)
    environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
    environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(MAX_BYTES))
    environ.setdefault(STORE_VARIABLE, str(directory / "executables"))
    return directory


__all__ = ["ENVIRONMENT_VARIABLE", "MAX_BYTES", "STORE_VARIABLE", "cache_directory", "enable_for_command"]
