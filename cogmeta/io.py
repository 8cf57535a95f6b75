"""Atomic file writes: write a temporary file beside the target, flush it to disk, then rename.

``os.replace`` is atomic on POSIX and Windows, so a reader (or a crash) sees either the old file or
the complete new one, never a partial write. After the rename the folder itself is fsynced (POSIX), so
the new directory entry survives a power loss too. A process killed mid-write leaves its temporary
file (``.<name>.<random>.tmp``) behind; :func:`remove_stale_temporaries` deletes them when a run folder is
next opened for writing (``cogmeta.runs.lock_folder``).

Safetensors files written here carry :data:`DIGEST_KEY` in their metadata: the SHA-256 of their tensors
(:func:`tensors_digest`), which ``cogmeta.weights.read_safetensors`` checks on every load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

#: Metadata key of the tensors' SHA-256 in every safetensors file cogmeta writes.
DIGEST_KEY = "sha256"
#: Glob of the temporary files of :func:`atomic_path` (``.<name>.<random>.tmp``).
TEMPORARY_GLOB = ".*.tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``path`` and fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
        fsync_folder(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def fsync_folder(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the ``.<name>.<random>.tmp`` files that killed atomic writes left in ``folder``; return them.

    Call it only while no other process writes to ``folder`` (under the run folder's lock).
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for tmp in sorted(folder.glob(TEMPORARY_GLOB)):
        if tmp.is_file() and not tmp.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def tensors_digest(tensors: Mapping[str, np.ndarray]) -> str:
    """SHA-256 (hex) of named tensors, independent of the file layout.

    The tensors are taken in name order; each contributes a line ``name<TAB>dtype<TAB>shape<TAB>nbytes``
    and then its bytes in C order, little-endian (the safetensors byte order).
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        shape = ",".join(str(size) for size in array.shape)
        digest.update(f"{name}\t{array.dtype.name}\t{shape}\t{array.nbytes}\n".encode())
        digest.update(array.reshape(-1).view(np.uint8) if array.size else b"")
    return digest.hexdigest()


def atomic_save_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> None:
    """Save numpy arrays with ``safetensors.numpy.save_file`` atomically, their SHA-256 in the metadata."""
    from safetensors.numpy import save_file

    arrays = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    metadata = dict(metadata or {})
    if DIGEST_KEY in metadata:
        raise ValueError(f"metadata key {DIGEST_KEY!r} is reserved for the tensors' SHA-256")
    metadata[DIGEST_KEY] = tensors_digest(arrays)
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata=metadata)


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and rename the result onto ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)
