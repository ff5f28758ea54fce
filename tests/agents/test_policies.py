"""Baselines: each does what a bank's policy of that name does, on real portfolios and hand-built accounts."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from agents.policies import BestStatic, Policy, RandomPolicy, RuleBased, RuleParams, StaticHold, obs_index
from envs.actions import HOLD_ACTION, LIMIT_MULTIPLIERS, continuous_to_multiplier
from envs.config import load_config

COL = obs_index()
ACTION = {m: i for i, m in enumerate(LIMIT_MULTIPLIERS)}


@pytest.fixture(scope="module")
def config():
    return load_config("wechat")


def _account(**values: float) -> np.ndarray:
    """One observation row of a current, on-time account at its origination line; ``values`` override it."""
    row = dict(
        line=10_000.0,
        origination_line=10_000.0,
        balance=6_000.0,
        utilisation=0.6,
        months_past_due=0,
        months_on_book=12,
        payment_ratio_1=0.1,
        payment_ratio_2=0.1,
        payment_ratio_3=0.1,
        behaviour_score=650.0,
        apr=0.12,
        age_band=1,
        city_tier=0,
        thin_file=0,
        repayment_mode=1,
        months_since_line_change=12,
        macro_stress=0,
    )
    unknown = set(values) - set(row)
    assert not unknown, f"unknown observation entries {unknown}"
    row.update(values)
    obs = np.zeros(len(COL), dtype=np.float32)
    for name, value in row.items():
        obs[COL[name]] = value
    return obs


def test_layout_matches_the_environment(config):
    # The policies look columns up by name; the env's observation must have one column per name.
    assert len(COL) == envs.make_portfolio(config, 3, seed=0).observation_space.shape[0]


def test_hold_never_changes_a_line(config):
    # Past the horizon, so replacement accounts are checked too.
    venv = envs.make_portfolio(config, 2000, seed=11)
    obs, policy = venv.reset(), StaticHold()
    for _ in range(config.env.horizon + 4):
        actions, _ = policy.predict(obs)
        acting = obs.copy()
        obs, _, _, _ = venv.step(actions)
        np.testing.assert_array_equal(venv.last_info["line"], acting[:, COL["origination_line"]])
        np.testing.assert_array_equal(obs[:, COL["line"]], obs[:, COL["origination_line"]])


def test_best_static_one_is_hold(config):
    venv = envs.make_portfolio(config, 500, seed=3)
    obs = venv.reset()
    for _ in range(6):
        actions, _ = BestStatic(1.0).predict(obs)
        assert np.all(actions == HOLD_ACTION)
        obs, _, _, _ = venv.step(actions)


def test_best_static_steps_of_the_documented_example():
    # 1.8 is reached as x1.5 then x1.25 (1.875), then held: the example in the brief and the docstring.
    policy, obs, taken = BestStatic(1.8), _account(), []
    for _ in range(4):
        action, _ = policy.predict(obs)
        taken.append(LIMIT_MULTIPLIERS[int(action)])
        obs[COL["line"]] *= taken[-1]
    assert taken == [1.5, 1.25, 1.0, 1.0]
    # Below 1 only cuts: 0.675 = 0.75 x 0.9.
    policy, obs, taken = BestStatic(0.675), _account(), []
    for _ in range(4):
        action, _ = policy.predict(obs)
        taken.append(LIMIT_MULTIPLIERS[int(action)])
        obs[COL["line"]] *= taken[-1]
    assert taken == [0.75, 0.9, 1.0, 1.0]


def test_best_static_reaches_its_target_on_a_portfolio(config):
    venv = envs.make_portfolio(config, 3000, seed=5)
    obs, policy = venv.reset(), BestStatic(1.8)
    for _ in range(6):
        obs, _, _, _ = venv.step(policy.predict(obs)[0])
    origination, line = obs[:, COL["origination_line"]], obs[:, COL["line"]]
    settled = (obs[:, COL["months_on_book"]] >= 2) & (1.875 * origination <= config.product.max_line)
    assert settled.sum() > 2000
    # Two raises, each rounded to whole hundreds (<= 50 CNY, the first then scaled by 1.25): <= 112.5 CNY.
    error = np.abs(line[settled] - 1.875 * origination[settled])
    assert error.max() <= 112.5


def test_rule_raises_after_good_months_and_cuts_on_delinquency():
    p = RuleParams(
        raise_multiplier=1.25,
        good_months=6,
        min_utilisation=0.5,
        cut_multiplier=0.75,
        cut_score=500.0,
        line_cap=2.0,
        line_floor=0.5,
    )
    raise_, cut, hold = ACTION[1.25], ACTION[0.75], HOLD_ACTION
    cases = [
        (_account(months_since_line_change=6), raise_),  # k good months: raise
        (_account(months_since_line_change=5), hold),  # one month short
        (_account(months_on_book=5, months_since_line_change=5), hold),  # too new
        (_account(payment_ratio_2=0.0), hold),  # a missed payment two months ago
        (_account(utilisation=0.3), hold),  # does not use the line
        (_account(line=18_000.0), hold),  # a raise would pass the cap of 2x origination
        (_account(line=16_000.0), raise_),  # 20,000 is within the cap
        (_account(months_past_due=1), cut),  # delinquent
        (_account(months_past_due=3, payment_ratio_1=0.0), cut),
        (_account(behaviour_score=480.0), cut),  # score below the cut threshold
        (_account(months_past_due=1, line=6_000.0), hold),  # a cut would go below the 0.5 floor
        (_account(months_past_due=1, line=7_000.0), cut),  # 5,250 is above the floor
    ]
    obs = np.stack([c[0] for c in cases])
    actions, state = RuleBased(p).predict(obs)
    assert state is None
    assert actions.tolist() == [c[1] for c in cases]
    # One account at a time gives the same answers.
    assert [int(RuleBased(p).predict(o)[0]) for o, _ in cases] == [c[1] for c in cases]


def test_rule_without_cap_and_short_review():
    p = RuleParams(good_months=2, line_cap=None, min_utilisation=0.0)
    # Only the last two payment ratios matter for a two-month review.
    obs = np.stack(
        [
            _account(months_since_line_change=2, payment_ratio_3=0.0, line=150_000.0),
            _account(months_since_line_change=2, payment_ratio_2=0.0),
        ]
    )
    assert RuleBased(p).predict(obs)[0].tolist() == [ACTION[p.raise_multiplier], HOLD_ACTION]


@pytest.mark.parametrize(
    "bad",
    [
        dict(raise_multiplier=1.3),
        dict(cut_multiplier=1.1),
        dict(good_months=0),
        dict(min_utilisation=-0.1),
        dict(cut_score=100.0),
        dict(line_cap=0.8),
        dict(line_floor=0.0),
        dict(line_floor=1.5),
        dict(min_utilisation="0.5"),
        dict(line_cap="3"),
        dict(good_months=6.5),
    ],
)
def test_rule_params_reject_bad_values(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        RuleParams(**bad)


def test_random_is_seeded_and_covers_every_action():
    obs = np.stack([_account()] * 5000)
    a, _ = RandomPolicy(7).predict(obs)
    b, _ = RandomPolicy(7).predict(obs)
    c, _ = RandomPolicy(8).predict(obs)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    counts = np.bincount(a, minlength=len(LIMIT_MULTIPLIERS))
    assert counts.size == len(LIMIT_MULTIPLIERS) and counts.min() > 5000 / 7 * 0.8
    box, _ = RandomPolicy(7, continuous=True).predict(obs)
    assert box.shape == (5000, 1) and box.min() >= -1 and box.max() <= 1 and box.std() > 0.4


@pytest.mark.parametrize("policy", [StaticHold(), BestStatic(1.8), BestStatic(0.675), RuleBased()])
def test_continuous_actions_are_the_same_multipliers(policy, config):
    venv = envs.make_portfolio(config, 400, seed=2)
    obs = venv.reset()
    for _ in range(8):
        discrete, _ = policy.predict(obs)
        policy.continuous = True
        box, _ = policy.predict(obs)
        policy.continuous = False
        assert box.shape == (400, 1) and box.dtype == np.float32
        np.testing.assert_allclose(continuous_to_multiplier(box), np.array(LIMIT_MULTIPLIERS)[discrete], rtol=1e-6)
        obs, _, _, _ = venv.step(discrete)


def test_single_observation_shapes():
    obs = _account()
    action, _ = RuleBased().predict(obs)
    assert action.shape == () and action.dtype == np.int64
    box, _ = StaticHold(continuous=True).predict(obs)
    assert box.shape == (1,)


@pytest.mark.parametrize("policy", [StaticHold(), BestStatic(1.5), RuleBased(), RandomPolicy(0)])
def test_bad_observations_are_rejected(policy):
    assert isinstance(policy, Policy)
    with pytest.raises(ValueError, match=r"shape \(17,\) or \(n, 17\)"):
        policy.predict(np.zeros((4, 16)))
    with pytest.raises(ValueError, match="shape"):
        policy.predict(np.zeros((2, 3, 17)))


@pytest.mark.parametrize("target", [0, -1.0, float("nan"), float("inf"), "1.5"])
def test_best_static_rejects_bad_targets(target):
    with pytest.raises(ValueError, match="target"):
        BestStatic(target)


@pytest.mark.parametrize("target", [0.0625, 0.16875, 0.375])
def test_best_static_reaches_targets_below_one_half_by_repeated_cuts(target):
    # Lower lines than a single x0.5 step: x0.5 again and again, then x0.75 or x0.9, each month.
    policy, obs, months = BestStatic(target), _account(line=100_000.0, origination_line=100_000.0), 0
    while (action := int(policy.predict(obs)[0])) != HOLD_ACTION:
        obs[COL["line"]] *= LIMIT_MULTIPLIERS[action]  # no rounding: 100,000 x each target is whole hundreds
        months += 1
    assert obs[COL["line"]] == pytest.approx(target * 100_000.0)
    assert months == {0.0625: 4, 0.16875: 4, 0.375: 2}[target]  # 0.5^4; 0.5^2 x 0.75 x 0.9; 0.5 x 0.75


def test_rule_cuts_a_delinquent_line_down_to_a_low_floor():
    policy = RuleBased(RuleParams(cut_multiplier=0.5, line_floor=0.125))
    obs, lines = _account(months_past_due=2, line=16_000.0, origination_line=16_000.0), []
    for _ in range(5):
        if int(policy.predict(obs)[0]) == ACTION[0.5]:
            obs[COL["line"]] *= 0.5
        lines.append(float(obs[COL["line"]]))
    assert lines == [8_000.0, 4_000.0, 2_000.0, 2_000.0, 2_000.0]  # three cuts to 0.125 x 16,000, then held
