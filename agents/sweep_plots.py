"""Figures of a sweep: revenue, M3+ and the difference from best static against the swept values.

- one swept key: a line per policy against the key's values (95% CI bands);
- two keys on a full grid: heatmaps, one row per metric and one column per policy, values written in;
- otherwise (a random sweep, or more keys): scatter plots of each metric against each key.

The third metric is the paired revenue difference from best static in CNY per user, not the uplift in
%: it is defined whatever best static earns (the % is in the table).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from agents.plots import new_figure, policy_colours

METRICS = (
    ("per_user_revenue", "revenue per user [CNY]", 1.0),
    ("m3plus_rate", "M3+ rate [%]", 100.0),
    ("revenue_diff_vs_best_static", "revenue vs best static [CNY/user]", 1.0),
)


def _metrics(table: pd.DataFrame) -> list[tuple[str, str, float]]:
    return [m for m in METRICS if m[0] in table.columns and table[m[0]].notna().any()]


def plot_sweep(table: pd.DataFrame, keys: Sequence[str], grid: bool, title: str) -> Any:
    """The sweep's figure (see the module docstring for which kind)."""
    if len(keys) == 1:
        return _lines(table, keys[0], title)
    if len(keys) == 2 and grid:
        return _heatmaps(table, list(keys), title)
    return _scatter(table, list(keys), title)


def _lines(table: pd.DataFrame, key: str, title: str) -> Any:
    metrics = _metrics(table)
    figure = new_figure(4.5 * len(metrics), 3.8)
    axes = np.atleast_1d(figure.subplots(1, len(metrics)))
    colours = policy_colours(list(table["policy"].unique()))
    for ax, (metric, label, scale) in zip(axes, metrics, strict=True):
        for policy, part in table.groupby("policy", sort=False):
            part = part.sort_values(key)
            x = part[key].to_numpy(dtype=float)
            ax.plot(x, scale * part[metric], marker="o", label=policy, color=colours[str(policy)])
            if f"{metric}_ci_low" in part:
                low, high = scale * part[f"{metric}_ci_low"], scale * part[f"{metric}_ci_high"]
                ax.fill_between(x, low, high, color=colours[str(policy)], alpha=0.15)
        if metric == "m3plus_rate":
            ax.plot(table[key].to_numpy(dtype=float), 100 * table["cap"], "k--", linewidth=1, label="M3+ cap")
        ax.set_xlabel(key)
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    figure.suptitle(title)
    return figure


def _heatmaps(table: pd.DataFrame, keys: list[str], title: str) -> Any:
    metrics = _metrics(table)
    policies = list(table["policy"].unique())
    figure = new_figure(3.6 * len(policies), 3.0 * len(metrics))
    axes = np.array(figure.subplots(len(metrics), len(policies), squeeze=False))
    rows_key, cols_key = keys
    for i, (metric, label, scale) in enumerate(metrics):
        values = scale * table[metric]
        vmin, vmax = float(values.min()), float(values.max())
        for j, policy in enumerate(policies):
            ax = axes[i, j]
            part = table[table["policy"] == policy]
            grid = part.pivot_table(index=rows_key, columns=cols_key, values=metric, aggfunc="first") * scale
            image = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", origin="lower", vmin=vmin, vmax=vmax)
            for (r, c), v in np.ndenumerate(grid.to_numpy(dtype=float)):
                ax.text(
                    c, r, f"{v:.1f}" if metric != "m3plus_rate" else f"{v:.2f}", ha="center", va="center", fontsize=7
                )
            ax.set_xticks(range(grid.shape[1]), [_label(v) for v in grid.columns], fontsize=7)
            ax.set_yticks(range(grid.shape[0]), [_label(v) for v in grid.index], fontsize=7)
            ax.set_xlabel(cols_key, fontsize=8)
            ax.set_ylabel(rows_key, fontsize=8)
            ax.set_title(f"{policy}: {label}", fontsize=8)
        figure.colorbar(image, ax=list(axes[i]), shrink=0.8)
    figure.suptitle(title)
    return figure


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float, np.number)) else str(value)


def _scatter(table: pd.DataFrame, keys: list[str], title: str) -> Any:
    metrics = _metrics(table)
    figure = new_figure(4.2 * len(keys), 3.2 * len(metrics))
    axes = np.array(figure.subplots(len(metrics), len(keys), squeeze=False))
    colours = policy_colours(list(table["policy"].unique()))
    for i, (metric, label, scale) in enumerate(metrics):
        for j, key in enumerate(keys):
            for policy, part in table.groupby("policy", sort=False):
                axes[i, j].scatter(part[key], scale * part[metric], s=14, label=policy, color=colours[str(policy)])
            axes[i, j].set_xlabel(key)
            axes[i, j].set_ylabel(label)
    axes[0, 0].legend(fontsize=8)
    figure.suptitle(title)
    return figure
