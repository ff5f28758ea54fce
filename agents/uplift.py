"""Each policy against a reference policy (best static, the rule): uplift in %, or CNY when % means nothing.

The evaluator's summary carries the paired comparison with its reference (``*_vs_best_static``) and,
once it has them, with the rule (``*_vs_rule``); :func:`comparison` reads those columns. Where a column
is absent (an evaluator without the rule comparison), the same paired percentile bootstrap over seeds is
computed here with ``scipy.stats.bootstrap``.

An uplift is a ratio, ``mean(policy) / mean(reference) - 1``; when the reference earns nothing or less it
has no meaning (a "+50%" on a loss reads as a gain). :func:`format_versus` then shows the paired revenue
difference in CNY per user instead, never a blank.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import DegenerateDataWarning, bootstrap

COLUMNS = ("revenue_diff", "revenue_diff_ci_low", "revenue_diff_ci_high", "uplift", "uplift_ci_low", "uplift_ci_high")
# Where the evaluator puts each comparison, by reference: our column -> candidate summary columns.
_EVALUATOR_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "best_static": {
        "revenue_diff": ("revenue_diff_vs_best_static",),
        "revenue_diff_ci_low": ("revenue_diff_vs_best_static_ci_low", "revenue_diff_ci_low"),
        "revenue_diff_ci_high": ("revenue_diff_vs_best_static_ci_high", "revenue_diff_ci_high"),
        "uplift": ("uplift_vs_best_static",),
        "uplift_ci_low": ("uplift_vs_best_static_ci_low", "uplift_ci_low"),
        "uplift_ci_high": ("uplift_vs_best_static_ci_high", "uplift_ci_high"),
    },
    "rule": {
        "revenue_diff": ("revenue_diff_vs_rule",),
        "revenue_diff_ci_low": ("revenue_diff_vs_rule_ci_low",),
        "revenue_diff_ci_high": ("revenue_diff_vs_rule_ci_high",),
        "uplift": ("uplift_vs_rule",),
        "uplift_ci_low": ("uplift_vs_rule_ci_low",),
        "uplift_ci_high": ("uplift_vs_rule_ci_high",),
    },
}


def comparison(evaluation: Any, reference: str, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per policy (index) against ``reference``: :data:`COLUMNS` plus ``reference_revenue`` (its mean).

    All NaN when ``reference`` was not evaluated.
    """
    summary = evaluation.summary.set_index("policy")
    out = pd.DataFrame(index=summary.index, columns=list(COLUMNS), dtype=float)
    if reference not in summary.index:
        out["reference_revenue"] = float("nan")
        return out
    found = _from_summary(summary, reference)
    if found is not None:
        out[list(COLUMNS)] = found
    else:
        table = evaluation.per_seed.pivot(index="seed", columns="policy", values="per_user_revenue")
        rng = np.random.default_rng(seed)
        for name in table.columns:
            out.loc[name, list(COLUMNS)] = paired(table[name].to_numpy(), table[reference].to_numpy(), rng, n_boot)
    out["reference_revenue"] = float(summary.loc[reference, "per_user_revenue"])
    return out


def _from_summary(summary: pd.DataFrame, reference: str) -> pd.DataFrame | None:
    mapping = _EVALUATOR_COLUMNS.get(reference)
    if mapping is None:
        return None
    picked = {}
    for ours, candidates in mapping.items():
        column = next((c for c in candidates if c in summary.columns), None)
        if column is None:
            return None
        picked[ours] = summary[column].astype(float)
    if summary[picked["revenue_diff"].name].isna().all():  # evaluated with another reference, or none
        return None
    return pd.DataFrame(picked)


def paired(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, n_boot: int = 2000) -> list[float]:
    """Paired difference of means and relative uplift of ``a`` over ``b`` (same seeds), with 95% percentile
    bootstrap intervals (NaN with fewer than two seeds; the uplift is NaN when ``mean(b) <= 0``)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff, ref = float(np.mean(a - b)), float(np.mean(b))
    uplift = diff / ref if ref > 0 else float("nan")
    nan2 = [float("nan"), float("nan")]
    if a.size < 2:
        return [diff, *nan2, uplift, *nan2]
    if np.all(a == b):  # the reference itself: no spread to resample
        return [0.0, 0.0, 0.0, 0.0 if ref > 0 else float("nan"), *((0.0, 0.0) if ref > 0 else nan2)]

    def mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(x - y, axis=axis)

    def ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        ref_mean = np.mean(y, axis=axis)
        return np.where(ref_mean > 0, np.mean(x - y, axis=axis) / np.where(ref_mean > 0, ref_mean, 1.0), np.nan)

    kwargs = {"paired": True, "n_resamples": n_boot, "method": "percentile", "random_state": rng, "vectorized": True}
    diff_ci = bootstrap((a, b), mean_diff, **kwargs).confidence_interval
    if ref <= 0:
        return [diff, float(diff_ci.low), float(diff_ci.high), uplift, *nan2]
    with warnings.catch_warnings():
        # Resamples whose reference mean is not positive have no uplift (NaN), and so has the interval:
        # the uplift is then not estimable over seeds and format_versus shows the CNY difference.
        warnings.simplefilter("ignore", DegenerateDataWarning)
        uplift_ci = bootstrap((a, b), ratio, **kwargs).confidence_interval
    return [diff, float(diff_ci.low), float(diff_ci.high), uplift, float(uplift_ci.low), float(uplift_ci.high)]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_versus(row: Mapping[str, Any], is_reference: bool = False) -> str:
    """One cell: ``+12.3% [+1.0, +20.1]`` when the reference earns more than zero, else the paired
    difference ``+35.2 CNY [+10.0, +60.3]`` (also when some resample of the seeds has the reference at or
    below zero, so the uplift has no interval); ``reference`` for the reference itself; ``n/a`` without one."""
    if is_reference:
        return "reference"
    ref = row.get("reference_revenue", float("nan"))
    if _missing(ref):
        return "n/a"

    def interval(low: Any, high: Any, scale: float) -> str:
        if _missing(low) or _missing(high):
            return ""
        return f" [{scale * low:+.1f}, {scale * high:+.1f}]"

    # A percentage only when it is estimable: the reference earns more than zero, and in every bootstrap
    # resample too when there are intervals (else its interval is NaN while the difference's is not).
    no_uplift_ci = _missing(row.get("uplift_ci_low")) and not _missing(row.get("revenue_diff_ci_low"))
    if ref > 0 and not _missing(row.get("uplift")) and not no_uplift_ci:
        return f"{100 * row['uplift']:+.1f}%" + interval(row.get("uplift_ci_low"), row.get("uplift_ci_high"), 100)
    low, high = row.get("revenue_diff_ci_low"), row.get("revenue_diff_ci_high")
    return f"{row['revenue_diff']:+.1f} CNY" + interval(low, high, 1)
