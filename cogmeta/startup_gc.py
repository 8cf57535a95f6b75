"""The ``cogmeta`` command's start-up without Python's full garbage collections over the frameworks' objects.

Importing PyTorch or JAX and Flax creates about a million Python objects, nearly all of them alive until the
process ends (modules, functions, classes, registries). CPython's cyclic collector runs a full (generation 2)
collection several times while they are created, each walking every tracked object: a ``cogmeta train --until-kl
0.001`` process ran four, of 25-130 ms each, ~0.3 s in all, three while importing and one later in the run
(``gc.callbacks``, 2-core VM, 2026-12-07; docs/performance.md, "Start-up without full collections").

So the command pauses the collector while it imports its own modules and, on first use, a framework's
(:func:`framework_import`, from ``cogmeta.backends.load_module``), and then moves everything alive into the
permanent generation (``gc.freeze``): later collections walk only what the run itself creates. This is what the
``gc.freeze`` documentation describes for long-lived start-up state. Objects frozen there are never collected,
so it happens only at those imports and only in the ``cogmeta`` process (:func:`enable_for_command`, from its
entry point); a program that imports ``cogmeta`` as a library keeps Python's default behaviour. The command's
framework import also hides IPython from Flax's colour probe (``cogmeta.shell_probe``).
"""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator

from cogmeta.shell_probe import shell_absent

_for_command = False


def enable_for_command() -> None:
    """Let :func:`framework_import` pause and freeze, and hide IPython (the ``cogmeta`` entry point calls this)."""
    global _for_command
    _for_command = True


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Run the body with the cyclic collector off, then freeze what is alive and turn the collector back on (a
    no-op where it was off already, e.g. nested or turned off by the caller)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


@contextlib.contextmanager
def framework_import() -> Iterator[None]:
    """In the ``cogmeta`` command, :func:`collector_paused` and ``cogmeta.shell_probe.shell_absent`` (no IPython
    imported only to learn that no shell runs); nothing elsewhere."""
    if not _for_command:
        yield
        return
    with collector_paused(), shell_absent():
        yield


__all__ = ["collector_paused", "enable_for_command", "framework_import"]
