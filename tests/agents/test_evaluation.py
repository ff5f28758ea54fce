"""The evaluator: same accounts for every policy, deterministic, metrics that mean what they say."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agents.evaluation import (
    SEGMENTS,
    bootstrap_ci,
    check_disjoint,
    evaluate,
    paired_difference,
    portfolio_seed,
    split_seeds,
)
from agents.policies import BestStatic, RandomPolicy, RuleBased, StaticHold, obs_index
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
    # percentile bootstrap undercovers a little at n = 30 (about 93-94%); 400 repeats give +-2.2% (2 sd).
    rng = np.random.default_rng(123)
    repeats, covered = 400, 0
    for _ in range(repeats):
        low, high = bootstrap_ci(rng.normal(5.0, 2.0, 30), rng, n_boot=1000)
        covered += low <= 5.0 <= high
    assert 0.89 <= covered / repeats <= 0.98


def test_bootstrap_single_value_has_no_interval():
    assert all(np.isnan(bootstrap_ci([3.0], np.random.default_rng(0))))


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
