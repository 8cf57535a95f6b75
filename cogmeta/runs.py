"""The run folder: everything a training run writes, at fixed names.

    RUN/config.json            the RunConfig (JSON)
    RUN/weights.safetensors    final weights, canonical names (load in either framework)
    RUN/checkpoint.safetensors last good training state (weights + Adam state + step); the step-0 state is
                               written before training starts, so every run folder can be resumed
    RUN/metrics.csv            long-format metrics log
    RUN/evaluation-<backend>.csv, RUN/figures/*.png
    RUN/.lock, RUN/.lock.pid   the writer's exclusive lock and who holds it (:func:`lock_folder`)

One process writes a folder at a time: training, resuming and sweeping hold ``RUN/.lock`` (an OS file
lock from ``filelock``, released by the operating system when the process ends, however it ends) while
they write, and record their process id in ``RUN/.lock.pid``. A second writer fails at once with
:class:`RunFolderLockedError`, which names the folder and the holder's process id.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cogmeta.io import atomic_write_text, remove_stale_temporaries

LOCK_NAME = ".lock"
HOLDER_NAME = ".lock.pid"


class RunFolderLockedError(RuntimeError):
    """Another process holds the run folder's lock (it is training, resuming or sweeping into it)."""


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run folder."""

    root: Path

    @classmethod
    def at(cls, path: str | Path) -> "RunDir":
        return cls(Path(path))

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def weights(self) -> Path:
        return self.root / "weights.safetensors"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.safetensors"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def lock(self) -> Path:
        return self.root / LOCK_NAME

    @property
    def lock_holder(self) -> Path:
        return self.root / HOLDER_NAME

    def evaluation(self, backend: str) -> Path:
        return self.root / f"evaluation-{backend}.csv"

    def writing(self) -> contextlib.AbstractContextManager["RunDir"]:
        """Hold this folder's exclusive lock while writing it (:func:`lock_folder`)."""
        return lock_folder(self.root, subfolders=(self.figures.name,))

    def require_run(self) -> None:
        """Raise a FileNotFoundError that says what is missing, unless this is a finished run."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"run folder {self.root} does not exist")
        if not self.config.is_file():
            raise FileNotFoundError(f"{self.root} is not a cogmeta run folder: {self.config.name} is missing")
        if not self.weights.is_file():
            hint = " (training did not finish; continue it with `cogmeta train --resume`)" if self.checkpoint.is_file() else ""
            raise FileNotFoundError(f"{self.root} has no {self.weights.name}{hint}")


@contextlib.contextmanager
def lock_folder(folder: str | Path, *, subfolders: tuple[str, ...] = ()) -> Iterator[Path]:
    """Hold ``folder``'s exclusive writer lock (created with the folder if need be) for the ``with`` block.

    While holding it, ``folder/.lock.pid`` names this process; on entry the temporary files that killed
    atomic writes left in ``folder`` (and its ``subfolders``) are removed. A lock whose holder died is free:
    the operating system released it with the process, and the next writer takes it over (its stale
    ``.lock.pid`` is overwritten).

    Raises:
        RunFolderLockedError: another process holds the lock; the message names the folder and that
            process's id (from ``.lock.pid``).
    """
    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise locked_error(folder) from None
    holder = folder / HOLDER_NAME
    try:
        for path in (folder, *(folder / name for name in subfolders)):
            remove_stale_temporaries(path)
        atomic_write_text(holder, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                              "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
        yield folder
    finally:
        with contextlib.suppress(OSError):
            holder.unlink()
        lock.release()


def folder_holder(folder: str | Path) -> str | None:
    """Who holds ``folder``'s writer lock right now ("process 123 on host h since ..."), or None if nobody does.

    Tries the lock without waiting (and releases it at once), so it is only a snapshot.
    """
    from filelock import FileLock, Timeout

    path = Path(folder) / LOCK_NAME
    if not path.is_file():
        return None
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return _holder_description(Path(folder))
    except OSError:
        return None
    lock.release()
    return None


def _holder_description(folder: Path) -> str:
    try:
        record = json.loads((folder / HOLDER_NAME).read_text())
        text = f"process {int(record['pid'])}"
        if record.get("host") and record["host"] != socket.gethostname():
            text += f" on host {record['host']}"
        if record.get("since"):
            text += f" (since {record['since']})"
        return text
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its id is not recorded yet)"


def locked_error(folder: str | Path, holder: str | None = None) -> RunFolderLockedError:
    """The error for a folder whose lock ``holder`` (default: read from ``.lock.pid``) holds."""
    folder = Path(folder)
    holder = holder or _holder_description(folder)
    return RunFolderLockedError(
        f"run folder {folder} is in use: {holder} holds its lock {folder / LOCK_NAME} (training, resuming or "
        f"sweeping into it). Wait for it to finish or stop it, or choose another folder.")
