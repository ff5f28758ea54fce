"""The evaluator: same accounts for every policy, deterministic, metrics that mean what they say."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from agents.evaluation import (
    RUN_OFF_MONTHS,
    SEGMENTS,
    bootstrap_ci,
    check_disjoint,
    evaluate,
    paired_difference,
    portfolio_seed,
    split_seeds,
)
from agents.policies import BestStatic, RandomPolicy, RuleBased, StaticHold, obs_index
from agents.results import format_summary
from envs.actions import HOLD_ACTION, LIMIT_MULTIPLIERS
from envs.config import load_config

SMALL = dict(num_accounts=600, months=12, progress=False)


@pytest.fixture(scope="module")
def config():
    return load_config("wechat")


class Recorder:
    """Wraps a policy and keeps the first observation it is shown in each run."""

    def __init__(self, policy):
        self.policy, self.first = policy, []

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        if episode_start is not None and np.all(episode_start):
            self.first.append(obs.copy())
        return self.policy.predict(obs, state, episode_start, deterministic)


def test_deterministic(config):
    def policies():
        return {
            "best_static": BestStatic(1.25),
            "hold": StaticHold(),
            "rule": RuleBased(),  # noqa: E731
            "random": RandomPolicy(3),
        }

    a = evaluate(policies(), config, seeds=[4, 9], **SMALL)
    b = evaluate(policies(), config, seeds=[4, 9], **SMALL)
    for name in a._fields:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
        assert getattr(a, name).to_csv() == getattr(b, name).to_csv()  # byte-identical as written


def test_every_policy_sees_the_same_accounts(config):
    recorders = {
        "best_static": Recorder(BestStatic(1.5)),
        "hold": Recorder(StaticHold()),
        "random": Recorder(RandomPolicy(0)),
    }
    evaluate(recorders, config, seeds=[0, 1], **SMALL)
    first = [r.first for r in recorders.values()]
    assert all(len(f) == 2 for f in first)
    for seed in range(2):
        for other in first[1:]:
            np.testing.assert_array_equal(first[0][seed], other[seed])
    # Different seeds own different accounts (not shifted copies: seed k and k+1 must share none).
    lines = obs_index()["origination_line"]
    assert not np.array_equal(first[0][0][1:, lines], first[0][1][:-1, lines])


def test_paired_difference_with_itself_is_zero(config):
    result = evaluate({"best_static": BestStatic(1.25), "twin": BestStatic(1.25)}, config, seeds=[2, 3, 5], **SMALL)
    for _, row in result.summary.iterrows():
        assert row["revenue_diff_vs_best_static"] == 0.0 and row["uplift_vs_best_static"] == 0.0
        assert row["revenue_diff_ci_low"] == 0.0 and row["revenue_diff_ci_high"] == 0.0
        assert row["uplift_ci_low"] == 0.0 and row["uplift_ci_high"] == 0.0
    x = np.random.default_rng(0).normal(100, 10, 8)
    d = paired_difference(x, x, np.random.default_rng(1))
    assert d.difference == 0.0 and d.difference_ci == (0.0, 0.0) and d.uplift_ci == (0.0, 0.0)


def test_paired_difference_knows_the_uplift():
    b = np.array([100.0, 120.0, 80.0, 110.0])
    d = paired_difference(1.18 * b, b, np.random.default_rng(0))
    assert d.uplift == pytest.approx(0.18)
    assert d.uplift_ci[0] == pytest.approx(0.18) and d.uplift_ci[1] == pytest.approx(0.18)
    assert d.difference == pytest.approx(0.18 * b.mean())
    # A non-positive reference has no relative uplift.
    assert np.isnan(paired_difference([1.0, 2.0], [-1.0, 0.5], np.random.default_rng(0)).uplift)


def test_bootstrap_covers_a_known_mean():
    # Normal samples of 30 with mean 5: a 95% interval should cover 5 in about 95% of repeats. The
    # bootstrap undercovers a little at n = 30 (BCa too: about 93-94%); 400 repeats give +-2.2% (2 sd).
    rng = np.random.default_rng(123)
    repeats, covered = 400, 0
    for _ in range(repeats):
        low, high = bootstrap_ci(rng.normal(5.0, 2.0, 30), rng, n_boot=1000)
        covered += low <= 5.0 <= high
    assert 0.89 <= covered / repeats <= 0.98


def test_bootstrap_single_value_has_no_interval():
    assert all(np.isnan(bootstrap_ci([3.0], np.random.default_rng(0))))


def test_bootstrap_is_scipys_bca():
    # A skewed sample, where BCa and the percentile interval differ: the interval is scipy's BCa one.
    x = np.random.default_rng(5).lognormal(0.0, 1.0, 12)
    ours = bootstrap_ci(x, np.random.default_rng(7), n_boot=999)
    bca = stats.bootstrap((x,), np.mean, n_resamples=999, method="BCa", rng=np.random.default_rng(7))
    percentile = stats.bootstrap((x,), np.mean, n_resamples=999, method="percentile", rng=np.random.default_rng(7))
    assert ours == pytest.approx((bca.confidence_interval.low, bca.confidence_interval.high), rel=1e-12)
    assert ours[0] > percentile.confidence_interval.low + 0.05  # BCa shifts a right-skewed interval right


def test_degenerate_samples_and_one_seed_give_no_warnings():
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        assert bootstrap_ci([3.0] * 6, rng) == (3.0, 3.0)  # all equal: the interval is the value
        assert all(np.isnan(bootstrap_ci([3.0], rng)))
        b = np.array([100.0, 130.0, 80.0, 95.0, 120.0])
        shifted = paired_difference(b + 5.0, b, rng)  # a constant difference has no spread
        assert shifted.difference == pytest.approx(5.0) and shifted.difference_ci == pytest.approx((5.0, 5.0))
        one = paired_difference([1.0], [2.0], rng)
        assert one.difference == -1.0 and all(np.isnan(one.difference_ci)) and all(np.isnan(one.uplift_ci))
        config = load_config("wechat")
        result = evaluate(
            {"best_static": StaticHold(), "twin": StaticHold()}, config, 200, [3], months=6, progress=False
        )
        assert result.summary["per_user_revenue_ci_low"].isna().all()
        twins = evaluate(
            {"best_static": StaticHold(), "twin": StaticHold()}, config, 200, [3, 4], months=6, progress=False
        )
        assert (twins.summary["revenue_diff_ci_low"] == 0.0).all() and (
            twins.summary["revenue_diff_ci_high"] == 0.0
        ).all()


def test_paired_intervals_use_the_pairing():
    # The reference varies a lot from seed to seed and the policy earns 5 more on each: resampled in pairs,
    # the difference's interval is narrow around 5; resampled apart it would be as wide as the seeds' spread.
    rng = np.random.default_rng(0)
    b = rng.normal(100.0, 30.0, 10)
    a = b + 5.0 + rng.normal(0.0, 0.5, 10)
    d = paired_difference(a, b, np.random.default_rng(1))
    low, high = d.difference_ci
    assert low < d.difference < high and high - low < 1.0
    spread = np.subtract(*bootstrap_ci(b, np.random.default_rng(1))[::-1])
    assert spread > 20.0


def test_first_month_revenue_is_the_acquisition_cost(config):
    # Month 1 opens with zero balances: no interest, funding or losses, only the acquisition cost is booked.
    window = dict(months=1, progress=False, reference=None, run_off_months=0)
    result = evaluate({"hold": StaticHold()}, config, 300, seeds=[1], **window)
    assert result.per_seed["per_user_revenue"].iloc[0] == pytest.approx(-config.accounting.acquisition_cost)
    assert np.isnan(result.summary["per_user_revenue_ci_low"].iloc[0])  # one seed: no interval
    # With the run-off, month 1 is the same and the balances drawn in it then earn their interest.
    whole = evaluate({"hold": StaticHold()}, config, 300, seeds=[1], months=1, progress=False, reference=None)
    first = whole.monthly.iloc[0]
    assert first["phase"] == "window" and first["revenue_per_user"] == pytest.approx(-100.0)
    assert (whole.monthly["phase"].iloc[1:] == "run_off").all() and len(whole.monthly) > 1


def test_no_m3plus_in_the_first_three_months(config):
    # A balance is drawn in month 1, so the earliest miss is month 2 and M3 is month 4 at the soonest.
    three = evaluate(
        {"hold": StaticHold()}, config, 2000, seeds=[0], months=3, progress=False, reference=None, run_off_months=0
    )
    assert three.per_seed["m3plus_rate"].iloc[0] == 0.0 and three.per_seed["m3plus_rate_accounts"].iloc[0] == 0.0
    year = evaluate({"hold": StaticHold()}, config, 2000, seeds=[0], months=12, progress=False, reference=None)
    assert year.per_seed["m3plus_rate"].iloc[0] > 0.0


def test_monthly_path_adds_up(config):
    result = evaluate({"best_static": BestStatic(1.5), "hold": StaticHold()}, config, seeds=[0, 1], **SMALL)
    totals = result.monthly.groupby(["policy", "seed"])["revenue_per_user"].sum()
    per_seed = result.per_seed.set_index(["policy", "seed"])["per_user_revenue"]
    pd.testing.assert_series_equal(totals.sort_index(), per_seed.sort_index(), check_names=False)
    window = result.monthly[result.monthly["phase"] == "window"]
    assert set(window["month"]) == set(range(1, 13))
    assert (result.monthly.loc[result.monthly["month"] > 12, "phase"] == "run_off").all()
    assert result.monthly.groupby(["policy", "seed"]).size().nunique() == 1  # the same months for every run
    # Raising lines raises the average line; utilisation is balance / line, so it stays in [0, 1.5].
    summary = result.summary.set_index("policy")
    assert summary.loc["best_static", "average_line"] > 1.4 * summary.loc["hold", "average_line"]
    assert window["utilisation"].between(0, 1.5).all()


def test_the_horizon_is_not_attrition_and_balances_run_off(config):
    # No misses and no voluntary closures: every account reaches the 6-month horizon, which is neither a
    # closure nor a charge-off; its balance then runs off (interest still earned, nothing drawn) until
    # repaid, and repaying in the run-off is not attrition either.
    quiet = load_config(
        "wechat",
        {
            "env.horizon": 6,
            "attrition.base_rate": 0.0,
            "attrition.cut_effect": 0.0,
            "attrition.low_line_effect": 0.0,
            "attrition.apr_effect": 0.0,
            "default.risk_intercept": -40.0,
        },
    )
    result = evaluate({"hold": StaticHold()}, quiet, 500, seeds=[0], progress=False, reference=None)
    row = result.per_seed.iloc[0]
    assert row["attrition_rate"] == 0.0 and row["charge_off_rate"] == 0.0 and row["m3plus_rate"] == 0.0
    assert row["run_off_left"] == 0.0 and row["run_off_revenue"] > 0.0 and row["credit_loss_per_user"] == 0.0
    monthly = result.monthly.set_index("month")
    assert (monthly.loc[:6, "phase"] == "window").all() and (monthly.loc[7:, "phase"] == "run_off").all()
    # The book shrinks month after month in the run-off, and every balance is repaid within the bound.
    run_off_line = monthly.loc[7:, "utilisation"].dropna().to_numpy()  # NaN once every account has left
    assert (np.diff(run_off_line) < 0).all() and len(run_off_line) < 60
    with pytest.raises(ValueError, match="env.horizon = 6"):
        evaluate({"hold": StaticHold()}, quiet, 50, seeds=[0], months=12, progress=False)


def test_attrition_counts_closures(config):
    closing = load_config("wechat", {"attrition.base_rate": 0.2})
    base = evaluate({"hold": StaticHold()}, config, 1000, seeds=[0], months=12, progress=False, reference=None)
    high = evaluate({"hold": StaticHold()}, closing, 1000, seeds=[0], months=12, progress=False, reference=None)
    # 20% of current accounts a month close: well above 1 closure per account-year.
    assert high.per_seed["attrition_rate"].iloc[0] > 1.0 > base.per_seed["attrition_rate"].iloc[0]


def test_cap_is_the_configs(config):
    tight = load_config("wechat", {"env.m3plus_cap": 0.0})
    result = evaluate({"hold": StaticHold()}, tight, seeds=[0, 1], **SMALL, reference=None)
    assert (result.summary["cap"] == 0.0).all() and not result.summary["meets_cap"].any()
    loose = load_config("wechat", {"env.m3plus_cap": 1.0})
    result = evaluate({"hold": StaticHold()}, loose, seeds=[0, 1], **SMALL, reference=None)
    assert result.summary["meets_cap"].all() and (result.summary["meets_cap_share"] == 1.0).all()


def test_segments_partition_the_cohort(config):
    result = evaluate({"best_static": StaticHold()}, config, seeds=[0, 1], **SMALL)
    seg = result.by_segment
    assert set(seg["segment"]) == set(SEGMENTS)
    for segment, levels in SEGMENTS.items():
        rows = seg[seg["segment"] == segment]
        assert set(rows["level"]) <= set(levels)
        assert rows["cohort_accounts"].sum() == pytest.approx(SMALL["num_accounts"])


def test_continuous_policy_gives_the_same_numbers(config):
    discrete = evaluate({"best_static": BestStatic(1.8)}, config, seeds=[0], **SMALL)
    box = evaluate({"best_static": BestStatic(1.8, continuous=True)}, config, seeds=[0], **SMALL)
    cols = ["per_user_revenue", "m3plus_rate", "average_line", "attrition_rate"]
    # Not bit-identical: a float32 Box action maps back to 1.25 only to ~1e-7, and a line of e.g. 600 x 1.25
    # = 750 sits exactly on the simulator's rounding to whole hundreds, so a few lines end 100 CNY apart.
    np.testing.assert_allclose(discrete.per_seed[cols].to_numpy(), box.per_seed[cols].to_numpy(), rtol=5e-3)
    assert (
        box.per_seed["average_line"].iloc[0]
        > 1.7 * evaluate({"best_static": StaticHold()}, config, seeds=[0], **SMALL).per_seed["average_line"].iloc[0]
    )


def test_bad_input_is_named(config):
    with pytest.raises(TypeError, match="reference must be a policy name or None"):
        evaluate({"hold": StaticHold()}, config, seeds=[0], reference=StaticHold(), **SMALL)
    with pytest.raises(ValueError, match="run_off_months"):
        evaluate({"hold": StaticHold()}, config, seeds=[0], run_off_months=-1, **SMALL)
    with pytest.raises(ValueError, match="distinct"):
        evaluate({"best_static": StaticHold()}, config, seeds=[0, 0], **SMALL)
    with pytest.raises(ValueError, match="at least one"):
        evaluate({"best_static": StaticHold()}, config, seeds=[], **SMALL)
    with pytest.raises(TypeError, match="policy 'x' has no predict"):
        evaluate({"best_static": StaticHold(), "x": object()}, config, seeds=[0], **SMALL)
    with pytest.raises(ValueError, match="seeds must be integers"):
        evaluate({"best_static": StaticHold()}, config, seeds=[-1], **SMALL)
    with pytest.raises(ValueError, match="months"):
        evaluate({"best_static": StaticHold()}, config, 10, seeds=[0], months=0, progress=False)


def test_seed_blocks_and_splits():
    assert portfolio_seed(1) - portfolio_seed(0) >= 2**31  # room for any realistic portfolio
    split = split_seeds(training=3, tuning=2, evaluation=4, start=10)
    assert split.training == (10, 11, 12) and split.tuning == (13, 14) and split.evaluation == (15, 16, 17, 18)
    check_disjoint(**split._asdict())
    with pytest.raises(ValueError, match=r"tuning and evaluation seeds overlap on \[14\]"):
        check_disjoint(training=split.training, tuning=split.tuning, evaluation=(14, 20))
    with pytest.raises(ValueError, match="tuning"):
        split_seeds(training=1, tuning=-1, evaluation=1)


@pytest.mark.slow
def test_a_trained_sb3_model_goes_through_the_same_evaluator(config):
    from stable_baselines3 import PPO

    import envs
    from agents.policies import Policy

    model = PPO("MlpPolicy", envs.make_portfolio(config, 4, seed=0), n_steps=8, batch_size=32, seed=0, device="cpu")
    assert isinstance(model, Policy)
    result = evaluate({"ppo": model, "best_static": BestStatic(1.25)}, config, seeds=[0, 1], **SMALL)
    row = result.summary.set_index("policy").loc["ppo"]
    assert np.isfinite(row["per_user_revenue"]) and np.isfinite(row["uplift_vs_best_static"])
    # An untrained network picks varied actions, so its book differs from best static's.
    assert row["average_line"] != result.summary.set_index("policy").loc["best_static", "average_line"]


# -- comparisons, oracle, regimes, privileged policies ---------------------------------------------------------
def test_comparisons_with_the_rule_and_the_oracle():
    # Without the acquisition cost every policy earns more than zero on these seeds, so uplifts are defined.
    config = load_config("wechat", {"accounting.acquisition_cost": 0.0})
    # "oracle" here is any policy under that name that out-earns the reference on these seeds (which of a
    # lower and a higher static line does depends on the calibration, so the test picks it from a first
    # run); every policy earns more than zero. The columns are checked against the per-seed revenue by hand.
    candidates = {"best_static": StaticHold(), "up": BestStatic(1.25), "down": BestStatic(0.9)}
    first = evaluate(candidates, config, seeds=[1, 4, 5], **SMALL).per_seed.groupby("policy")["per_user_revenue"]
    better = first.mean().drop("best_static").idxmax()
    policies = {
        "best_static": StaticHold(),
        "rule": RuleBased(),
        "oracle": candidates[better],
        "other": BestStatic(1.1),
    }
    result = evaluate(policies, config, seeds=[1, 4, 5], **SMALL)
    mean = result.per_seed.groupby("policy")["per_user_revenue"].mean()
    summary = result.summary.set_index("policy")
    gain = mean["oracle"] - mean["best_static"]
    assert gain > 0
    for name in policies:
        row = summary.loc[name]
        assert row["revenue_diff_vs_rule"] == pytest.approx(mean[name] - mean["rule"])
        assert row["uplift_vs_rule"] == pytest.approx(mean[name] / mean["rule"] - 1)
        assert row["oracle_share"] == pytest.approx((mean[name] - mean["best_static"]) / gain)
        assert row["uplift_vs_rule_ci_low"] <= row["uplift_vs_rule"] <= row["uplift_vs_rule_ci_high"]
        assert row["revenue_diff_vs_rule_ci_low"] <= row["revenue_diff_vs_rule"] <= row["revenue_diff_vs_rule_ci_high"]
        assert row["comparison_vs_rule"] == "uplift" and row["comparison_vs_best_static"] == "uplift"
    assert summary.loc["oracle", "oracle_share"] == pytest.approx(1.0)
    assert summary.loc["rule", "revenue_diff_vs_rule_ci_low"] == 0.0  # the rule against itself
    # Without a rule or an oracle among the policies (or with None), those columns are NaN, not an error.
    alone = evaluate({"best_static": StaticHold(), "up": BestStatic(1.25)}, config, seeds=[1, 4], **SMALL).summary
    assert alone[["uplift_vs_rule", "revenue_diff_vs_rule", "oracle_share"]].isna().all().all()
    assert alone["comparison_vs_rule"].isna().all()
    nothing = evaluate({"hold": StaticHold()}, config, seeds=[0], **SMALL).summary  # no best_static either
    assert nothing[["uplift_vs_best_static", "revenue_diff_vs_best_static"]].isna().all().all()


def test_a_loss_making_reference_is_compared_in_cny(config):
    # An acquisition cost far above what an account earns: every policy loses money, so a relative uplift
    # over the reference means nothing; the difference in CNY per user is what the table shows.
    costly = load_config("wechat", {"accounting.acquisition_cost": 2000.0})
    policies = {"best_static": StaticHold(), "rule": RuleBased(), "up": BestStatic(1.25)}
    summary = evaluate(policies, costly, seeds=[0, 1, 2], **SMALL).summary
    assert (summary["per_user_revenue"] < 0).all()
    assert summary["uplift_vs_best_static"].isna().all() and summary["uplift_vs_rule"].isna().all()
    assert (summary["comparison_vs_best_static"] == "revenue_diff").all()
    assert summary["revenue_diff_vs_best_static"].notna().all() and summary["revenue_diff_ci_low"].notna().all()
    up = format_summary(summary).splitlines()[3]
    diff = summary.set_index("policy").loc["up", "revenue_diff_vs_best_static"]
    assert f"{diff:+.1f} CNY" in up and "CNY]" not in up and "] CNY" in up


def test_format_summary_shows_the_rule_oracle_and_regimes():
    summary = pd.DataFrame(
        {
            "policy": ["best_static", "rule", "agent"],
            "per_user_revenue": [300.0, 320.0, 352.0],
            "m3plus_rate": [0.017, 0.016, 0.0175],
            "m3plus_rate_normal": [0.015, 0.014, 0.016],
            "m3plus_rate_stress": [0.03, 0.028, 0.024],
            "cap": 0.018,
            "meets_cap": True,
            "uplift_vs_best_static": [0.0, 0.0667, 0.1733],
            "uplift_vs_rule": [-0.0625, 0.0, 0.1],
            "uplift_vs_rule_ci_low": [-0.08, 0.0, 0.04],
            "uplift_vs_rule_ci_high": [-0.05, 0.0, 0.16],
            "comparison_vs_rule": "uplift",
            "oracle_share": [0.0, 0.25, 0.65],
        }
    )
    lines = format_summary(summary).splitlines()
    assert "uplift vs rule" in lines[0] and "oracle share" in lines[0] and "M3+ stress [%]" in lines[0]
    assert "+10.0%" in lines[3] and "[+4.0, +16.0]%" in lines[3] and "0.65" in lines[3] and "2.40" in lines[3]
    # A summary without those columns prints as before, without them.
    plain = format_summary(summary[["policy", "per_user_revenue", "m3plus_rate", "cap", "meets_cap"]])
    assert "rule" not in plain.splitlines()[0] and "oracle" not in plain


def test_m3plus_by_macro_regime(config):
    # Stress forced in calendar months 10-17 only (never entered by chance, left at once): months 11-18 of
    # the run are stress months, and the pooled rate lies between the two regimes' rates.
    regimes = {"macro.enter_stress": 0.0, "macro.exit_stress": 1.0, "macro.forced_stress_start": 10}
    mixed = load_config("wechat", {**regimes, "macro.forced_stress_months": 8})
    result = evaluate({"best_static": StaticHold()}, mixed, 2000, seeds=[0], progress=False)
    monthly = result.monthly.set_index("month")["macro_stress"]
    assert set(monthly.index[monthly.fillna(False)]) == set(range(11, 19))
    row = result.per_seed.iloc[0]
    assert row["m3plus_rate_normal"] < row["m3plus_rate"] < row["m3plus_rate_stress"]
    calm = load_config("wechat", {**regimes, "macro.forced_stress_months": 0})
    row = evaluate({"best_static": StaticHold()}, calm, 500, seeds=[0], progress=False).per_seed.iloc[0]
    assert np.isnan(row["m3plus_rate_stress"]) and row["m3plus_rate_normal"] == row["m3plus_rate"]


class Privileged(StaticHold):
    """A policy that asks for the simulator, as the oracle does, and records what it was given."""

    def __init__(self):
        super().__init__()
        self.bound, self.checked = [], []

    def bind_simulator(self, sim):
        self.bound.append(sim)
        self.checked.append(None)

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        if self.checked and self.checked[-1] is None:  # the first predict after a binding
            lines = self.bound[-1].state.line
            self.checked[-1] = bool(np.array_equal(obs[:, obs_index()["line"]], lines.astype(np.float32)))
        return super().predict(obs, state, episode_start, deterministic)


def test_privileged_policies_are_bound_to_each_runs_simulator(config):
    oracle = Privileged()
    evaluate({"best_static": StaticHold(), "oracle": oracle}, config, seeds=[0, 1], **SMALL)
    assert len(oracle.bound) == 2 and oracle.bound[0] is not oracle.bound[1]  # one simulator per run
    assert oracle.checked == [True, True]  # bound before its first predict, to the accounts it then sees


# -- whole-life accounting: the run-off ------------------------------------------------------------------------
def test_the_run_off_adds_to_the_window_and_ends(config):
    policies = {"best_static": BestStatic(1.5), "hold": StaticHold()}
    whole = evaluate(policies, config, seeds=[0, 1], **SMALL).per_seed.set_index(["policy", "seed"])
    window = evaluate(policies, config, seeds=[0, 1], **SMALL, run_off_months=0).per_seed.set_index(["policy", "seed"])
    # The window is the same with or without a run-off after it; the run-off adds its own revenue.
    np.testing.assert_allclose(
        whole["per_user_revenue"] - whole["run_off_revenue"], window["per_user_revenue"], rtol=1e-12
    )
    for name in ("utilisation", "average_line", "attrition_rate"):  # the window's book, unchanged
        np.testing.assert_allclose(whole[name], window[name], rtol=1e-12)
    assert (window["run_off_left"] > 0.5).all() and (window["run_off_revenue"] == 0.0).all()  # open at month 12
    assert (whole["run_off_left"] == 0.0).all()  # every balance repaid or charged off within the bound
    assert (whole["credit_loss_per_user"] > window["credit_loss_per_user"]).all()  # defaults after the window
    short = evaluate(policies, config, seeds=[0], **SMALL, run_off_months=1)
    assert (short.per_seed["run_off_left"] > 0).all() and short.monthly["month"].max() == 13


def test_start_run_off_freezes_drawing():
    import envs

    venv = envs.make_portfolio("wechat", 400, seed=portfolio_seed(7))
    venv.reset()
    for _ in range(6):
        venv.step(np.full(400, HOLD_ACTION))
    sim = venv.sim
    lines = sim.state.line.copy()
    sim.start_run_off(np.arange(400))
    open_ = np.ones(400, dtype=bool)
    for _ in range(60):
        month = sim.step(np.ones(400))
        assert (month.drawn[open_] == 0.0).all()  # nothing drawn: the balance only runs off
        open_ &= ~month.terminated
    assert not open_.any() and np.array_equal(sim.state.line, lines)


RAISE = LIMIT_MULTIPLIERS.index(1.5)


class RaiseAt:
    """Raise every line x1.5 once, in the account's month ``month + 1`` on book; hold otherwise."""

    continuous = False

    def __init__(self, month: int):
        self.month = month

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        return np.where(obs[:, obs_index()["months_on_book"]] == self.month, RAISE, HOLD_ACTION), state


