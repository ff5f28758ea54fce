"""Tuning: the best candidate under the cap, on seeds apart from the evaluation seeds."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import envs
from agents.evaluation import portfolio_seed
from agents.oracle import ORACLE_SPACE
from agents.policies import BestStatic, RuleParams, obs_index
from agents.tuning import (
    DEFAULT_STATIC_GRID,
    RULE_SPACE,
    sample_rule_params,
    select_under_cap,
    tune_best_static,
    tune_rule,
)
from envs.actions import HOLD_ACTION, LIMIT_MULTIPLIERS
from envs.config import load_config

ACCOUNTS, MONTHS, SEEDS = 500, 12, (20, 21)


def _cohort_revenue(config, policy, seed: int) -> float:
    """Per-user revenue computed by hand: the first accounts' revenue until each first ends, per account,
    the accounts still open after the window running off with their lines held until each has ended."""
    venv = envs.make_portfolio(config, ACCOUNTS, seed=portfolio_seed(seed), **{"macro.seed": seed})
    obs, alive, total = venv.reset(), np.ones(ACCOUNTS, dtype=bool), 0.0
    for _ in range(MONTHS):
        obs, _, dones, _ = venv.step(policy.predict(obs)[0])
        total += venv.last_info["revenue"][alive].sum()
        alive &= ~dones
    venv.sim.start_run_off(np.flatnonzero(alive))
    while alive.any():
        month = venv.sim.step(np.ones(ACCOUNTS))
        total += month.revenue[alive].sum()
        alive &= ~month.terminated
    return total / ACCOUNTS


def test_select_under_cap():
    table = pd.DataFrame(
        {
            "per_user_revenue": [300.0, 500.0, 400.0, 900.0],
            "m3plus_rate": [0.01, 0.015, 0.012, 0.03],
            "meets_cap": [True, True, True, False],
            "cap": 0.018,
        }
    )
    assert select_under_cap(table) == 1  # 900 breaks the cap
    none = table.assign(meets_cap=False, cap=0.005)
    with pytest.warns(UserWarning, match="no candidate meets the M3\\+ cap"):
        assert select_under_cap(none) == 0  # the lowest M3+ rate
    with pytest.raises(ValueError, match="no candidates"):
        select_under_cap(table.iloc[:0])


@pytest.mark.parametrize("cap", [1.0, 0.0])
def test_best_static_picks_the_best_x_of_a_tiny_grid(cap):
    # Cap 1.0: every x meets it and the answer is the highest revenue. Cap 0.0: after 12 months from a
    # fresh book the M3+ rate is positive for every x, so none meets it and the lowest M3+ rate wins.
    config = load_config("wechat", {"env.m3plus_cap": cap})
    grid = (0.75, 1.0, 1.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = tune_best_static(config, SEEDS, ACCOUNTS, grid=grid, progress=False, months=MONTHS)
    by_hand = [np.mean([_cohort_revenue(config, BestStatic(x), s) for s in SEEDS]) for x in grid]
    np.testing.assert_allclose(result.table["per_user_revenue"], by_hand, rtol=1e-9)
    if cap == 1.0:
        assert result.target == grid[int(np.argmax(by_hand))]
    else:
        assert result.target == grid[int(np.argmin(result.table["m3plus_rate"]))]
        assert any("no candidate meets" in str(w.message) for w in caught)
    assert result.table["chosen"].sum() == 1
    assert result.table.loc[result.table["chosen"], "target"].item() == result.target
    assert list(result.table["target"]) == list(grid)


def test_tuning_refuses_evaluation_seeds():
    with pytest.raises(ValueError, match=r"tuning and holdout seeds overlap on \[21\]"):
        tune_best_static("wechat", SEEDS, ACCOUNTS, grid=(1.0,), progress=False, holdout_seeds=[21, 30])
    with pytest.raises(ValueError, match="overlap"):
        tune_rule("wechat", SEEDS, ACCOUNTS, n_trials=1, progress=False, holdout_seeds=[20])
    with pytest.raises(ValueError, match="distinct"):
        tune_best_static("wechat", SEEDS, ACCOUNTS, grid=(1.0, 1.0), progress=False)
    with pytest.raises(ValueError, match="target"):
        tune_best_static("wechat", SEEDS, ACCOUNTS, grid=(0.0,), progress=False)


def test_rule_tuning_is_seeded_and_picks_the_best_trial():
    config = load_config("wechat", {"env.m3plus_cap": 1.0})
    a = tune_rule(config, SEEDS, ACCOUNTS, n_trials=4, progress=False, months=MONTHS, search_seed=5)
    b = tune_rule(config, SEEDS, ACCOUNTS, n_trials=4, progress=False, months=MONTHS, search_seed=5)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert len(a.table) == 4 and a.table.loc[0, "good_months"] == RuleParams().good_months  # trial 0: defaults
    chosen = a.table.loc[a.table["chosen"], list(RULE_SPACE)].to_dict("records")[0]
    assert a.params == RuleParams(**{k: (None if pd.isna(v) else v) for k, v in chosen.items()})
    assert a.table.loc[a.table["chosen"], "per_user_revenue"].item() == a.table["per_user_revenue"].max()


def test_rule_samples_stay_in_the_space():
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = sample_rule_params(rng)
        for name, options in RULE_SPACE.items():
            value = getattr(p, name)
            if name in ("min_utilisation", "cut_score"):
                assert options[0] <= value <= options[1]
            else:
                assert value in options


def _greedy_line(target: float) -> float:
    """Where BestStatic(target) takes a line (origination 1), stepped without the simulator's rounding."""
    obs = np.zeros((1, len(obs_index())), dtype=np.float64)
    col, policy = obs_index(), BestStatic(target)
    obs[0, col["line"]] = obs[0, col["origination_line"]] = 1.0
    while (action := int(policy.predict(obs)[0][0])) != HOLD_ACTION:
        obs[0, col["line"]] *= LIMIT_MULTIPLIERS[action]
    return float(obs[0, col["line"]])


def test_the_static_grid_holds_distinct_lines_down_to_the_products_floor():
    # Each target is a line the greedy steps land on (2.0 is the one that lands nearby, 1.5 x 1.25 x 1.1).
    landed = [_greedy_line(x) for x in DEFAULT_STATIC_GRID]
    np.testing.assert_allclose(landed[:-1], DEFAULT_STATIC_GRID[:-1], rtol=1e-12)
    assert landed[-1] == pytest.approx(1.5 * 1.25 * 1.1)
    assert len(set(np.round(landed, 9))) == len(landed)
    # Going lower adds nothing for most accounts: the lowest target and floor put the median account's line
    # below product.min_line, where the simulator stops every cut.
    for preset in ("wechat", "alipay", "jd", "douyin"):
        config = load_config(preset)
        venv = envs.make_portfolio(config, 2000, seed=portfolio_seed(1))
        median = float(np.median(venv.reset()[:, obs_index()["origination_line"]]))
        lowest = config.product.min_line / median
        assert min(DEFAULT_STATIC_GRID) < lowest, preset
        assert min(RULE_SPACE["line_floor"]) < lowest and min(ORACLE_SPACE["line_floor"]) < lowest, preset
