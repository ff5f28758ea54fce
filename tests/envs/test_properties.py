"""Property-based tests: over random valid configs and random action sequences, the invariants hold.

Override values are drawn inside the ranges the schema allows (envs/config.py); a few unbounded schema
fields (slopes, effects) are drawn from generous but finite ranges, labelled below.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import envs
from envs.actions import LIMIT_MULTIPLIERS, continuous_to_multiplier, multiplier_to_continuous
from envs.config import AGE_BANDS, APR_CEILING, CITY_TIERS, REPAYMENT_MODES, load_config

# max_examples comes from the profile in conftest.py (40; 400 with HYPOTHESIS_PROFILE=explore).
SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow])
ACCOUNTS = 48

prob = st.floats(0.0, 1.0, allow_nan=False)
apr = st.floats(0.0, APR_CEILING, allow_nan=False)


@st.composite
def mixes(draw, categories: tuple[str, ...]) -> dict[str, float]:
    """A mix over a non-empty subset of categories, summing to 1 (to rounding)."""
    chosen = draw(st.lists(st.sampled_from(categories), min_size=1, max_size=len(categories), unique=True))
    weights = [draw(st.floats(0.01, 1.0)) for _ in chosen]
    total = sum(weights)
    return {c: w / total for c, w in zip(chosen, weights, strict=False)}


@st.composite
def sorted_pair(draw, elements: st.SearchStrategy) -> list[float]:
    return sorted([draw(elements), draw(elements)])


@st.composite
def valid_overrides(draw) -> tuple[str, dict[str, Any]]:
    preset = draw(st.sampled_from(envs.available_presets()))
    apr_low, apr_high = draw(sorted_pair(apr))
    min_line = draw(st.floats(1.0, 50_000.0))
    max_line = draw(st.floats(min_line, 400_000.0))
    forced = draw(st.one_of(st.none(), st.integers(0, 12)))
    overrides: dict[str, Any] = {
        "product.apr_low": apr_low,
        "product.apr_high": apr_high,
        "product.market_apr": draw(apr),
        "product.min_line": min_line,
        "product.max_line": max_line,
        "product.line_income_multiple": draw(st.floats(0.05, 20.0)),  # unbounded in the schema; assumption
        "product.line_score_slope": draw(st.floats(0.0, 3.0)),  # idem
        "product.price_best_score": draw(st.floats(300.0, 900.0)),  # unbounded; the score's own range
        "product.price_tier_width": draw(st.floats(1.0, 300.0)),
        "product.repayment_mix": draw(mixes(REPAYMENT_MODES)),
        "product.instalment_months": draw(st.integers(1, 60)),
        "product.revolving_min_payment": draw(prob),
        "product.penalty_rate_multiplier": draw(st.floats(1.0, 3.0)),
        "population.age_mix": draw(mixes(AGE_BANDS)),
        "population.city_mix": draw(mixes(CITY_TIERS)),
        "population.thin_file_share": draw(prob),
        "population.revolver_share": draw(prob),
        "population.revolver_utilisation": draw(sorted_pair(prob)),
        "population.transactor_utilisation": draw(sorted_pair(prob)),
        "population.income_sigma": draw(st.floats(0.0, 1.5)),
        "population.need_sigma": draw(st.floats(0.0, 1.5)),
        "population.score_noise": draw(st.floats(0.0, 2.0)),
        "behaviour.balance_adjust_rate": draw(prob),
        "behaviour.line_adapt_rate": draw(prob),
        "behaviour.max_line_response": draw(prob),
        "behaviour.balance_noise": draw(st.floats(0.0, 0.5)),
        "default.risk_intercept": draw(st.floats(-10.0, 3.0)),  # unbounded; covers "never" to "mostly" misses
        "default.job_loss_rate": draw(st.floats(0.0, 1.0)),  # multipliers may push it past 1: it must saturate
        "default.reemployment_rate": draw(prob),
        "default.job_loss_multiplier": {k: draw(st.floats(0.0, 3.0)) for k in ("young", "thin_file", "lower_tier")},
        "macro.stress_job_loss_multiplier": draw(st.floats(0.0, 5.0)),  # unbounded above; assumption
        "macro.stress_reemployment_multiplier": draw(st.floats(0.0, 5.0)),
        "macro.seed": draw(st.integers(0, 2**31)),
        "macro.enter_stress": draw(prob),
        "macro.exit_stress": draw(prob),
        "macro.forced_stress_start": forced,
        "macro.forced_stress_months": draw(st.integers(0, 24)),
        "delinquency.cure_rates": [draw(prob) for _ in range(5)],
        "delinquency.unemployed_cure_factor": draw(prob),
        "delinquency.recovery_rate": draw(prob),
        "attrition.base_rate": draw(prob),
        "attrition.cut_effect": draw(st.floats(-5.0, 5.0)),
        "attrition.apr_effect": draw(st.floats(0.0, 1.0)),
        "accounting.funding_rate": draw(apr),
        "accounting.ccf": draw(prob),
        "accounting.pd_stage2": [draw(prob), draw(prob)],
        "accounting.book_acquisition_cost": draw(st.booleans()),
        "env.horizon": draw(st.integers(1, 12)),
    }
    return preset, overrides


@st.composite
def action_plans(draw) -> tuple[str, Any]:
    """A month-by-month plan: one discrete action for all, per-account random actions, or continuous values."""
    kind = draw(st.sampled_from(["shared_discrete", "per_account", "continuous"]))
    months = draw(st.integers(1, 14))
    if kind == "shared_discrete":
        return kind, draw(st.lists(st.integers(0, len(LIMIT_MULTIPLIERS) - 1), min_size=months, max_size=months))
    if kind == "continuous":
        return kind, draw(st.lists(st.floats(-1.0, 1.0), min_size=months, max_size=months))
    return kind, (draw(st.integers(0, 2**32 - 1)), months)


def _policy(kind: str, plan: Any):
    if kind == "shared_discrete":
        return len(plan), lambda m, n: np.full(n, LIMIT_MULTIPLIERS[plan[m]])
    if kind == "continuous":
        return len(plan), lambda m, n: np.repeat(continuous_to_multiplier(np.array([plan[m]])), n)
    seed, months = plan
    rng = np.random.default_rng(seed)
    return months, lambda m, n: np.array(LIMIT_MULTIPLIERS)[rng.integers(0, len(LIMIT_MULTIPLIERS), size=n)]


@given(config=valid_overrides(), plan=action_plans(), seed=st.integers(0, 2**40))
@SETTINGS
def test_invariants_hold_for_random_valid_configs(config, plan, seed, simulate_months, month_checker, state_checker):
    preset, overrides = config
    cfg = load_config(preset, overrides)
    months, policy = _policy(*plan)
    checked = 0
    for rec in simulate_months(cfg, ACCOUNTS, months, seed=seed, policy=policy):
        if rec.month == 0:
            state_checker(cfg, rec.before)
        month_checker(cfg, rec)
        checked += 1
    assert checked == months, f"simulated {checked} of {months} months"  # each one went through the checkers


@given(
    config=valid_overrides(),
    seed=st.integers(0, 2**40),
    continuous=st.booleans(),
    action_seed=st.integers(0, 2**32 - 1),
)
@SETTINGS
def test_portfolio_stays_inside_its_spaces(config, seed, continuous, action_seed):
    preset, overrides = config
    venv = envs.make_portfolio(preset, 16, seed=seed, continuous=continuous, **overrides)
    obs = venv.reset()
    rng = np.random.default_rng(action_seed)
    for _ in range(8):
        assert np.all(np.isfinite(obs)) and all(venv.observation_space.contains(o) for o in obs)
        actions = rng.uniform(-1, 1, size=(16, 1)).astype(np.float32) if continuous else rng.integers(0, 7, size=16)
        obs, rewards, dones, infos = venv.step(actions)
        assert np.all(np.isfinite(rewards))
        info = venv.last_info
        np.testing.assert_allclose(rewards, sum(info["reward_components"].values()), rtol=1e-5, atol=1e-2)
        assert np.all(info["cost"][info["months_past_due"] < 3] == 0.0)
        for i in np.flatnonzero(dones):
            assert venv.observation_space.contains(infos[i]["terminal_observation"])


@given(st.floats(-1.0, 1.0))
def test_continuous_action_mapping(a):
    m = continuous_to_multiplier(np.array([a]))[0]
    assert LIMIT_MULTIPLIERS[0] - 1e-12 <= m <= LIMIT_MULTIPLIERS[-1] + 1e-12
    assert (m < 1.0) == (a < 0) or m == 1.0  # negative actions cut, positive raise
    assert abs(multiplier_to_continuous(np.array([m]))[0] - a) < 1e-9  # the inverse really inverts


def test_continuous_action_mapping_endpoints():
    np.testing.assert_allclose(
        continuous_to_multiplier(np.array([-1.0, 0.0, 1.0])), [LIMIT_MULTIPLIERS[0], 1.0, LIMIT_MULTIPLIERS[-1]]
    )
    # Out-of-range actions are clipped to the ends (SB3 may sample slightly outside the box).
    np.testing.assert_allclose(continuous_to_multiplier(np.array([-3.0, 3.0])), [0.5, 1.5])


@given(st.lists(st.integers(0, len(LIMIT_MULTIPLIERS) - 1), min_size=1, max_size=20))
def test_discrete_actions_map_to_the_table(actions):
    from envs.actions import discrete_to_multiplier

    np.testing.assert_array_equal(discrete_to_multiplier(np.array(actions)), [LIMIT_MULTIPLIERS[a] for a in actions])


# -- money over a whole run (issue 12, defect 10: the README's identity, stated exactly) ----------------------
CONSERVATION_CONFIGS = 500  # the issue asks for at least 500 random valid configs


def portfolio_money(cfg, num_accounts: int, months: int, seed: int, policy, simulate_months) -> dict[str, float]:
    """The terms of the run-level identity, summed over accounts and months [CNY]; every value checked finite.

    Interest and penalty fees are capitalised (added to the balance, then paid or charged off with it); an
    account that ends is replaced in the same month, and an account replaced at the horizon takes its
    outstanding balance with it (never repaid or charged off inside the run).
    """
    from envs.observation import observation_space, observe

    space = observation_space(cfg)
    terms = dict.fromkeys(
        ("start", "drawn", "interest", "fees", "repaid", "charged_off", "replaced_out", "replaced_in", "end"), 0.0
    )
    ended = np.zeros(num_accounts, dtype=bool)
    for rec in simulate_months(cfg, num_accounts, months, seed=seed, policy=policy):
        if rec.month == 0:
            terms["start"] = float(rec.before.balance.sum())
        else:
            terms["replaced_in"] += float(rec.before.balance[ended].sum())
        r = rec.result
        for name, value in (("reward", r.reward), *r.components.items()):
            assert np.all(np.isfinite(value)), f"{name} not finite"
        assert np.all(np.isfinite(observe(rec.after, rec.stress, space))), "observation not finite"
        terms["drawn"] += float(r.drawn.sum())
        terms["interest"] += float(r.components["interest"].sum())
        terms["fees"] += float(r.components["fees"].sum())
        terms["repaid"] += float(r.repaid.sum())
        terms["charged_off"] += float(r.charged_off.sum())
        ended = r.terminated | r.truncated
        # only an account replaced at the horizon leaves with a balance: charge-off and closure leave none
        assert np.all(rec.after.balance[r.terminated] == 0.0)
        terms["replaced_out"] += float(rec.after.balance[ended].sum())
        terms["end"] = float(rec.after.balance[~ended].sum())
    return terms


@pytest.mark.slow  # about 15 s: 500 configs
@given(config=valid_overrides(), plan=action_plans(), seed=st.integers(0, 2**40))
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=CONSERVATION_CONFIGS)
def test_money_is_conserved_over_a_run_for_500_random_valid_configs(config, plan, seed, simulate_months):
    preset, overrides = config
    cfg = load_config(preset, overrides)
    months, policy = _policy(*plan)
    t = portfolio_money(cfg, 16, months, seed, policy, simulate_months)
    # start + replaced_in + drawn + interest + fees = repaid + charged_off + replaced_out + end
    inflow = t["start"] + t["replaced_in"] + t["drawn"] + t["interest"] + t["fees"]
    outflow = t["repaid"] + t["charged_off"] + t["replaced_out"] + t["end"]
    scale = sum(abs(v) for v in t.values())
    assert abs(inflow - outflow) <= 1e-9 * scale + 1e-9, t


def test_the_old_conservation_sentence_leaves_money_out(simulate_months):
    # "drawings = repayments + charge-offs + what is still owed" misses the capitalised interest and fees and
    # the balances that leave with accounts replaced at the horizon; the exact identity holds.
    cfg = load_config("wechat", {"env.horizon": 6})
    t = portfolio_money(cfg, 200, 14, 0, lambda m, n: np.ones(n), simulate_months)
    assert t["interest"] > 0 and t["replaced_out"] > 0
    scale = sum(abs(v) for v in t.values())
    exact = t["start"] + t["replaced_in"] + t["drawn"] + t["interest"] + t["fees"]
    exact -= t["repaid"] + t["charged_off"] + t["replaced_out"] + t["end"]
    assert abs(exact) <= 1e-9 * scale
    old = t["start"] + t["drawn"] - (t["repaid"] + t["charged_off"] + t["end"])
    assert abs(old) > 1e-3 * scale


@pytest.mark.slow  # about 10 s: three extremes of each of ~56 numbers
def test_every_accepted_extreme_value_stays_finite():
    # The schema's bounds (envs.config.LARGEST_FLOAT) are what keeps observations and rewards finite: each
    # float field at the largest magnitude the schema accepts (and at 0), one at a time, for six months.
    import warnings

    from envs.config import LARGEST_FLOAT, ConfigError

    base = load_config("wechat").to_dict()
    keys = [f"{s}.{k}" for s, section in base.items() if isinstance(section, dict) for k, v in section.items()]
    keys = [k for k in keys if isinstance(base[k.split(".")[0]][k.split(".")[1]], float)]
    assert len(keys) > 40
    accepted = 0
    for key in keys:
        for value in (LARGEST_FLOAT, -LARGEST_FLOAT, 0.0):
            try:
                cfg = load_config("wechat", {key: value})
            except ConfigError:
                continue
            accepted += 1
            venv = envs.make_portfolio(cfg, 20, seed=0)
            obs = venv.reset()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # overflow to inf inside a logistic is fine
                for month in range(6):
                    assert np.all(np.isfinite(obs)), (key, value, month)
                    obs, rewards, _, _ = venv.step(np.random.default_rng(month).integers(0, 7, 20))
                    assert np.all(np.isfinite(rewards)), (key, value, month)
    assert accepted > len(keys)  # most fields accept more than one extreme
