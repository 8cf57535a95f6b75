"""How the ``cogmeta`` process ends: its exit handlers run, then it leaves without the interpreter's teardown.

After a command has returned, every file it wrote is complete (written, then renamed) and every worker joined;
what is left is CPython's finalization: deallocating ~1,800 modules and running the destructors of XLA's and
libtorch's clients and thread pools. Measured on the 2-core VM (whole processes, ``/usr/bin/time``): 0.6-0.8 s
of a ``cogmeta train --until-kl 0.001`` run (JAX: 3.1 s to the end of ``main``, 3.95 s to exit) and 0.8 s of a
bare ``import torch``: a fifth of a quick run, spent after the last line is printed. :func:`exit_process` runs
the ``atexit`` handlers (JAX's distributed shutdown, logging, multiprocessing's joins, coverage's data file),
flushes the standard streams and calls ``os._exit``.

It falls back to a normal ``sys.exit`` when skipping the teardown could lose something: a profiler or tracer
is active (``python -m cProfile -m cogmeta`` writes its statistics after the module returns), another
non-daemon thread is alive (the interpreter would wait for it), or ``COGMETA_FULL_EXIT=1`` asks for it.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn

#: Set to 1 to let the interpreter finalize normally (for tools that hook interpreter teardown).
FULL_EXIT_VARIABLE = "COGMETA_FULL_EXIT"


def fast_exit_allowed() -> bool:
    """Whether :func:`exit_process` may skip the interpreter's teardown (see the module docstring)."""
    if os.environ.get(FULL_EXIT_VARIABLE, "").strip() not in ("", "0"):
        return False
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return False
    monitoring = getattr(sys, "monitoring", None)  # Python >= 3.12: coverage and profilers register as tools
    if monitoring is not None and any(monitoring.get_tool(tool) is not None for tool in range(6)):
        return False
    main = threading.main_thread()
    return not any(thread is not main and not thread.daemon and thread.is_alive() for thread in threading.enumerate())


def exit_process(code: int | None) -> NoReturn:
    """End the process with exit status ``code`` (None: 0): ``atexit`` handlers, flushed streams, ``os._exit``;
    or ``sys.exit(code)`` where :func:`fast_exit_allowed` says no."""
    code = 0 if code is None else int(code)
    if not fast_exit_allowed():
        sys.exit(code)
    atexit._run_exitfuncs()  # CPython's own entry point for the handlers it would run at shutdown
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code)
