"""The risk-model line policy: observations only, disjoint seeds, a JSON round trip, a model better than chance."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import envs
from agents.evaluation import evaluate
from agents.oracle import Oracle
from agents.policies import obs_index
from agents.risk_policy import RiskParams, RiskPolicy
from agents.risk_scorecard import (
    CATEGORICAL,
    CONTINUOUS,
    RiskModel,
    _labels,
    fit_risk_model,
    fit_uptake_model,
    load_risk_policy_config,
    simulate_histories,
)
from agents.risk_tuning import RISK_SPACE, SEARCH_ROUNDS, perturb_risk_params, train_risk_policy, tune_risk_policy
from envs.actions import HOLD_ACTION, LIMIT_MULTIPLIERS
from envs.config import load_config
from envs.simulator import Simulator

SMALL = load_risk_policy_config("wechat", {"accounts": 300, "training_seeds": 2})


def constant_model(risk: float) -> RiskModel:
    """A scorecard predicting ``risk`` for everyone (no bins, zero coefficients)."""
    names = CONTINUOUS + CATEGORICAL
    return RiskModel({n: [] for n in names}, {n: [0.0] for n in names}, math.log(risk / (1 - risk)), 3)


def fresh_obs(n: int = 50) -> np.ndarray:
    return envs.make_portfolio("wechat", n, seed=123).reset()


def test_the_policy_reads_no_hidden_state(monkeypatch):
    def hidden(*args, **kwargs):
        raise AssertionError("the simulator's hidden state was read")

    monkeypatch.setattr(Simulator, "hidden_state", hidden)
    monkeypatch.setattr(Simulator, "hidden_traits", hidden)
    # The trap is live: the oracle, which reads the hidden state, trips it.
    with pytest.raises(AssertionError, match="hidden state was read"):
        evaluate({"oracle": Oracle()}, "wechat", 50, [0], months=3, progress=False, reference=None)
    policy = RiskPolicy(constant_model(0.5), RiskParams(cut_risk=0.3))
    assert not hasattr(policy, "bind_simulator")
    summary = evaluate({"risk": policy}, "wechat", 50, [0], months=3, progress=False, reference=None).summary
    assert summary["average_line"].iloc[0] > 0


def test_rules_cut_risky_raise_safe_users_of_the_line_and_hold_otherwise():
    obs = fresh_obs()
    col = obs_index()
    obs[:, col["months_since_line_change"]] = 6.0  # lines changed before: no starting move
    obs[:, col["months_on_book"]] = 12.0
    obs[:, col["months_past_due"]] = 0.0
    obs[:, col["utilisation"]] = 0.9
    obs[:, col["line"]] = obs[:, col["origination_line"]]
    params = RiskParams(cut_risk=0.3, raise_risk=0.05, min_utilisation=0.5, line_cap=2.0, min_uptake=0.5)
    cut, grow = LIMIT_MULTIPLIERS.index(params.cut_multiplier), LIMIT_MULTIPLIERS.index(params.raise_multiplier)
    assert (RiskPolicy(constant_model(0.5), params).predict(obs)[0] == cut).all()
    assert (RiskPolicy(constant_model(0.01), params).predict(obs)[0] == grow).all()
    assert (RiskPolicy(constant_model(0.1), params).predict(obs)[0] == HOLD_ACTION).all()
    idle = obs.copy()
    idle[:, col["utilisation"]] = 0.1  # no sign of unmet need: no raise
    assert (RiskPolicy(constant_model(0.01), params).predict(idle)[0] == HOLD_ACTION).all()
    capped = obs.copy()
    capped[:, col["line"]] *= 2.0  # at the cap already
    assert (RiskPolicy(constant_model(0.01), params).predict(capped)[0] == HOLD_ACTION).all()
    # the need model: a raise the borrower is not expected to use is not made
    unused = RiskPolicy(constant_model(0.01), params, uptake=constant_model(0.3))
    assert (unused.predict(obs)[0] == HOLD_ACTION).all()
    assert (RiskPolicy(constant_model(0.01), params, uptake=constant_model(0.7)).predict(obs)[0] == grow).all()
    # A line never changed since origination is first set to the starting line.
    new = fresh_obs()
    start = RiskParams(start_line=0.5)
    assert (RiskPolicy(constant_model(0.1), start).predict(new)[0] == LIMIT_MULTIPLIERS.index(0.5)).all()


def test_the_starting_line_is_set_by_risk_tier_and_need_once():
    new = fresh_obs()
    col = obs_index()
    assert (new[:, col["months_on_book"]] == 0).all() and (new[:, col["months_since_line_change"]] == 0).all()
    tiers = RiskParams(start_line=0.5, start_safe_risk=0.05, start_safe=1.25, start_uptake=0.6)
    low, rest = LIMIT_MULTIPLIERS.index(0.5), LIMIT_MULTIPLIERS.index(1.25)
    need, no_need = constant_model(0.7), constant_model(0.4)
    assert (RiskPolicy(constant_model(0.01), tiers, uptake=need).predict(new)[0] == rest).all()  # raised at once
    assert (RiskPolicy(constant_model(0.01), tiers, uptake=no_need).predict(new)[0] == low).all()
    assert (RiskPolicy(constant_model(0.2), tiers, uptake=need).predict(new)[0] == low).all()
    # A safe tier starting at the origination line keeps it, and is not cut to start_line later.
    keep = RiskParams(start_line=0.5, start_safe_risk=0.05, start_safe=1.0, raise_risk=0.0)
    assert (RiskPolicy(constant_model(0.01), keep).predict(new)[0] == HOLD_ACTION).all()
    later = new.copy()
    later[:, col["months_on_book"]] = later[:, col["months_since_line_change"]] = 3.0
    assert (RiskPolicy(constant_model(0.01), keep).predict(later)[0] == HOLD_ACTION).all()
    # ... and a start above the origination line happens at application only, never later
    assert (RiskPolicy(constant_model(0.01), tiers, uptake=need).predict(later)[0] != rest).all()


def test_a_used_raise_is_followed_by_a_bigger_one_a_month_on():
    obs = fresh_obs()
    col = obs_index()
    obs[:, col["months_since_line_change"]], obs[:, col["months_on_book"]] = 1.0, 12.0
    obs[:, col["months_past_due"]], obs[:, col["utilisation"]] = 0.0, 0.9
    obs[:, col["line"]] = obs[:, col["origination_line"]]
    params = RiskParams(raise_risk=0.05, raise_wait=3, min_uptake=0.5, fast_uptake=0.8, fast_multiplier=1.5)
    safe = constant_model(0.01)
    fast = LIMIT_MULTIPLIERS.index(1.5)
    assert (RiskPolicy(safe, params, uptake=constant_model(0.9)).predict(obs)[0] == fast).all()
    # expected used but not by enough for the fast lane: waits raise_wait months
    assert (RiskPolicy(safe, params, uptake=constant_model(0.7)).predict(obs)[0] == HOLD_ACTION).all()
    waited = obs.copy()
    waited[:, col["months_since_line_change"]] = 3.0
    grow = LIMIT_MULTIPLIERS.index(params.raise_multiplier)
    assert (RiskPolicy(safe, params, uptake=constant_model(0.7)).predict(waited)[0] == grow).all()
    # the fast step respects the cap: x1.5 from 1.5x origination would pass a 2x cap
    high = obs.copy()
    high[:, col["line"]] *= 1.5
    capped = dataclasses.replace(params, line_cap=2.0)
    assert (RiskPolicy(safe, capped, uptake=constant_model(0.9)).predict(high)[0] == HOLD_ACTION).all()


def test_local_search_starts_at_the_defaults_and_moves_around_the_best():
    rng = np.random.default_rng(0)
    for _ in range(50):
        moved = perturb_risk_params(RiskParams(), rng)
        changed = [k for k, v in dataclasses.asdict(moved).items() if v != dataclasses.asdict(RiskParams())[k]]
        assert len(changed) <= 3  # a redrawn entry may land on its old value
    n = 2 * SEARCH_ROUNDS
    tuned = tune_risk_policy(constant_model(0.01), "wechat", [10], 100, n_trials=n, progress=False)
    table = tuned.table
    assert len(table) == n and table["trial"].tolist() == list(range(n))
    assert table["round"].tolist() == [r for r in range(SEARCH_ROUNDS) for _ in range(2)]
    first = table.iloc[0][list(dataclasses.asdict(RiskParams()))]
    assert first.to_dict() == dataclasses.asdict(RiskParams())  # trial 0: the defaults
    assert table["chosen"].sum() == 1
    chosen = table[table["chosen"]].iloc[0]
    assert chosen["per_user_revenue"] == table[table["meets_cap"]]["per_user_revenue"].max()
    assert dataclasses.asdict(tuned.params)["raise_risk"] == pytest.approx(chosen["raise_risk"])


def test_a_jump_in_the_balance_is_cut_and_the_memory_forgets_new_accounts():
    obs = fresh_obs()
    col = obs_index()
    obs[:, col["months_since_line_change"]] = obs[:, col["months_on_book"]] = 6.0
    obs[:, col["line"]] = obs[:, col["origination_line"]]
    params = RiskParams(cut_risk=0.9, raise_risk=0.0, cut_drawdown=0.3, start_line=1.0)
    policy, cut = RiskPolicy(constant_model(0.1), params), LIMIT_MULTIPLIERS.index(params.cut_multiplier)
    earlier = obs[:, col["balance"]] - 0.5 * obs[:, col["line"]]  # half the line drawn since last month
    actions, state = policy.predict(obs, state=earlier, episode_start=np.zeros(len(obs), bool))
    assert (actions == cut).all()
    np.testing.assert_array_equal(state[:, 0], obs[:, col["balance"]])  # the memory for the next month
    np.testing.assert_array_equal(state[:, 1], obs[:, col["line"]])
    # (above, the memory kept before the line was: balances only) the memory of balance and line, the same
    both = np.stack([earlier, obs[:, col["line"]]], axis=1)
    assert (policy.predict(obs, state=both, episode_start=np.zeros(len(obs), bool))[0] == cut).all()
    # the same accounts seen for the first time (no state, or marked new): no drawdown, no cut
    assert (policy.predict(obs)[0] == HOLD_ACTION).all()
    assert (policy.predict(obs, state=earlier, episode_start=np.ones(len(obs), bool))[0] == HOLD_ACTION).all()


def test_a_raise_used_in_full_is_followed_by_another_at_once():
    obs = fresh_obs()
    col = obs_index()
    obs[:, col["months_on_book"]] = 12.0
    obs[:, col["months_since_line_change"]] = 0.0  # raised last month: the ordinary rule waits (raise_wait)
    obs[:, col["months_past_due"]] = 0.0
    obs[:, col["line"]] = 1.1 * obs[:, col["origination_line"]]
    obs[:, col["balance"]] = obs[:, col["line"]]
    obs[:, col["utilisation"]] = 1.0
    params = RiskParams(raise_risk=0.05, raise_wait=3, line_cap=2.0, start_line=1.0)
    policy, again = RiskPolicy(constant_model(0.01), params), LIMIT_MULTIPLIERS.index(params.used_raise_multiplier)
    line, balance = obs[:, col["line"]], obs[:, col["balance"]]
    before = np.stack([balance - 0.1 * obs[:, col["origination_line"]], obs[:, col["origination_line"]]], axis=1)
    old = np.zeros(len(obs), bool)
    assert (policy.predict(obs, state=before, episode_start=old)[0] == again).all()  # all the raise was drawn
    # without the rule, without the memory (new accounts), or with the raise half used: the ordinary rule holds
    off = RiskPolicy(constant_model(0.01), dataclasses.replace(params, used_raise_share=None))
    assert (off.predict(obs, state=before, episode_start=old)[0] == HOLD_ACTION).all()
    assert (policy.predict(obs, state=before, episode_start=np.ones(len(obs), bool))[0] == HOLD_ACTION).all()
    half = before.copy()
    half[:, 0] = balance - 0.5 * (line - before[:, 1])
    assert (policy.predict(obs, state=half, episode_start=old)[0] == HOLD_ACTION).all()
    # nor for a risky account, nor past the line cap
    assert (RiskPolicy(constant_model(0.1), params).predict(obs, state=before)[0] == HOLD_ACTION).all()
    capped = RiskPolicy(constant_model(0.01), dataclasses.replace(params, line_cap=1.15))
    assert (capped.predict(obs, state=before)[0] == HOLD_ACTION).all()


def test_a_held_line_is_cut_by_the_smallest_step_that_brings_the_balance_to_90_percent_of_it():
    obs = fresh_obs(7)
    col = obs_index()
    obs[:, col["months_on_book"]], obs[:, col["months_since_line_change"]] = 12.0, 6.0
    obs[:, col["months_past_due"]] = 0.0
    obs[:, col["line"]] = obs[:, col["origination_line"]]
    # x0.9 gives 0.85 / 0.9 = 0.94; x0.75: 0.7 / 0.75 = 0.93; x0.5: 0.5 / 0.5 = 1; none reaches 90% from 0.3;
    # at 95% and 90% no cut is needed
    obs[:, col["utilisation"]] = [0.85, 0.7, 0.5, 0.3, 0.95, 0.9, 0.85]
    obs[6, col["months_past_due"]] = 1.0  # delinquent: no new rule for it
    params = RiskParams(cut_risk=0.9, raise_risk=0.0, start_line=1.0, tight_utilisation=0.9)
    index = LIMIT_MULTIPLIERS.index
    expected = [index(0.9), index(0.75), index(0.5), HOLD_ACTION, HOLD_ACTION, HOLD_ACTION, HOLD_ACTION]
    assert RiskPolicy(constant_model(0.1), params).predict(obs)[0].tolist() == expected
    off = RiskPolicy(constant_model(0.1), dataclasses.replace(params, tight_utilisation=None))
    assert (off.predict(obs)[0] == HOLD_ACTION).all()
    # a line never changed gets its starting line first (here: kept), not a tight cut
    obs[:, col["months_since_line_change"]] = 12.0
    assert (RiskPolicy(constant_model(0.1), params).predict(obs)[0] == HOLD_ACTION).all()


def test_a_settled_balance_that_jumps_is_cut_deep_but_a_balance_following_a_raise_is_not():
    obs = fresh_obs()
    col = obs_index()
    obs[:, col["months_on_book"]], obs[:, col["months_past_due"]] = 12.0, 0.0
    obs[:, col["line"]] = obs[:, col["origination_line"]]
    # no other cut (risk below cut_risk, no cut_drawdown) and no raise: only the jump rule can act
    params = RiskParams(cut_risk=0.9, raise_risk=0.0, jump_drawdown=0.15, jump_quiet=3, jump_floor=0.125)
    policy, cut = RiskPolicy(constant_model(0.1), params), LIMIT_MULTIPLIERS.index(params.cut_multiplier)
    earlier = obs[:, col["balance"]] - 0.2 * obs[:, col["line"]]  # a fifth of the line drawn since last month
    settled = obs.copy()
    settled[:, col["months_since_line_change"]] = 3.0
    assert (policy.predict(settled, state=earlier, episode_start=np.zeros(len(obs), bool))[0] == cut).all()
    # the same draw two months after a line change: the borrower taking up a raise, held
    following = obs.copy()
    following[:, col["months_since_line_change"]] = 2.0
    assert (policy.predict(following, state=earlier, episode_start=np.zeros(len(obs), bool))[0] == HOLD_ACTION).all()
    # a smaller draw is held; so is a jump at the floor (x0.5 from 0.2 would go below 0.125 of origination)
    small = obs[:, col["balance"]] - 0.1 * obs[:, col["line"]]
    assert (policy.predict(settled, state=small, episode_start=np.zeros(len(obs), bool))[0] == HOLD_ACTION).all()
    low = settled.copy()
    low[:, col["line"]] = 0.2 * low[:, col["origination_line"]]
    before_low = low[:, col["balance"]] - 0.2 * low[:, col["line"]]
    assert (policy.predict(low, state=before_low, episode_start=np.zeros(len(obs), bool))[0] == HOLD_ACTION).all()
    # the jump cut goes below line_floor (which bounds the risk and cut_drawdown cuts) down to jump_floor
    deep = settled.copy()
    deep[:, col["line"]] = 0.5 * deep[:, col["origination_line"]]
    before_deep = deep[:, col["balance"]] - 0.2 * deep[:, col["line"]]
    assert params.line_floor == 0.5
    assert (policy.predict(deep, state=before_deep, episode_start=np.zeros(len(obs), bool))[0] == cut).all()
    off = RiskPolicy(constant_model(0.1), dataclasses.replace(params, jump_drawdown=2.0))
    assert (off.predict(settled, state=earlier, episode_start=np.zeros(len(obs), bool))[0] == HOLD_ACTION).all()


def test_a_policy_saved_before_the_jump_cut_loads_with_it_off():
    saved = RiskPolicy(constant_model(0.1)).to_dict()
    for name in ("jump_drawdown", "jump_quiet", "jump_floor"):
        del saved["params"][name]
    loaded = RiskPolicy.from_dict(json.loads(json.dumps(saved)))
    assert loaded.params.jump_drawdown > 1.0  # never: it runs as it did when it was saved
    assert RiskParams().jump_drawdown <= 1.0  # while a new policy has the rule on by default
    # a saved jump setting is kept
    kept = RiskPolicy(constant_model(0.1), RiskParams(jump_drawdown=0.3)).to_dict()
    assert RiskPolicy.from_dict(kept).params.jump_drawdown == 0.3


def test_labels_mark_a_miss_within_the_horizon_and_stop_at_the_end_of_an_account():
    # one slot: a miss in month 3; ended in month 1 in a second slot (then a new account misses in month 2)
    miss = np.array([[0, 0], [0, 0], [0, 1], [1, 0], [0, 0]], dtype=bool)
    done = np.array([[0, 0], [0, 1], [0, 0], [0, 0], [0, 0]], dtype=bool)
    label, known = _labels(miss, done, 2)
    assert label[:, 0].tolist() == [False, False, True, True, False]
    assert known[:, 0].tolist() == [True, True, True, True, False]  # month 4's window runs past the end
    # months 0 and 1: the account ended in month 1, so the next account's miss in month 2 is not its own
    assert label[:, 1].tolist() == [False, False, True, False, False]
    assert known[1, 1]  # ended before its window's end: known


def test_seeds_must_be_disjoint():
    with pytest.raises(ValueError, match="overlap"):
        train_risk_policy("wechat", [0, 1], [1, 2], 100, 1, holdout_seeds=[5], settings=SMALL, progress=False)
    with pytest.raises(ValueError, match="overlap"):
        train_risk_policy("wechat", [0, 1], [2], 100, 1, holdout_seeds=[0], settings=SMALL, progress=False)


def test_the_model_beats_chance_on_a_held_out_training_seed():
    from sklearn.metrics import roc_auc_score

    config = load_config("wechat")
    data = simulate_histories(config, [0, 1, 2], SMALL)
    model = fit_risk_model(data.subset(data.seed != 2), SMALL)
    held = data.subset(data.seed == 2)
    auc = roc_auc_score(held.label, model.predict_risk(held.obs, held.previous_balance))
    assert 0.02 < held.label.mean() < 0.5  # an outcome that happens, not a constant
    assert auc > 0.7  # chance is 0.5; delinquency and payment history make misses far from random
    need = fit_uptake_model(data.subset(data.seed != 2), SMALL)
    raised = ~np.isnan(held.uptake)
    assert raised.sum() > 50 and 0.05 < held.uptake[raised].mean() < 0.95
    used = roc_auc_score(held.uptake[raised] > 0.5, need.predict_risk(held.obs[raised], held.previous_balance[raised]))
    assert used > 0.6  # chance is 0.5


def test_save_and_load_round_trip_through_json():
    config = load_config("wechat")
    data = simulate_histories(config, [0], SMALL)
    params = RiskParams(raise_risk=0.1, start_line=0.75)
    policy = RiskPolicy(fit_risk_model(data, SMALL), params, uptake=fit_uptake_model(data, SMALL))
    again = RiskPolicy.from_dict(json.loads(json.dumps(policy.to_dict())))
    assert again.uptake is not None and policy.uptake is not None
    np.testing.assert_allclose(again.uptake.predict_risk(data.obs[:100]), policy.uptake.predict_risk(data.obs[:100]))
    obs, before = data.obs[:2000], data.previous_balance[:2000]
    np.testing.assert_allclose(again.model.predict_risk(obs, before), policy.model.predict_risk(obs, before))
    np.testing.assert_array_equal(again.predict(obs)[0], policy.predict(obs)[0])
    assert again.params == policy.params
    broken = policy.to_dict()
    del broken["model"]["coef"]["utilisation"]
    with pytest.raises(ValueError, match="edges and coefficients"):
        RiskPolicy.from_dict(broken)
    with pytest.raises(ValueError, match="not a saved risk policy"):
        RiskPolicy.from_dict({"params": {}})
    with pytest.raises(ValueError, match="not a saved risk policy: a JSON object expected, got list"):
        RiskPolicy.from_dict([1, 2])  # type: ignore[arg-type]
    saved_before_the_memory = policy.to_dict()
    del saved_before_the_memory["params"]["used_raise_share"]
    del saved_before_the_memory["params"]["tight_utilisation"]
    old = RiskPolicy.from_dict(saved_before_the_memory).params  # acts as it was tuned: without the new rules
    assert old.used_raise_share is None and old.tight_utilisation is None


def test_bad_thresholds_are_named():
    with pytest.raises(ValueError, match="cut_risk"):
        RiskParams(cut_risk=0.0)
    with pytest.raises(ValueError, match="start_line"):
        RiskParams(start_line=1.1)
    with pytest.raises(ValueError, match="raise_wait"):
        RiskParams(raise_wait=0)
    with pytest.raises(ValueError, match="fast_multiplier"):
        RiskParams(fast_multiplier=0.9)
    with pytest.raises(ValueError, match="start_safe must"):
        RiskParams(start_safe=1.3)
    with pytest.raises(ValueError, match="start_safe_risk"):
        RiskParams(start_safe_risk=-0.1)
    with pytest.raises(ValueError, match="used_raise_share"):
        RiskParams(used_raise_share=-1.0)
    with pytest.raises(ValueError, match="used_raise_multiplier"):
        RiskParams(used_raise_multiplier=1.2)
    with pytest.raises(ValueError, match="tight_utilisation"):
        RiskParams(tight_utilisation=0.0)
    with pytest.raises(ValueError, match="jump_floor"):
        RiskParams(jump_floor=0.0)
    with pytest.raises(ValueError, match="jump_quiet"):
        RiskParams(jump_quiet=0)
    with pytest.raises(ValueError, match="jump_drawdown"):
        RiskParams(jump_drawdown="often")  # type: ignore[arg-type]


def test_compare_refuses_a_risk_policy_with_load(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "compare.py"
    args = ["--risk-policy", "--load", str(tmp_path), "--out", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "error" in done.stderr and "--risk-policy" in done.stderr and "--load" in done.stderr


def test_tight_lines_are_off_by_default_and_never_tuned():
    # The rule exploits the simulator's FULL_LINE assumption (a cut to >= 90% utilisation stops closures):
    # a policy chosen for the headline must not pick it up, neither from the defaults nor from the search.
    assert RiskParams().tight_utilisation is None
    assert "tight_utilisation" not in RISK_SPACE
