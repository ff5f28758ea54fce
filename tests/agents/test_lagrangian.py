"""The M3+ constraint: the PID multiplier moves the right way, the wrapper penalises exactly, stats pool right."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from agents.lagrangian import (
    ConstraintConfig,
    CostPenaltyVecEnv,
    FixedLambda,
    LambdaHolder,
    PIDLagrangian,
    make_controller,
)
from envs.actions import LIMIT_MULTIPLIERS

CAP = 0.018  # wechat's cap (DOMAIN.md section 1); any fraction would do


# -- the PID multiplier -----------------------------------------------------------------------------
def test_lambda_rises_while_the_rate_exceeds_the_cap():
    pid = PIDLagrangian(CAP)
    values = [pid.value] + [pid.update(2 * CAP) for _ in range(20)]
    assert all(b > a for a, b in zip(values, values[1:], strict=False))


def test_lambda_falls_to_zero_below_the_cap_and_never_goes_negative():
    pid = PIDLagrangian(CAP)
    for _ in range(30):
        pid.update(3 * CAP)
    high = pid.value
    values = [pid.update(0.0) for _ in range(200)]
    assert values[0] < high
    assert all(b <= a for a, b in zip(values, values[1:], strict=False))  # monotone down with a steady clean book
    assert values[-1] == 0.0
    assert min(values) >= 0.0 and pid.integral >= 0.0


def test_one_update_follows_the_pid_formula():
    # Stooke et al. 2020: lambda = kp e + I + kd max(0, e - e_prev), I <- max(0, I + ki e); the integral
    # starts at lambda_init. Relative error e = (rate - cap) / cap: 1 at twice the cap, 2 at three times.
    pid = PIDLagrangian(CAP, kp=0.1, ki=0.01, kd=0.01, lambda_init=0.001)
    assert pid.update(2 * CAP) == pytest.approx(0.1 * 1 + (0.001 + 0.01 * 1))  # no derivative yet
    assert pid.update(3 * CAP) == pytest.approx(0.1 * 2 + (0.011 + 0.01 * 2) + 0.01 * (2 - 1))
    # a falling rate adds no derivative term (only rising cost pushes lambda up)
    assert pid.update(2 * CAP) == pytest.approx(0.1 * 1 + (0.031 + 0.01 * 1))


def test_target_share_makes_the_controller_aim_below_the_cap():
    # At 90% of the cap the error is (0.9 cap - 0.8 cap) / (0.8 cap) = +0.125 when aiming at 80% of it.
    aiming_low = make_controller(
        "pid", ConstraintConfig(kp=1.0, ki=0.0, kd=0.0, lambda_init=0.0, target_share=0.8), CAP
    )
    assert aiming_low.update(0.9 * CAP) == pytest.approx(0.125)
    at_cap = make_controller("pid", ConstraintConfig(kp=1.0, ki=0.0, kd=0.0, lambda_init=0.0), CAP)
    assert at_cap.update(0.9 * CAP) == 0.0  # below the cap itself: no penalty
    with pytest.raises(ValueError):
        ConstraintConfig(target_share=1.2)  # aiming above the cap is not a cap


def test_absolute_error_uses_the_rate_gap_itself():
    pid = PIDLagrangian(CAP, kp=1.0, ki=0.0, kd=0.0, lambda_init=0.0, relative_error=False)
    assert pid.update(CAP + 0.01) == pytest.approx(0.01)


def test_lambda_is_clipped_at_lambda_max():
    pid = PIDLagrangian(CAP, lambda_max=0.5)
    for _ in range(100):
        pid.update(0.5)
    assert pid.value == 0.5


def test_pid_state_round_trip_continues_identically():
    a = PIDLagrangian(CAP)
    for rate in (0.03, 0.01, 0.05):
        a.update(rate)
    b = PIDLagrangian(CAP)
    b.load_state_dict(a.state_dict())
    assert b.value == a.value
    assert [b.update(r) for r in (0.02, 0.04)] == [a.update(r) for r in (0.02, 0.04)]


def test_state_of_another_kind_is_refused():
    with pytest.raises(ValueError, match="'fixed', not 'pid'"):
        PIDLagrangian(CAP).load_state_dict(FixedLambda(1.0).state_dict())


def test_fixed_and_none_keep_lambda_constant():
    fixed = make_controller("fixed", ConstraintConfig(fixed_lambda=0.7), CAP)
    none = make_controller("none", ConstraintConfig(), CAP)
    for rate in (0.0, CAP, 0.2, 0.9):
        assert fixed.update(rate) == 0.7
        assert none.update(rate) == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cap": 0.0}, "cap"),
        ({"cap": 1.5}, "cap"),
        ({"cap": CAP, "kp": -0.1}, "kp"),
        ({"cap": CAP, "lambda_init": float("nan")}, "lambda_init"),
        ({"cap": CAP, "lambda_max": 0.0}, "lambda_max"),
    ],
)
def test_bad_controller_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PIDLagrangian(**kwargs)


def test_bad_rates_and_kinds_are_refused():
    with pytest.raises(ValueError, match="M3\\+ rate"):
        PIDLagrangian(CAP).update(float("nan"))
    with pytest.raises(ValueError, match="unknown constraint 'soft'"):
        make_controller("soft", ConstraintConfig(), CAP)
    with pytest.raises(ValueError, match="lambda must be"):
        LambdaHolder(-0.1)


# -- the wrapper --------------------------------------------------------------------------------------
def _random_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, len(LIMIT_MULTIPLIERS), size=n)


def test_wrapper_reward_is_raw_reward_minus_lambda_times_scaled_cost():
    n, months, lam, scale = 256, 24, 0.7, 100.0
    raw_env = envs.make_portfolio("wechat", n, seed=123)
    wrapped = CostPenaltyVecEnv(envs.make_portfolio("wechat", n, seed=123), LambdaHolder(lam), CAP, scale)
    raw_env.reset(), wrapped.reset()
    rng = np.random.default_rng(0)
    penalised_months = 0
    for _ in range(months):
        actions = _random_actions(rng, n)
        _, raw, _, _ = raw_env.step(actions)
        _, penalised, _, _ = wrapped.step(actions)
        cost = raw_env.last_info["cost"]
        np.testing.assert_allclose(penalised, raw - lam * scale * cost / CAP, rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(wrapped.last_step.reward, raw)  # the raw reward is kept
        penalised_months += bool(np.any(cost > 0))
    assert penalised_months > 0  # the check above met accounts in M3+, not only zero costs


def test_wrapper_with_lambda_zero_changes_nothing_and_follows_the_holder():
    holder = LambdaHolder(0.0)
    raw_env = envs.make_portfolio("wechat", 64, seed=5)
    wrapped = CostPenaltyVecEnv(envs.make_portfolio("wechat", 64, seed=5), holder, CAP, 100.0)
    raw_env.reset(), wrapped.reset()
    hold = np.full(64, envs.HOLD_ACTION)
    for _month in range(12):
        _, raw, _, _ = raw_env.step(hold)
        _, penalised, _, _ = wrapped.step(hold)
        np.testing.assert_array_equal(penalised, raw.astype(np.float32))
    holder.value = 2.0  # the wrapper reads the holder every step
    raw_env.step(hold), wrapped.step(hold)
    assert np.allclose(wrapped.last_step.penalty, 2.0 * 100.0 * raw_env.last_info["cost"] / CAP)


def test_rollout_stats_pool_the_balance_based_m3plus_rate():
    n = 128
    wrapped = CostPenaltyVecEnv(envs.make_portfolio("wechat", n, seed=7), LambdaHolder(0.1), CAP, 100.0)
    wrapped.reset()
    rng = np.random.default_rng(1)
    m3_balance = balance = reward = 0.0
    for _ in range(30):
        _, _, _, _ = wrapped.step(_random_actions(rng, n))
        info = wrapped.venv.last_info
        in_m3 = (info["months_past_due"] >= 3) & (info["months_past_due"] <= 5)
        m3_balance += info["balance"][in_m3].sum()
        balance += info["balance"].sum()
        reward += wrapped.last_step.reward.sum()
    stats = wrapped.pop_stats()
    assert m3_balance > 0
    assert stats.samples == 30 * n
    assert stats.m3plus_rate == pytest.approx(m3_balance / balance)
    assert stats.mean("reward") == pytest.approx(reward / (30 * n))
    assert wrapped.pop_stats().samples == 0  # popping starts new sums


def test_horizon_is_reported_as_termination_when_asked():
    n, horizon = 16, 3
    for terminal in (True, False):
        wrapped = CostPenaltyVecEnv(
            envs.make_portfolio("wechat", n, seed=3, **{"env.horizon": horizon}),
            LambdaHolder(),
            CAP,
            100.0,
            horizon_is_terminal=terminal,
        )
        wrapped.reset()
        truncated = []
        for _ in range(horizon):
            _, _, dones, infos = wrapped.step(np.full(n, envs.HOLD_ACTION))
            truncated += [infos[i]["TimeLimit.truncated"] for i in np.flatnonzero(dones)]
        assert truncated and any(truncated) != terminal


def test_revenue_objective_penalises_the_revenue():
    n = 64
    wrapped = CostPenaltyVecEnv(
        envs.make_portfolio("wechat", n, seed=11), LambdaHolder(0.5), CAP, 100.0, objective="revenue"
    )
    wrapped.reset()
    for _ in range(8):
        _, penalised, _, _ = wrapped.step(np.full(n, envs.HOLD_ACTION))
        expected = wrapped.venv.last_info["revenue"] - wrapped.last_step.penalty
        np.testing.assert_allclose(penalised, expected, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="objective"):
        CostPenaltyVecEnv(envs.make_portfolio("wechat", 4, seed=1), LambdaHolder(), CAP, 100.0, objective="profit")
