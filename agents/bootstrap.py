"""Confidence intervals over evaluation seeds: BCa bootstrap from ``scipy.stats.bootstrap``.

The unit of resampling is the seed: accounts within a seed share one macro path, so resampling accounts
would understate the spread. Differences between two policies are *paired* (the same resampled seeds for
both, ``paired=True``), which is what common random numbers buy.

Edge cases are answered here rather than left to scipy's warnings:

- one seed (or none): no spread to resample, the interval is NaN;
- all values equal (a degenerate sample, e.g. a policy compared with itself): the interval is the value;
- a bootstrap distribution so narrow that BCa's bias correction is undefined: the percentile interval of
  the same resamples.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats

LEVEL = 0.95  # coverage of every interval the evaluator reports


def mean_intervals(
    values: np.ndarray, rng: np.random.Generator, n_boot: int = 2000, level: float = LEVEL
) -> tuple[np.ndarray, np.ndarray]:
    """BCa intervals of the mean of each row of ``values`` (shape (quantities, seeds)); NaNs are left out.

    Returns:
        ``(low, high)``, arrays of one value per row.
    """
    x = np.atleast_2d(np.asarray(values, dtype=np.float64))
    low, high = np.full(len(x), np.nan), np.full(len(x), np.nan)
    complete = ~np.isnan(x).any(axis=1)
    for row in np.flatnonzero(~complete):  # rare: a segment with no accounts on some seed
        (low[row],), (high[row],) = mean_intervals(x[row, ~np.isnan(x[row])][None, :], rng, n_boot, level)
    if x.shape[1] < 2 or not complete.any():
        return low, high
    rows = np.flatnonzero(complete)
    low[rows], high[rows] = _interval((x[rows],), _mean, np.ptp(x[rows], axis=1) == 0, rng, n_boot, level)
    return low, high


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, rng: np.random.Generator, n_boot: int = 2000, level: float = LEVEL
) -> tuple[float, float]:
    """BCa confidence interval of the mean of ``values`` (NaN, NaN with fewer than two).

    Args:
        values: one number per independent unit (here: per seed).
        rng: the generator the resamples come from (seed it for reproducible intervals).
        n_boot: bootstrap resamples.
        level: coverage, e.g. 0.95.
    """
    low, high = mean_intervals(np.asarray(values, dtype=np.float64).reshape(1, -1), rng, n_boot, level)
    return float(low[0]), float(high[0])


class PairedDifference(NamedTuple):
    """``a`` against reference ``b`` on the same seeds: mean difference and relative uplift, with CIs."""

    difference: float  # mean(a) - mean(b)
    difference_ci: tuple[float, float]
    uplift: float  # mean(a) / mean(b) - 1, NaN when mean(b) <= 0
    uplift_ci: tuple[float, float]


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    rng: np.random.Generator,
    n_boot: int = 2000,
    level: float = LEVEL,
) -> PairedDifference:
    """Paired BCa bootstrap of ``a`` against ``b``: every resample takes the same seeds from both.

    The uplift is a ratio of means, undefined (NaN, and so is its interval) when the reference's mean is
    not positive; a resample whose reference mean is not positive has no uplift either, so its interval
    is NaN whenever that can happen. The difference [same unit as ``a``] is always defined.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"paired samples need two equal-length non-empty 1-d arrays, got {x.shape} and {y.shape}")
    nan2 = (float("nan"), float("nan"))
    difference = float(np.mean(x) - np.mean(y))
    ref = float(np.mean(y))
    uplift = float(np.mean(x) / ref - 1) if ref > 0 else float("nan")
    if x.size < 2:
        return PairedDifference(difference, nan2, uplift, nan2)
    difference_ci = _pair(x, y, _difference, rng, n_boot, level)
    uplift_ci = _pair(x, y, _uplift, rng, n_boot, level) if ref > 0 else nan2
    return PairedDifference(difference, difference_ci, uplift, uplift_ci)


# -- statistics (vectorised over the last axis, as scipy calls them) ----------------------------------------
def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def _difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def _uplift(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    ref = np.mean(b, axis=axis)
    safe = np.where(ref > 0, ref, 1.0)
    return np.where(ref > 0, np.mean(a, axis=axis) / safe - 1, np.nan)


def _pair(
    x: np.ndarray, y: np.ndarray, statistic: Callable, rng: np.random.Generator, n_boot: int, level: float
) -> tuple[float, float]:
    # Constant across resamples: a constant difference for the difference; for the uplift, a policy
    # against itself or two constant samples.
    if statistic is _difference:
        degenerate = np.ptp(x - y) == 0
    else:
        degenerate = bool(np.array_equal(x, y) or (np.ptp(x) == 0 and np.ptp(y) == 0))
    low, high = _interval((x[None, :], y[None, :]), statistic, np.array([degenerate]), rng, n_boot, level)
    return float(low[0]), float(high[0])


def _interval(
    samples: tuple[np.ndarray, ...],
    statistic: Callable,
    degenerate: np.ndarray,
    rng: np.random.Generator,
    n_boot: int,
    level: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.stats.bootstrap`` (BCa) on rows of shape (k, seeds), paired across samples; a row whose
    statistic cannot move under resampling (``degenerate``) gets the interval [value, value]."""
    value = np.asarray(statistic(*samples), dtype=np.float64)
    low, high = value.copy(), value.copy()
    todo = ~degenerate
    if not todo.any():
        return low, high
    data = tuple(s[todo] for s in samples)
    common = dict(confidence_level=level, paired=len(samples) > 1, vectorized=True, axis=-1, rng=rng)
    with warnings.catch_warnings():
        # BCa on a nearly constant bootstrap distribution warns and returns NaN: handled below.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.bootstrap(data, statistic, n_resamples=n_boot, method="BCa", **common)
        lo = np.array(result.confidence_interval.low, dtype=np.float64).reshape(-1)
        hi = np.array(result.confidence_interval.high, dtype=np.float64).reshape(-1)
        undefined = np.isnan(lo) | np.isnan(hi)
        if undefined.any():  # the percentile interval of the same resamples (no new draws)
            pct = stats.bootstrap(
                data, statistic, n_resamples=0, method="percentile", bootstrap_result=result, **common
            )
            lo = np.where(undefined, np.asarray(pct.confidence_interval.low).reshape(-1), lo)
            hi = np.where(undefined, np.asarray(pct.confidence_interval.high).reshape(-1), hi)
    low[todo], high[todo] = lo, hi
    return low, high
