"""What-if comparisons: uplift cells, paired changes from base, and scenarios with known effects."""

from __future__ import annotations

import numpy as np
import pytest

from agents.run_policies import PolicySpec
from agents.uplift import format_versus, paired
from agents.whatif import format_whatif, run_whatif
from envs.config import load_config
from envs.scenarios import load_scenario

SPECS: dict[str, PolicySpec] = {
    "static_hold": {"kind": "static_hold"},
    "best_static": {"kind": "best_static", "x": 1.5},
    "rule": {"kind": "rule", "params": {}},
    "random": {"kind": "random", "seed": 0},
}


def test_paired_difference_and_uplift_by_hand():
    a, b = np.array([110.0, 130.0, 120.0]), np.array([100.0, 100.0, 100.0])
    diff, low, high, uplift, u_low, u_high = paired(a, b, np.random.default_rng(0))
    assert diff == pytest.approx(20.0) and uplift == pytest.approx(0.20)  # 120 / 100 - 1
    assert 10.0 <= low <= diff <= high <= 30.0  # resampled means stay within the per-seed differences
    assert 0.10 <= u_low <= uplift <= u_high <= 0.30


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
