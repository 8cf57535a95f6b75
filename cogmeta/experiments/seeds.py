"""Spread over seeds (or repeats) of a study's numbers: mean, standard error of the mean, range.

Every study command trains several independent seeds and reports each table entry as mean +- sem over
them; a reproduction bar is decided by whether the MEAN lies in its band, with the spread shown beside it.

For values x_1..x_n (n seeds; NaN entries, e.g. a cell where a metric is undefined, are left out):

    mean = (1/n) sum_i x_i
    sem  = sd / sqrt(n),   sd = sqrt(sum_i (x_i - mean)^2 / (n - 1))     (NaN for n = 1: no spread estimate)
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple

import numpy as np


class Spread(NamedTuple):
    """Mean, standard error of the mean, smallest and largest value, and the count n of finite values."""

    mean: float
    sem: float
    low: float
    high: float
    n: int

    def format(self, digits: int = 3) -> str:
        """``mean ± sem`` (just the mean for n = 1; ``-`` for no value)."""
        if self.n == 0:
            return "-"
        if self.n == 1 or not math.isfinite(self.sem):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.sem:.{digits}f}"


def spread(values: Iterable[float]) -> Spread:
    """:class:`Spread` of the finite ``values`` (module doc)."""
    array = np.asarray([float(v) for v in values], np.float64)
    array = array[np.isfinite(array)]
    n = int(array.size)
    if n == 0:
        return Spread(math.nan, math.nan, math.nan, math.nan, 0)
    sem = float(np.std(array, ddof=1) / np.sqrt(n)) if n > 1 else math.nan
    return Spread(float(np.mean(array)), sem, float(np.min(array)), float(np.max(array)), n)

