"""Simulator.hidden_state (interface 1, for the oracle): what it returns and that its miss probability is
the one the monthly step uses."""

import numpy as np
import pytest

import envs
from envs.population import HIDDEN_TRAITS
from envs.random_stream import monthly_uniforms


def _seasoned(config, n=20_000, months=30, seed=0):
    sim = envs.Simulator(config, n)
    sim.seed_accounts(np.arange(n), seed + np.arange(n, dtype=np.uint64))
    sim.restart_calendar()
    for _ in range(months):
        result = sim.step(np.ones(n))
        sim.renew(np.flatnonzero(result.terminated | result.truncated))
    return sim


def test_hidden_state_has_the_agreed_keys_shapes_and_subsets():
    sim = _seasoned(envs.load_config("wechat"), n=3_000, months=24)
    full = sim.hidden_state()
    for key in (*HIDDEN_TRAITS, "unemployed", "distress", "miss_probability"):
        assert key in full and full[key].shape == (3_000,), key
    assert full["unemployed"].dtype == bool
    assert np.all((full["distress"] >= 0) & (full["distress"] <= 1))
    assert np.all((full["miss_probability"] >= 0) & (full["miss_probability"] <= 1))
    assert full["distress"].max() > 0, "no account in distress after two years: the state never moves"
    idx = np.array([5, 17, 2_999])
    part = sim.hidden_state(idx)
    for key, values in part.items():
        np.testing.assert_array_equal(values, full[key][idx], err_msg=key)
    full["distress"][:] = 7.0  # a copy: the simulator is untouched
    assert sim.state.distress.max() <= 1.0


def test_miss_probability_is_the_steps_hazard():
    # Employment and distress frozen (no job changes, distress at 0 or full and staying there), so the
    # state the step decides on is the state hidden_state saw: the step misses exactly when the account's
    # miss draw falls below the reported probability.
    config = envs.load_config(
        "wechat",
        {
            "default.job_loss_rate": 0.0,
            "default.reemployment_rate": 0.0,
            "default.distress_ramp": 1.0,
            "default.distress_recovery_rate": 0.0,
            "default.distress_onset_rate": 0.02,
        },
    )
    sim = _seasoned(config)
    s = sim.state
    s.distress_onset[:] = 0.0  # no new shocks this month
    s.shock_rate[:] = s.job_loss_rate  # (job loss is 0 already)
    current = (s.months_past_due == 0) & (s.balance > 0)
    prob = sim.hidden_state()["miss_probability"]
    draw = monthly_uniforms(s.key, s.months_on_book)[1]
    predicted = current & (draw < prob)
    sim.step(np.ones(len(s)))
    missed = current & (sim.state.months_past_due == 1)
    assert predicted.sum() > 50, "too few misses to test anything"
    borderline = np.abs(draw - prob) < 1e-5  # float32 rounding of the comparison
    np.testing.assert_array_equal(missed[~borderline], predicted[~borderline])


@pytest.mark.parametrize("flag", ["distress", "unemployed"])
def test_distress_and_unemployment_raise_the_miss_probability(flag):
    sim = _seasoned(envs.load_config("wechat"), n=20_000)
    h = sim.hidden_state()
    current = sim.state.months_past_due == 0
    hit = current & (h[flag] > 0)
    assert hit.sum() > 30
    assert h["miss_probability"][hit].mean() > 3 * h["miss_probability"][current & (h[flag] == 0)].mean()
