"""Figures: the right panels, labels with units, one legend entry per policy, the cap drawn where it is."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agents import plots
from agents.results import RunFolder

CAP = 0.018
POLICIES = ["static_hold", "best_static", "rule", "ppo"]


@pytest.fixture
def monthly() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {
            "policy": p,
            "seed": s,
            "month": m,
            "revenue_per_user": 10.0 + i,
            "m3plus_rate": 0.01 + 0.001 * i + 0.0005 * rng.random(),
        }
        for i, p in enumerate(POLICIES)
        for s in (0, 1)
        for m in range(1, 13)
    ]
    return pd.DataFrame(rows)


@pytest.fixture
def summary() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "policy": POLICIES,
            "per_user_revenue": [200.0, 220.0, 230.0, 250.0],
            "per_user_revenue_ci_low": [190.0, 210.0, 215.0, 240.0],
            "per_user_revenue_ci_high": [210.0, 230.0, 245.0, 262.0],
            "m3plus_rate": [0.015, 0.017, 0.016, 0.0175],
        }
    )


@pytest.fixture
def static_table() -> pd.DataFrame:
    return pd.DataFrame(
        {"target": [0.5, 1.0, 1.5], "per_user_revenue": [150.0, 200.0, 210.0], "m3plus_rate": [0.008, 0.015, 0.021]}
    )


def _legend_labels(ax) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None, f"panel '{ax.get_title()}' has no legend"
    return [t.get_text() for t in legend.get_texts()]


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_monthly_figure(monthly, tmp_path):
    figure = plots.plot_monthly(monthly, cap=CAP, title="wechat")
    revenue, m3 = figure.axes
    assert "revenue" in revenue.get_title().lower() and "[CNY/account]" in revenue.get_ylabel()
    assert "M3+" in m3.get_title() and m3.get_ylabel() == "M3+ rate [%]"
    assert revenue.get_xlabel() == m3.get_xlabel() == "month"
    for ax in (revenue, m3):
        assert set(POLICIES) <= set(_legend_labels(ax))
    # cumulative revenue: policy i earns 10 + i a month, so after 12 months 12 * (10 + i), whatever the seed
    lines = {line.get_label(): line for line in revenue.get_lines()}
    for i, name in enumerate(POLICIES):
        np.testing.assert_allclose(lines[name].get_ydata(), (10.0 + i) * np.arange(1, 13))
    # the cap is a dashed horizontal line at 1.8 (%)
    cap_lines = [line for line in m3.get_lines() if line.get_linestyle() == "--"]
    assert len(cap_lines) == 1 and np.allclose(cap_lines[0].get_ydata(), 100 * CAP)
    path = RunFolder.create(tmp_path, "run").save_figure("monthly", figure)
    assert path.name == "monthly.png" and _is_png(path)


def test_monthly_averages_m3_over_seeds_in_percent():
    monthly = pd.DataFrame(
        {
            "policy": ["a"] * 4,
            "seed": [0, 0, 1, 1],
            "month": [1, 2, 1, 2],
            "revenue_per_user": [1.0, 1.0, 3.0, 3.0],
            "m3plus_rate": [0.01, 0.02, 0.03, 0.04],
        }
    )
    _, m3 = plots.plot_monthly(monthly).axes
    (line,) = m3.get_lines()
    np.testing.assert_allclose(line.get_ydata(), [2.0, 3.0])  # mean of 1% and 3%, of 2% and 4%


def test_frontier_figure(summary, static_table, tmp_path):
    figure = plots.plot_frontier(summary, static_table, cap=CAP, title="wechat")
    (ax,) = figure.axes
    assert "frontier" in ax.get_title()
    assert ax.get_xlabel() == "M3+ rate [%]" and ax.get_ylabel() == "per-user revenue [CNY/account]"
    labels = _legend_labels(ax)
    assert set(POLICIES) <= set(labels) and "static multipliers (tuning seeds)" in labels
    assert any("cap" in label for label in labels)
    # the static curve runs through the tuning table, in % on x
    curve = next(line for line in ax.get_lines() if line.get_label() == "static multipliers (tuning seeds)")
    np.testing.assert_allclose(curve.get_xdata(), [0.8, 1.5, 2.1])
    np.testing.assert_allclose(curve.get_ydata(), [150.0, 200.0, 210.0])
    # cap: vertical dashed line at 1.8 %
    cap_line = next(line for line in ax.get_lines() if line.get_linestyle() == "--")
    assert np.allclose(cap_line.get_xdata(), 100 * CAP)
    # error bars: one bar per policy spanning its CI
    bars = [c for c in ax.collections if type(c).__name__ == "LineCollection"]
    spans = sorted(tuple(np.asarray(seg)[:, 1]) for bar in bars for seg in bar.get_segments())
    assert spans == sorted(zip(summary["per_user_revenue_ci_low"], summary["per_user_revenue_ci_high"], strict=False))
    assert _is_png(RunFolder.create(tmp_path, "run").save_figure("frontier", figure))


def test_frontier_without_ci_or_tuning_table(summary):
    figure = plots.plot_frontier(summary[["policy", "per_user_revenue", "m3plus_rate"]])
    assert set(POLICIES) <= set(_legend_labels(figure.axes[0]))


def test_training_figure(tmp_path):
    steps = np.arange(5) * 1000
    progress = {
        "ppo": pd.DataFrame(
            {
                "timesteps": steps,
                "revenue": np.linspace(1, 5, 5),
                "cost": 0.2,
                "m3plus_rate": np.linspace(0.03, 0.017, 5),
                "lambda": np.linspace(0, 2, 5),
            }
        )
    }
    (tmp_path / "agents" / "ppo").mkdir(parents=True)
    progress["ppo"].to_csv(tmp_path / "agents" / "ppo" / "progress.csv", index=False)
    read = plots.read_progress(tmp_path / "agents")
    assert list(read) == ["ppo"]
    figure = plots.plot_training(read, cap=CAP)
    revenue, m3, lam = figure.axes
    for ax in figure.axes:
        assert ax.get_xlabel() == "timesteps [account-months]"
        assert "ppo" in _legend_labels(ax)
    assert "[CNY/account-month]" in revenue.get_ylabel()
    assert m3.get_ylabel() == "M3+ rate [%]" and "lambda" in lam.get_ylabel()
    (lam_line,) = lam.get_lines()
    np.testing.assert_allclose(lam_line.get_ydata(), np.linspace(0, 2, 5))
    assert _is_png(RunFolder.create(tmp_path, "run").save_figure("training", figure))


def test_training_falls_back_to_cost_without_m3plus_rate():
    progress = {
        "a2c": pd.DataFrame({"timesteps": [0, 10], "revenue": [1.0, 2.0], "cost": [0.3, 0.2], "lambda": [0.0, 0.1]})
    }
    _, cost, _ = plots.plot_training(progress).axes
    assert "cost" in cost.get_ylabel()


def test_bad_tables_name_the_missing_columns(summary):
    with pytest.raises(ValueError, match="m3plus_rate"):
        plots.plot_monthly(pd.DataFrame({"policy": ["a"], "month": [1], "revenue_per_user": [1.0]}))
    with pytest.raises(ValueError, match="per_user_revenue"):
        plots.plot_frontier(summary.drop(columns="per_user_revenue"))
    with pytest.raises(ValueError, match="no training progress"):
        plots.plot_training({})


def test_training_says_which_algorithms_did_not_log_a_panel():
    progress = {
        "ppo": pd.DataFrame(
            {"timesteps": [10, 20], "revenue": [1.0, 2.0], "m3plus_rate": [0.02, 0.01], "lambda": [0.1, 0.0]}
        ),
        # an off-policy run too short for a constraint update logs only SB3's own columns
        "sac": pd.DataFrame({"time/total_timesteps": [15], "rollout/ep_rew_mean": [-3.0]}),
    }
    (tmp_sac := progress["sac"]).insert(0, "timesteps", tmp_sac["time/total_timesteps"])
    figure = plots.plot_training(progress)
    for ax in figure.axes:
        assert [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("M3+ cap")] == ["ppo"]
        assert any("not logged: sac" in text.get_text() for text in ax.texts)


def test_read_progress_falls_back_to_sb3_timesteps(tmp_path):
    (tmp_path / "sac").mkdir()
    (tmp_path / "sac" / "progress.csv").write_text("time/episodes,time/total_timesteps\n512,4736\n")
    (tmp_path / "dqn").mkdir()
    (tmp_path / "dqn" / "progress.csv").write_text("")  # a run killed before its first log line
    read = plots.read_progress(tmp_path)
    assert list(read) == ["sac"] and read["sac"]["timesteps"].tolist() == [4736]
