"""What-if comparisons: uplift cells, paired changes from base, and scenarios with known effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agents.run_policies import PolicySpec
from agents.uplift import change_from_base, comparison, format_versus
from agents.whatif import format_whatif, run_whatif
from envs.config import load_config
from envs.scenarios import load_scenario

SPECS: dict[str, PolicySpec] = {
    "static_hold": {"kind": "static_hold"},
    "best_static": {"kind": "best_static", "x": 1.5},
    "rule": {"kind": "rule", "params": {}},
    "random": {"kind": "random", "seed": 0},
}


def test_change_from_base_is_paired_over_seeds_by_hand():
    base = pd.DataFrame({"policy": "p", "seed": [1, 2, 3], "per_user_revenue": [100.0, 200.0, 300.0]})
    scen = base.assign(per_user_revenue=[110.0, 230.0, 320.0])  # changes 10, 30, 20: mean 20
    change = change_from_base(base, scen, np.random.default_rng(0)).loc["p"]
    assert change["revenue_change"] == pytest.approx(20.0)
    # paired: resampled means of the per-seed changes stay within them (unpaired, the spread would be ~100)
    assert 10.0 <= change["revenue_change_ci_low"] <= 20.0 <= change["revenue_change_ci_high"] <= 30.0


def test_comparison_reads_the_evaluator_s_rule_columns_and_refuses_a_summary_without_them():
    summary = pd.DataFrame(
        {
            "policy": ["rule", "agent"],
            "per_user_revenue": [-40.0, -15.0],
            "revenue_diff_vs_rule": [0.0, 25.0],
            "revenue_diff_vs_rule_ci_low": [0.0, 5.0],
            "revenue_diff_vs_rule_ci_high": [0.0, 45.0],
            "uplift_vs_rule": [np.nan, np.nan],
            "uplift_vs_rule_ci_low": [np.nan, np.nan],
            "uplift_vs_rule_ci_high": [np.nan, np.nan],
            "comparison_vs_rule": ["revenue_diff", "revenue_diff"],
        }
    )
    row = comparison(summary, "rule").loc["agent"]
    assert row["reference_revenue"] == -40.0 and row["shown"] == "revenue_diff"
    assert format_versus(row.to_dict()) == "+25.0 CNY [+5.0, +45.0]"
    with pytest.raises(KeyError, match="comparison_vs_best_static"):
        comparison(summary, "best_static")


def test_uplift_over_a_losing_reference_is_a_cny_difference_never_blank():
    losing = {"reference_revenue": -40.0, "revenue_diff": 25.0, "revenue_diff_ci_low": 5.0}
    losing |= {"revenue_diff_ci_high": 45.0, "uplift": float("nan")}
    assert format_versus(losing) == "+25.0 CNY [+5.0, +45.0]"
    earning = {"reference_revenue": 200.0, "revenue_diff": 20.0, "uplift": 0.1, "uplift_ci_low": 0.05}
    earning |= {"uplift_ci_high": 0.2, "revenue_diff_ci_low": 10.0, "revenue_diff_ci_high": 40.0}
    assert format_versus(earning) == "+10.0% [+5.0, +20.0]"
    # the reference's mean is positive but some resample of the seeds is not: no % interval, so CNY
    shaky = earning | {"uplift_ci_low": float("nan"), "uplift_ci_high": float("nan")}
    assert format_versus(shaky) == "+20.0 CNY [+10.0, +40.0]"
    assert format_versus({"reference_revenue": float("nan")}) == "n/a"
    assert format_versus(earning, is_reference=True) == "reference"
    # the evaluator's choice wins: CNY when it says the reference is not positive on every seed
    assert format_versus(earning | {"shown": "revenue_diff"}) == "+20.0 CNY [+10.0, +40.0]"


@pytest.fixture(scope="module")
def tiny():
    return load_config("wechat", {"env.horizon": 4})


def test_a_scenario_that_changes_nothing_changes_no_number(tiny):
    # wechat prices at most 18.24%: the 24% ceiling does not bind, so both cases are the same world
    result = run_whatif(tiny, load_scenario("rate_ceiling_24"), SPECS, 150, [7, 8], progress=False)
    scen = result.table[result.table["case"] == "scenario"]
    assert len(scen) == len(SPECS)
    assert (scen["revenue_change"] == 0.0).all() and (scen["m3plus_change"] == 0.0).all()
    assert (scen["revenue_change_ci_low"] == 0.0).all()


def test_a_funding_shock_costs_revenue_and_leaves_risk_alone(tiny):
    # funding cost enters the books only: the same accounts borrow and miss alike, and pay 2 points more
    result = run_whatif(tiny, load_scenario("funding_shock"), SPECS, 150, [7, 8], progress=False)
    table = result.table
    scen = table[table["case"] == "scenario"].set_index("policy")
    base = table[table["case"] == "base"].set_index("policy")
    assert (scen["revenue_change"] < 0).all()
    np.testing.assert_array_equal(scen["m3plus_rate"], base["m3plus_rate"])
    assert set(table.columns) >= {"uplift_vs_best_static", "uplift_vs_rule", "revenue_diff_vs_rule"}
    # the comparisons are the evaluator's own, not recomputed
    evaluator = result.base.summary.set_index("policy")
    pairs = {"uplift_vs_rule": "uplift_vs_rule", "revenue_diff_ci_low_vs_rule": "revenue_diff_vs_rule_ci_low"}
    pairs |= {
        "revenue_diff_vs_best_static": "revenue_diff_vs_best_static",
        "uplift_ci_high_vs_best_static": "uplift_ci_high",
    }
    for ours, theirs in pairs.items():
        np.testing.assert_array_equal(base[ours], evaluator.loc[base.index, theirs])
    assert (base.loc["static_hold", "tuned_under"], base.loc["best_static", "tuned_under"]) == ("-", "base")
    text = format_whatif(table)
    for fragment in ("revenue/user [CNY]", "change [95% CI]", "vs best static", "vs rule", "reference"):
        assert fragment in text
    assert result.changes.iloc[0]["key"] == "accounting.funding_rate"


@pytest.mark.slow
def test_retune_retunes_the_baselines_under_the_scenario(tiny):
    result = run_whatif(
        tiny,
        load_scenario("lower_max_line"),
        SPECS,
        120,
        [9, 10],
        retune=True,
        tune_seeds=[3, 4],
        rule_trials=2,
        progress=False,
    )
    scen = result.table[result.table["case"] == "scenario"].set_index("policy")
    assert scen.loc["best_static", "tuned_under"] == "scenario" and scen.loc["rule", "tuned_under"] == "scenario"
    assert "(re-tuned for scenario)" in format_whatif(result.table)
    with pytest.raises(ValueError, match="overlap"):
        run_whatif(tiny, load_scenario("lower_max_line"), SPECS, 50, [3], retune=True, tune_seeds=[3], progress=False)
