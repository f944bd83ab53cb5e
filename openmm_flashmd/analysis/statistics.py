"""Error bars for time series of correlated samples (plain functions over arrays)."""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np


def block_average(values, blocks: int = 4) -> Tuple[float, float]:
    """Mean and standard error of a time series from ``blocks`` contiguous block means.

    The series is cut into ``blocks`` nearly equal contiguous parts (``numpy.array_split``);
    the standard error is ``std(block means, ddof=1) / sqrt(blocks)``, which accounts for
    correlation between neighbouring samples as long as each block is much longer than
    the correlation time. Units are those of ``values``. The error is NaN when the series
    has fewer than ``blocks`` samples or ``blocks < 2``; both are NaN for an empty series.
    """
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0:
        return math.nan, math.nan
    mean = float(values.mean())
    blocks = int(blocks)
    if blocks < 2 or values.size < blocks:
        return mean, math.nan
    means = np.array([part.mean() for part in np.array_split(values, blocks)])
    return mean, float(np.std(means, ddof=1) / math.sqrt(blocks))
