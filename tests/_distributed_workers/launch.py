"""Start a command in its own process group and kill that whole group if it outlives its timeout.

``torchrun`` starts worker processes of its own; killing only ``torchrun`` on a timeout could leave
them running, so the group is killed (by its id). A timeout fails the test with the output so far.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(command: Sequence[str], timeout: float, env: Mapping[str, str] | None = None) -> tuple[int, str, float]:
    """``(return code, stdout + stderr, seconds)``; raises AssertionError after killing the group on a timeout."""
    full_env = {**os.environ, **(env or {})}
    began = time.perf_counter()
    process = subprocess.Popen(list(command), cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(f"{' '.join(command)} did not finish within {timeout} s (killed); output:\n{output}")
    return process.returncode, output, time.perf_counter() - began


def torchrun(arguments: Sequence[str], nproc: int, timeout: float, env: Mapping[str, str] | None = None):
    """``torchrun --nnodes=1 --nproc-per-node=nproc`` on 127.0.0.1 with a free port; see :func:`run`."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc-per-node={nproc}",
               "--master-addr=127.0.0.1", f"--master-port={free_port()}", *arguments]
    return run(command, timeout, env)
