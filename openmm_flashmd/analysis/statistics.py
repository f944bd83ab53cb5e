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


def statistical_inefficiency(values) -> float:
    """Statistical inefficiency ``g`` of a time series (≥ 1; dimensionless).

    ``g = 1 + 2 Σ_t (1 − t/N) C(t)`` with ``C`` the normalised autocorrelation function,
    summed over lags ``t ≥ 1`` until ``C`` first drops to zero or below (the estimator of
    Chodera et al., J. Chem. Theory Comput. 3, 26 (2007), used by pymbar, here at every lag).
    ``N / g`` is the number of effectively independent samples. A constant series gives 1;
    fewer than 4 samples give NaN.
    """
    values = np.asarray(values, dtype=float).ravel()
    n = values.size
    if n < 4:
        return math.nan
    delta = values - values.mean()
    variance = float(np.mean(delta * delta))
    if variance == 0.0:
        return 1.0
    g = 1.0
    for lag in range(1, n - 1):
        correlation = float(np.mean(delta[:-lag] * delta[lag:])) / variance
        if correlation <= 0.0:
            break
        g += 2.0 * correlation * (1.0 - lag / n)
    return max(g, 1.0)


def standard_error(values) -> float:
    """Standard error of the mean of a correlated time series, in the units of ``values``:
    ``sqrt(var / N · g)`` with ``g`` from :func:`statistical_inefficiency` (NaN below 4 samples)."""
    values = np.asarray(values, dtype=float).ravel()
    g = statistical_inefficiency(values)
    if math.isnan(g):
        return math.nan
    return float(math.sqrt(np.var(values) * g / values.size))
