"""Segment outcomes, disparity ratios and the distilled tree, checked on policies whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agents.distill import DistilledPolicy, distill
from agents.policies import StaticHold, _Baseline, obs_index
from agents.report import build_report, report_markdown
from agents.segments import cohort_outcomes, disparity, segment_table
from envs.actions import HOLD_ACTION, LIMIT_MULTIPLIERS
from envs.config import load_config

CUT = LIMIT_MULTIPLIERS.index(0.9)


class CutThinFiles(_Baseline):
    """Cuts every thin-file account every month, holds the rest."""

    def _actions(self, obs):
        return np.where(obs[:, obs_index()["thin_file"]] == 1.0, CUT, HOLD_ACTION)


class CutLowScores(_Baseline):
    """Cuts when the behaviour score is below 550: one threshold on one observed column."""

    def _actions(self, obs):
        return np.where(obs[:, obs_index()["behaviour_score"]] < 550.0, CUT, HOLD_ACTION)


@pytest.fixture(scope="module")
def tiny():
    return load_config("wechat", {"env.horizon": 6})


def test_holding_changes_no_line_and_cutting_thin_files_shows_in_their_cut_rate(tiny):
    held = segment_table(cohort_outcomes(StaticHold(), tiny, 400, seed=3))
    assert (held["raise_rate"] == 0).all() and (held["cut_rate"] == 0).all()
    assert held.groupby("segment")["accounts"].sum().eq(400).all()  # every segment splits the whole cohort
    cut = segment_table(cohort_outcomes(CutThinFiles(), tiny, 400, seed=3)).set_index(["segment", "level"])
    assert cut.loc[("file", "full-file"), "cut_rate"] == 0.0
    assert cut.loc[("file", "thin-file"), "cut_rate"] > 0.5  # cut every month it is above the line floor
    assert (
        cut.loc[("file", "thin-file"), "average_line"]
        < held.set_index(["segment", "level"]).loc[("file", "thin-file"), "average_line"]
    )


def test_disparity_ratios_and_their_comparison_with_the_reference():
    def table(thin_cut, full_cut):
        rows = [
            {"segment": "file", "level": "thin-file", "cut_rate": thin_cut},
            {"segment": "file", "level": "full-file", "cut_rate": full_cut},
        ]
        for segment in ("income_band", "risk_band"):
            rows += [{"segment": segment, "level": lv, "cut_rate": 0.1} for lv in ("low", "middle", "high")]
        frame = pd.DataFrame(rows)
        for outcome in ("raise_rate", "average_line", "m3plus_rate", "attrition"):
            frame[outcome] = 1.0
        return frame

    frame = disparity({"agent": table(0.3, 0.1), "rule": table(0.2, 0.1)}, reference="rule")
    row = frame[(frame["policy"] == "agent") & (frame["outcome"] == "cut_rate") & frame["pair"].str.startswith("thin")]
    assert row["ratio"].iloc[0] == pytest.approx(3.0) and row["reference_ratio"].iloc[0] == pytest.approx(2.0)
    assert row["vs_reference"].iloc[0] == pytest.approx(1.5)


def _observations(policy, config, seeds):
    batches: list = []
    for seed in seeds:
        cohort_outcomes(policy, config, 300, seed, batches)
    return np.concatenate([o for o, _ in batches]), np.concatenate([a for _, a in batches])


def test_a_one_threshold_policy_is_distilled_exactly(tiny):
    fit_obs, fit_actions = _observations(CutLowScores(), tiny, [20, 21])
    test_obs, test_actions = _observations(CutLowScores(), tiny, [22])
    result = distill(fit_obs, fit_actions, test_obs, test_actions, list(obs_index()), max_depth=1, min_samples_leaf=1)
    assert result.fidelity > 0.99 and result.majority_fidelity < result.fidelity
    threshold = result.policy.tree.tree_.threshold[0]
    assert result.policy.tree.tree_.feature[0] == obs_index()["behaviour_score"]
    assert 540.0 < threshold < 560.0  # the split falls between observed scores around 550
    assert "behaviour_score" in result.rules and "x0.9" in result.rules and "x1" in result.rules
    actions, _ = DistilledPolicy(result.policy.tree).predict(test_obs[:5])
    assert actions.dtype == np.int64 and actions.shape == (5,)


@pytest.mark.slow
def test_report_of_a_baselines_only_run_distils_the_rule(tiny):
    specs = {"static_hold": {"kind": "static_hold"}, "rule": {"kind": "rule", "params": {"good_months": 2}}}
    report = build_report(tiny, specs, 200, [5, 6], [7], progress=False)
    assert (report.target, report.tree_name, report.reference) == ("rule", "rule_tree", "rule")
    assert 0.0 <= report.distillation.fidelity <= 1.0
    assert set(report.summary["policy"]) == {"static_hold", "rule", "rule_tree"}
    assert set(report.segments["policy"]) == {"static_hold", "rule", "rule_tree"}
    text = report_markdown(report, "tiny", {"accounts": 200})
    for fragment in ("Per-segment outcomes", "hidden trait", "Disparity ratios", "fidelity", "rule (the run has no"):
        assert fragment in text
    with pytest.raises(ValueError, match="overlap"):
        build_report(tiny, specs, 50, [5], [5], progress=False)


def test_segment_revenue_and_m3plus_add_up_to_the_evaluator_s_whole_life_figures(tiny):
    # two code paths (per-account sums here, the evaluator's cohort sums) over the same whole lives
    from agents.evaluation import evaluate

    outcomes = cohort_outcomes(CutLowScores(), tiny, 300, seed=5)
    book = evaluate({"p": CutLowScores()}, tiny, 300, [5], progress=False, reference=None).summary.iloc[0]
    assert outcomes["revenue"].sum() / 300 == pytest.approx(book["per_user_revenue"], rel=1e-9)
    assert outcomes["m3_balance"].sum() / outcomes["balance"].sum() == pytest.approx(book["m3plus_rate"], rel=1e-9)
    assert outcomes["line_months"].sum() / outcomes["open_months"].sum() == pytest.approx(book["average_line"])
