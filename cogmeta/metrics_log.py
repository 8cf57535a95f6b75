"""The metrics log: a long-format CSV with one row per (step, metric, value).

Long format keeps the file framework-free and trivially loadable (``pandas.read_csv``, R, a
spreadsheet) and lets new metrics appear without changing a header.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

from cogmeta.io import atomic_write_text

HEADER = ("step", "metric", "value")


class MetricsLog:
    """Append-only CSV of ``step,metric,value`` rows."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            atomic_write_text(self.path, ",".join(HEADER) + "\n")

    def append(self, rows: Iterable[tuple[int, str, float]]) -> None:
        """Append rows and flush them to disk."""
        rows = list(rows)
        if not rows:
            return
        with open(self.path, "a", newline="") as handle:
            writer = csv.writer(handle)
            for step, metric, value in rows:
                writer.writerow((int(step), metric, repr(float(value))))

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (used on resume: those steps are trained again)."""
        kept = [row for row in read_metrics(self.path) if row[0] <= step]
        lines = [",".join(HEADER)] + [f"{s},{m},{v!r}" for s, m, v in kept]
        atomic_write_text(self.path, "\n".join(lines) + "\n")


def read_metrics(path: str | Path) -> list[tuple[int, str, float]]:
    """All rows of a metrics CSV as ``(step, metric, value)``."""
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if tuple(header or ()) != HEADER:
            raise ValueError(f"{path} is not a cogmeta metrics log (header {header}, expected {list(HEADER)})")
        return [(int(step), metric, float(value)) for step, metric, value in reader]


def metric_series(rows: Iterable[tuple[int, str, float]], metric: str) -> tuple[list[int], list[float]]:
    """Steps and values of one metric."""
    pairs = [(step, value) for step, name, value in rows if name == metric]
    return [p[0] for p in pairs], [p[1] for p in pairs]
