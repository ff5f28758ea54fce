"""The three figures of a run, readable at a glance: titles, axis units, legends, the cap drawn in.

Figures are built as ``matplotlib.figure.Figure`` objects on the Agg canvas, never through ``pyplot``:
no display is needed, no global figure registry grows in a long run, and tests can inspect the
returned figure before anything is saved (``agents.atomic_io.save_figure`` writes it atomically).

- :func:`plot_monthly`: cumulative per-user revenue and M3+ rate by month, per policy.
- :func:`plot_frontier`: risk-return frontier, per-user revenue against M3+ rate.
- :func:`plot_training`: revenue, cost (or M3+ rate) and the Lagrange multiplier against timesteps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Columns of a best-static tuning table that may hold the line multiplier, in order of preference.
MULTIPLIER_COLUMNS = ("target", "x", "multiplier", "line_multiplier")
_PALETTE = [f"C{i}" for i in range(10)]


def new_figure(width: float, height: float) -> Figure:
    """A figure on the headless Agg canvas."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def policy_colours(policies: Sequence[str]) -> dict[str, str]:
    """A stable colour per policy, in the given order, so each policy looks the same in every figure."""
    return {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(dict.fromkeys(policies))}


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; it has {list(frame.columns)}")


def _cap_line(ax: Axes, cap: float | None, vertical: bool) -> None:
    if cap is None or not np.isfinite(cap):
        return
    label = f"M3+ cap {100 * cap:.2f}%"
    if vertical:
        ax.axvline(100 * cap, color="black", linestyle="--", linewidth=1.2, label=label)
    else:
        ax.axhline(100 * cap, color="black", linestyle="--", linewidth=1.2, label=label)


def plot_monthly(
    monthly: pd.DataFrame, cap: float | None = None, title: str | None = None, colours: Mapping[str, str] | None = None
) -> Figure:
    """Cumulative per-user revenue and M3+ rate by month, one line per policy (means over seeds).

    Args:
        monthly: one row per (policy, seed, month) with ``revenue_per_user`` [CNY/account in that month]
            and ``m3plus_rate`` [fraction]; ``seed`` may be absent for a single seed. With a ``phase`` column
            (``window`` / ``run_off``, as ``agents.evaluation`` writes it) the M3+ panel shows the window
            (in the run-off the book shrinks to its delinquent tail) and both panels mark where it ends.
        cap: the preset's M3+ cap [fraction], drawn as a dashed line.
        title: figure title (e.g. the preset name).
        colours: policy -> colour; default :func:`policy_colours` in order of appearance.
    """
    _require(monthly, ["policy", "month", "revenue_per_user", "m3plus_rate"], "monthly table")
    data = monthly.copy()
    if "seed" not in data.columns:
        data["seed"] = 0
    data = data.sort_values(["policy", "seed", "month"])
    # Cumulative within each evaluation run, then averaged over seeds: the mean cumulative revenue.
    data["cumulative_revenue"] = data.groupby(["policy", "seed"], sort=False)["revenue_per_user"].cumsum()
    mean = data.groupby(["policy", "month"], sort=False)[["cumulative_revenue", "m3plus_rate"]].mean()
    window_end = data.loc[data["phase"] == "window", "month"].max() if "phase" in data.columns else None
    policies = list(dict.fromkeys(monthly["policy"]))
    colours = dict(colours or policy_colours(policies))

    figure = new_figure(12, 4.5)
    ax_rev, ax_m3 = figure.subplots(1, 2)
    for name in policies:
        rows = mean.loc[name]
        colour = colours.get(name)
        ax_rev.plot(rows.index, rows["cumulative_revenue"], color=colour, label=name)
        in_window = rows.index <= window_end if window_end is not None else slice(None)
        ax_m3.plot(rows.index[in_window], 100 * rows["m3plus_rate"][in_window], color=colour, label=name)
    _cap_line(ax_m3, cap, vertical=False)
    if window_end is not None:
        ax_rev.axvline(window_end, color="grey", linestyle=":", linewidth=1.0, label="run-off from here")
    n_seeds = data["seed"].nunique()
    ax_rev.set(
        title="Cumulative per-user revenue", xlabel="month", ylabel="cumulative revenue per account [CNY/account]"
    )
    ax_m3.set(title="M3+ rate (balance 90+ days past due)", xlabel="month", ylabel="M3+ rate [%]")
    ax_rev.axhline(0, color="grey", linewidth=0.6)
    ax_m3.set_ylim(bottom=0)
    for ax in (ax_rev, ax_m3):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    figure.suptitle(
        f"{title + ': ' if title else ''}monthly results, mean over {n_seeds} evaluation "
        f"seed{'s' if n_seeds != 1 else ''}"
    )
    return figure