@pytest.mark.slow
def test_a_late_raise_pays_for_its_revenue_in_m3plus_like_an_early_one(config):
    # Issue 8 item 7: with a window alone, raising every line in month 25 earns revenue whose risk falls
    # after the window (measured: +8.8% revenue for +0.03 pp M3+, against +12.2% for +0.57 pp for the same
    # raise at origination; revenue bought per M3+ point 326 %/pp against 21). Over whole lives the late
    # raise buys no more revenue per M3+ point than the early one (measured on simulator v1: -1.2 %/pp late
    # and -1.8 %/pp early; raising is no bargain once the run-off's losses are booked).
    policies = {"best_static": StaticHold(), "early": RaiseAt(0), "late": RaiseAt(24)}

    def revenue_per_m3plus_point(run_off_months: int) -> dict[str, float]:
        result = evaluate(policies, config, 10_000, range(10), progress=False, run_off_months=run_off_months)
        s = result.summary.set_index("policy")
        extra_m3plus = 100 * (s["m3plus_rate"] - s.loc["best_static", "m3plus_rate"])  # [pp]
        assert (extra_m3plus[["early", "late"]] > 0.02).all()
        return {p: 100 * s.loc[p, "uplift_vs_best_static"] / extra_m3plus[p] for p in ("early", "late")}

    window = revenue_per_m3plus_point(0)
    # The game, with a window alone (if a simulator change removes it, this line documents it no longer).
    assert abs(window["late"] - window["early"]) > 2 * abs(window["early"]), f"window alone: {window} [%/pp]"
    whole = revenue_per_m3plus_point(RUN_OFF_MONTHS)
    # No bargain: the late raise buys at most one early-raise's worth more revenue per M3+ point than the
    # early one (simulator v2 measured -108 %/pp late, -23 %/pp early: a late raise is, if anything, worse).
    assert whole["late"] <= whole["early"] + max(abs(whole["early"]), 1.0), f"whole lives: {whole} [%/pp]"
