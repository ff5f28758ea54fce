"""Each policy against a reference policy (best static, the rule), read from the evaluator's summary.

:func:`agents.evaluation.evaluate` computes the paired comparisons itself (BCa over seeds,
``agents.bootstrap``): ``*_vs_best_static`` against its ``reference`` and ``*_vs_rule`` against its ``rule``,
and ``comparison_vs_*`` names the one a table should show. :func:`comparison` only renames those columns
to one layout for both references; nothing is recomputed here. :func:`change_from_base` is the one
comparison the evaluator has no notion of: the same policy under two configs on the same seeds.

An uplift is a ratio, ``mean(policy) / mean(reference) - 1``; when the reference earns nothing or less on
some seed it has no meaning (a "+50%" on a loss reads as a gain). :func:`format_versus` then shows the
paired revenue difference in CNY per user instead, never a blank.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from agents.bootstrap import paired_difference

COLUMNS = ("revenue_diff", "revenue_diff_ci_low", "revenue_diff_ci_high", "uplift", "uplift_ci_low", "uplift_ci_high")
# The evaluator's summary columns of each reference, in the order of COLUMNS, then which one to show.
EVALUATOR_COLUMNS: dict[str, tuple[str, ...]] = {
    "best_static": (
        "revenue_diff_vs_best_static",
        "revenue_diff_ci_low",
        "revenue_diff_ci_high",
        "uplift_vs_best_static",
        "uplift_ci_low",
        "uplift_ci_high",
        "comparison_vs_best_static",
    ),
    "rule": (
        "revenue_diff_vs_rule",
        "revenue_diff_vs_rule_ci_low",
        "revenue_diff_vs_rule_ci_high",
        "uplift_vs_rule",
        "uplift_vs_rule_ci_low",
        "uplift_vs_rule_ci_high",
        "comparison_vs_rule",
    ),
}


def comparison(summary: pd.DataFrame, reference: str, reference_policy: str | None = None) -> pd.DataFrame:
    """Per policy (index) the evaluator's comparison with ``reference`` (``"best_static"`` or ``"rule"``, the
    evaluator's two roles): :data:`COLUMNS`, ``shown`` (``uplift`` / ``revenue_diff``, or None) and
    ``reference_revenue`` (the reference policy's mean revenue, NaN when it was not evaluated).

    Args:
        summary: ``Evaluation.summary``.
        reference: the evaluator's role.
        reference_policy: the policy that played the role (default: the role's own name).
    """
    if reference not in EVALUATOR_COLUMNS:
        raise ValueError(f"reference must be one of {sorted(EVALUATOR_COLUMNS)}, got {reference!r}")
    indexed = summary.set_index("policy")
    columns = EVALUATOR_COLUMNS[reference]
    missing = [c for c in columns if c not in indexed.columns]
    if missing:
        raise KeyError(f"the evaluator's summary has no {missing} columns")
    out = indexed[list(columns[:-1])].astype(float)
    out.columns = list(COLUMNS)
    out["shown"] = indexed[columns[-1]]
    policy = reference if reference_policy is None else reference_policy
    revenue = indexed["per_user_revenue"].astype(float)
    out["reference_revenue"] = float(revenue[policy]) if policy in indexed.index else math.nan
    return out


def change_from_base(base: pd.DataFrame, scenario: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Per policy in both: the paired change of per-user revenue [CNY] from ``base`` to ``scenario`` (two
    ``Evaluation.per_seed`` tables on the same seeds), ``revenue_change`` with its BCa interval."""
    before = base.pivot(index="seed", columns="policy", values="per_user_revenue")
    after = scenario.pivot(index="seed", columns="policy", values="per_user_revenue")
    rows = {}
    for name in after.columns.intersection(before.columns):
        pair = pd.concat([after[name], before[name]], axis=1, join="inner").dropna()
        d = paired_difference(pair.iloc[:, 0].to_numpy(), pair.iloc[:, 1].to_numpy(), rng)
        rows[name] = [d.difference, *d.difference_ci]
    return pd.DataFrame.from_dict(
        rows, orient="index", columns=["revenue_change", "revenue_change_ci_low", "revenue_change_ci_high"]
    )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_versus(row: Mapping[str, Any], is_reference: bool = False) -> str:
    """One cell: ``+12.3% [+1.0, +20.1]`` when the evaluator shows the uplift (``shown``), else the paired
    difference ``+35.2 CNY [+10.0, +60.3]``; ``reference`` for the reference itself; ``n/a`` without one.

    Without ``shown``, the uplift is shown when the reference earns more than zero and the uplift and its
    interval are defined."""
    if is_reference:
        return "reference"
    ref = row.get("reference_revenue", float("nan"))
    if _missing(ref) or _missing(row.get("revenue_diff")):
        return "n/a"

    def interval(low: Any, high: Any, scale: float) -> str:
        if _missing(low) or _missing(high):
            return ""
        return f" [{scale * low:+.1f}, {scale * high:+.1f}]"

    shown = row.get("shown")
    if _missing(shown):
        no_uplift_ci = _missing(row.get("uplift_ci_low")) and not _missing(row.get("revenue_diff_ci_low"))
        shown = "uplift" if ref > 0 and not _missing(row.get("uplift")) and not no_uplift_ci else "revenue_diff"
    if shown == "uplift" and not _missing(row.get("uplift")):
        return f"{100 * row['uplift']:+.1f}%" + interval(row.get("uplift_ci_low"), row.get("uplift_ci_high"), 100)
    low, high = row.get("revenue_diff_ci_low"), row.get("revenue_diff_ci_high")
    return f"{row['revenue_diff']:+.1f} CNY" + interval(low, high, 1)
