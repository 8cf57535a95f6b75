"""The metrics log: a long-format CSV with one row per (step, metric, value).

Long format keeps the file framework-free and trivially loadable (``pandas.read_csv``, R, a
spreadsheet) and lets new metrics appear without changing a header.

Crash safety: rows are appended as they come and fsynced (:meth:`MetricsLog.sync`) before every
checkpoint, so the rows up to a checkpoint's step are on disk whenever the checkpoint is. A process
killed mid-append can leave a torn last line (no newline, or too few fields); resuming drops it with
every row after the checkpoint (:meth:`MetricsLog.truncate_after`).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable

from cogmeta.io import atomic_write_text

HEADER = ("step", "metric", "value")


class MetricsLog:
    """Append-only CSV of ``step,metric,value`` rows."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            self.reset()

    def reset(self) -> None:
        """Start the log again: the header only (atomic)."""
        atomic_write_text(self.path, ",".join(HEADER) + "\n")

    def append(self, rows: Iterable[tuple[int, str, float]]) -> None:
        """Append rows (flushed to the operating system; :meth:`sync` puts them on disk)."""
        rows = list(rows)
        if not rows:
            return
        with open(self.path, "a", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            for step, metric, value in rows:
                writer.writerow((int(step), metric, repr(float(value))))

    def sync(self) -> None:
        """fsync the rows appended so far (called before every checkpoint)."""
        with open(self.path, "ab") as handle:
            os.fsync(handle.fileno())

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` and a torn last line (used on resume: those steps are trained again)."""
        kept = [row for row in read_metrics(self.path, drop_torn=True) if row[0] <= step]
        lines = [",".join(HEADER)] + [f"{s},{m},{v!r}" for s, m, v in kept]
        atomic_write_text(self.path, "\n".join(lines) + "\n")


def read_metrics(path: str | Path, *, drop_torn: bool = False) -> list[tuple[int, str, float]]:
    """All rows of a metrics CSV as ``(step, metric, value)``.

    A malformed row is a ValueError naming the file and line; with ``drop_torn`` a last line that a killed
    write left incomplete (no final newline, or malformed) is skipped instead.
    """
    with open(path, newline="") as handle:
        text = handle.read()
    lines = text.splitlines()
    torn = bool(text) and not text.endswith(("\n", "\r"))
    if not lines or tuple(next(csv.reader([lines[0]]), [])) != HEADER:
        header = next(csv.reader(lines[:1]), None)
        raise ValueError(f"{path} is not a cogmeta metrics log (header {header}, expected {list(HEADER)})")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        last = number == len(lines)
        if drop_torn and last and torn:
            break
        try:
            step, metric, value = next(csv.reader([line]))
            rows.append((int(step), metric, float(value)))
        except (ValueError, StopIteration):
            if drop_torn and last:
                break
            raise ValueError(f"{path}, line {number}: malformed row {line!r} (expected step,metric,value)") from None
    return rows


def metric_series(rows: Iterable[tuple[int, str, float]], metric: str) -> tuple[list[int], list[float]]:
    """Steps and values of one metric."""
    pairs = [(step, value) for step, name, value in rows if name == metric]
    return [p[0] for p in pairs], [p[1] for p in pairs]