def multiplier_column(table: pd.DataFrame) -> str | None:
    """The column of a best-static tuning table that holds the line multiplier, if any."""
    return next((c for c in MULTIPLIER_COLUMNS if c in table.columns), None)


def plot_frontier(
    summary: pd.DataFrame,
    static_table: pd.DataFrame | None = None,
    cap: float | None = None,
    title: str | None = None,
    colours: Mapping[str, str] | None = None,
) -> Figure:
    """Risk-return frontier: per-user revenue against M3+ rate.

    Args:
        summary: one row per evaluated policy with ``policy``, ``per_user_revenue`` [CNY/account],
            ``m3plus_rate`` [fraction] and, if present, ``per_user_revenue_ci_low/high`` (error bars).
        static_table: the best-static tuning table (one row per multiplier with ``per_user_revenue`` and
            ``m3plus_rate``), drawn as a curve. It comes from the tuning seeds, so it is labelled so.
        cap: the M3+ cap [fraction], drawn as a vertical dashed line; the region beyond it is shaded.
        title: figure title.
        colours: policy -> colour.
    """
    _require(summary, ["policy", "per_user_revenue", "m3plus_rate"], "summary table")
    figure = new_figure(8, 6)
    ax = figure.subplots()
    if static_table is not None and len(static_table):
        _require(static_table, ["per_user_revenue", "m3plus_rate"], "best-static tuning table")
        mult = multiplier_column(static_table)
        curve = static_table.sort_values(mult if mult else "m3plus_rate")
        ax.plot(
            100 * curve["m3plus_rate"],
            curve["per_user_revenue"],
            color="grey",
            marker=".",
            linestyle="-",
            label="static multipliers (tuning seeds)",
        )
        if mult:
            for _, row in curve.iterrows():
                ax.annotate(
                    f"x{row[mult]:g}",
                    (100 * row["m3plus_rate"], row["per_user_revenue"]),
                    textcoords="offset points",
                    xytext=(3, -10),
                    fontsize="x-small",
                    color="grey",
                )
    policies = list(dict.fromkeys(summary["policy"]))
    colours = dict(colours or policy_colours(policies))
    has_ci = {"per_user_revenue_ci_low", "per_user_revenue_ci_high"} <= set(summary.columns)
    for record in summary.to_dict("records"):
        x, y = 100 * record["m3plus_rate"], record["per_user_revenue"]
        low, high = record.get("per_user_revenue_ci_low", np.nan), record.get("per_user_revenue_ci_high", np.nan)
        yerr = None
        if has_ci and np.isfinite([low, high]).all():
            # asymmetric bars; clipped at 0 in case a CI does not bracket its own estimate
            yerr = [[max(y - low, 0.0)], [max(high - y, 0.0)]]
        name = record["policy"]
        ax.errorbar([x], [y], yerr=yerr, fmt="o", markersize=7, capsize=4, color=colours.get(name), label=name)
    if cap is not None and np.isfinite(cap):
        _cap_line(ax, cap, vertical=True)
        right = max(ax.get_xlim()[1], 100 * cap * 1.05)
        ax.axvspan(100 * cap, right, color="red", alpha=0.06, label="over the cap")
        ax.set_xlim(left=0, right=right)
    ax.set(
        title=f"{title + ': ' if title else ''}risk-return frontier (evaluation seeds, 95% CI)",
        xlabel="M3+ rate [%]",
        ylabel="per-user revenue [CNY/account]",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return figure


def plot_training(
    progress: Mapping[str, pd.DataFrame],
    cap: float | None = None,
    title: str | None = None,
    colours: Mapping[str, str] | None = None,
) -> Figure:
    """Training curves per algorithm: revenue, cost (M3+ rate if logged) and lambda against timesteps.

    Args:
        progress: algorithm name -> its ``progress.csv`` (``timesteps``, ``revenue``, ``cost``,
            ``m3plus_rate``, ``lambda``; any missing column leaves its panel empty for that algorithm).
        cap: the M3+ cap [fraction], drawn on the M3+ panel.
        title: figure title.
        colours: algorithm -> colour (e.g. the same as in the other figures); default by order.
    """
    if not progress:
        raise ValueError("no training progress to plot (no agents/<algo>/progress.csv found)")
    for algo, frame in progress.items():
        _require(frame, ["timesteps"], f"progress of {algo}")
    # The middle panel shows the capped metric when any algorithm logged it, else the raw cost signal.
    use_m3 = any("m3plus_rate" in f.columns for f in progress.values())
    panels = {
        "revenue": (1.0, "Revenue during training", "revenue [CNY/account-month]"),
        "m3plus_rate": (100.0, "M3+ rate during training", "M3+ rate [%]"),
        "cost": (1.0, "Cost during training", "cost [M3+ balance / reference balance]"),
        "lambda": (1.0, "Lagrange multiplier", "lambda [-]"),
    }
    columns = ["revenue", "m3plus_rate" if use_m3 else "cost", "lambda"]
    figure = new_figure(14, 4.2)
    axes = figure.subplots(1, 3)
    colours = {**policy_colours(list(progress)), **(colours or {})}
    for ax, column in zip(axes, columns, strict=False):
        scale, panel_title, ylabel = panels[column]
        missing = []
        for algo, frame in progress.items():
            rows = frame.dropna(subset=[column]) if column in frame else frame.iloc[:0]
            if rows.empty:
                missing.append(algo)
                continue
            rows = rows.sort_values("timesteps")
            # markers while there are few points: a single update would otherwise draw nothing visible
            ax.plot(
                rows["timesteps"],
                scale * rows[column],
                color=colours[algo],
                label=algo,
                marker="o" if len(rows) < 20 else None,
            )
        if column == "m3plus_rate":
            _cap_line(ax, cap, vertical=False)
        if missing:  # say so rather than leave a reader wondering where an algorithm went
            ax.text(
                0.02, 0.02, f"not logged: {', '.join(missing)}", transform=ax.transAxes, fontsize="small", color="grey"
            )
        ax.set(title=panel_title, xlabel="timesteps [account-months]", ylabel=ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    figure.suptitle(f"{title + ': ' if title else ''}training curves")
    return figure


def read_progress(agents_dir: str | Path) -> dict[str, pd.DataFrame]:
    """``agents_dir/<algo>/progress.csv`` for every algorithm that has one (empty files skipped).

    Rows without ``timesteps`` (SB3's own episode logs, written between constraint updates) fall back to
    SB3's ``time/total_timesteps``.
    """
    found: dict[str, pd.DataFrame] = {}
    for path in sorted(Path(agents_dir).glob("*/progress.csv")):
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            continue
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"{path} is not a readable CSV: {exc}") from None
        if "time/total_timesteps" in frame.columns:
            fallback = frame["time/total_timesteps"]
            frame["timesteps"] = frame["timesteps"].fillna(fallback) if "timesteps" in frame else fallback
        if "timesteps" in frame.columns:
            frame = frame.dropna(subset=["timesteps"])
            if len(frame):
                found[path.parent.name] = frame
    return found
