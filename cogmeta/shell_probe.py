"""The ``cogmeta`` command's framework imports without importing IPython to learn that no IPython shell runs.

Flax asks at import whether its representations may use colour: ``flax.nnx.reprlib.supports_color`` imports
IPython, where it is installed, only to call ``get_ipython()``. Importing IPython takes 0.2-0.25 s (``python -X
importtime``, 2-core VM, 2026-12-07: 215 ms of a ``cogmeta train --backend jax`` process's start-up), and in the
``cogmeta`` command its answer is always "no shell": a console process started by the command runs no IPython
shell, and a process that does has IPython imported already.

So while the command imports a framework (``cogmeta.startup_gc.framework_import``, from
``cogmeta.backends.load_module``) and IPython is not imported, ``import IPython`` raises ImportError (``sys.modules["IPython"] = None``, Python's way to
say a module is absent), which is what such a probe reads as "no shell", the same answer it would get. The entry is
removed afterwards, so a later ``import IPython`` works as usual. Only in the ``cogmeta`` process (the entry
point's ``cogmeta.startup_gc.enable_for_command``); a program that imports ``cogmeta`` as a library is left alone.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

#: The module that start-up probes import to ask whether a shell runs.
SHELL_MODULE = "IPython"

@contextlib.contextmanager
def shell_absent() -> Iterator[None]:
    """Run the body with ``import IPython`` raising ImportError, unless IPython is imported already (then a shell may
    run, and the body sees it as it is)."""
    if SHELL_MODULE in sys.modules:
        yield
        return
    sys.modules[SHELL_MODULE] = None
    try:
        yield
    finally:
        if sys.modules.get(SHELL_MODULE, "") is None:
            del sys.modules[SHELL_MODULE]


__all__ = ["SHELL_MODULE", "shell_absent"]
