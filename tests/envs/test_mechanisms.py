"""Issue 8's mechanisms, one test (or more) each, every one able to fail if its mechanism is taken out:
distress and drawdown before default (1), a behaviour score that moves with behaviour (2), cuts that cap
exposure without buying repayment (3), a realistic utilisation spread and a growing debt response (4),
non-accrual from M3 (5). The slow tests measure the calibration targets on small books; the bands are
the evidence's (DOMAIN.md section 3), as in scripts/calibration_table.py."""

import numpy as np
import pytest

import envs
from envs.calibration import line_response
from envs.mechanism_targets import book_signals, utilisation_after_cut

# Distress switched off in its effects: no drawdown, no extra hazard, no lower cure.
NO_DISTRESS = {"default.distress_draw": 0.0, "default.distress_effect": 0.0, "delinquency.distressed_cure_factor": 1.0}


def _seasoned(overrides=None, n=5_000, months=24, preset="wechat"):
    sim = envs.Simulator(envs.load_config(preset, overrides), n)
    sim.seed_accounts(np.arange(n), np.arange(n, dtype=np.uint64))
    sim.restart_calendar()
    for _ in range(months):
        result = sim.step(np.ones(n))
        sim.renew(np.flatnonzero(result.terminated | result.truncated))
    return sim


def _twin(sim):
    twin = envs.Simulator(sim.config, sim.num_accounts)
    twin.state = sim.state.copy()
    twin.stress, twin.calendar_month = sim.stress, sim.calendar_month
    return twin


# -- 1. distress ----------------------------------------------------------------------------------------


def test_distressed_borrowers_draw_toward_the_line_and_pay_only_what_is_due():
    sim = _seasoned()
    twin = _twin(sim)
    s = sim.state
    pick = np.flatnonzero((s.months_past_due == 0) & (s.distress == 0) & ~s.closing & (s.balance < 0.5 * s.line))
    pick = pick[s.months_on_book[pick] > 0]
    twin.state.distress[pick] = 1.0  # the same accounts, in full distress in the twin
    hold = np.ones(sim.num_accounts)
    calm, troubled = sim.step(hold), twin.step(hold)
    paying = pick[(sim.state.months_past_due[pick] == 0) & (twin.state.months_past_due[pick] == 0)]
    paying = paying[twin.state.distress[paying] > 0]  # (not among those whose distress passed this month)
    assert paying.size > 500
    utilisation = twin.state.balance[paying] / twin.state.line[paying]
    assert np.median(utilisation) > 0.9, "full distress should take the balance to the line"
    assert np.all(twin.state.balance[paying] >= sim.state.balance[paying] - 1e-6)
    assert troubled.drawn[paying].sum() > 3 * calm.drawn[paying].sum()


def test_distress_raises_misses_and_blocks_cures():
    sim = _seasoned(n=20_000)
    twin = _twin(sim)
    twin.state.distress[:] = 1.0
    before = sim.state.months_past_due.copy()
    sim.step(np.ones(sim.num_accounts))
    twin.step(np.ones(sim.num_accounts))
    current, m1 = before == 0, before == 1
    assert (twin.state.months_past_due[current] == 1).mean() > 3 * (sim.state.months_past_due[current] == 1).mean()
    assert (twin.state.months_past_due[m1] == 0).mean() < 0.5 * (sim.state.months_past_due[m1] == 0).mean()


@pytest.mark.slow
def test_defaulters_draw_down_before_the_first_miss():
    # Qi 2009: LEQ 0.4-0.6. Without distress defaulters' utilisation is flat (issue 8 measured -0.07).
    assert 0.40 <= book_signals(envs.load_config("wechat"), 12_000, 60, 40).leq <= 0.60
    assert book_signals(envs.load_config("wechat", NO_DISTRESS), 12_000, 60, 40).leq < 0.30


# -- 2. behaviour score ----------------------------------------------------------------------------------


def test_score_of_a_never_missed_account_moves_with_its_utilisation():
    sim = _seasoned()
    twin = _twin(sim)
    s = sim.state
    pick = np.flatnonzero((s.months_past_due == 0) & (s.distress == 0) & (s.missed_payments == 0) & ~s.closing)
    pick = pick[s.balance[pick] < 0.3 * s.line[pick]]
    twin.state.distress[pick] = 1.0
    for _ in range(2):
        sim.step(np.ones(sim.num_accounts))
        twin.step(np.ones(sim.num_accounts))
    never_missed = pick[(twin.state.missed_payments[pick] == 0) & (sim.state.missed_payments[pick] == 0)]
    assert never_missed.size > 300
    drop = sim.state.score[never_missed] - twin.state.score[never_missed]
    assert np.median(drop) > 50, "climbing utilisation should cost score points before any miss"
    assert np.any(sim.state.score[never_missed] != sim.state.origination_score[never_missed])


@pytest.mark.slow
def test_observable_score_ranks_default_in_the_scorecard_band_and_hidden_state_beats_it():
    b = book_signals(envs.load_config("wechat"), 12_000, 60, 40)
    assert 0.55 <= b.gini_score <= 0.75, b
    assert b.gini_hidden >= b.gini_score + 0.05, b


# -- 3. cuts ---------------------------------------------------------------------------------------------


def test_a_cut_balance_falls_no_faster_than_the_schedule():
    sim = _seasoned(n=10_000)
    s = sim.state
    cut = (s.months_past_due == 0) & ~s.closing & (s.balance > 0.3 * s.line)
    multiplier = np.where(cut, 0.5, 1.0)
    for month in range(6):
        before = sim.state.copy()
        result = sim.step(multiplier if month == 0 else np.ones(sim.num_accounts))
        after = sim.state
        over = cut & (before.balance > after.line) & (after.months_past_due == 0) & ~before.closing
        over &= before.months_past_due == 0  # (a cure pays what is overdue: scheduled too)
        over &= ~result.terminated & (before.months_to_balloon != 1)  # (a balloon month is all due)
        if month == 0:
            assert over.sum() > 500
        scheduled = before.balance[over] * (1 - before.scheduled_share[over])  # what is left paying what is due
        assert np.all(after.balance[over] >= np.minimum(scheduled, after.line[over]) - 1e-6)
        drew = result.drawn > 0
        assert np.all(after.balance[drew] <= after.line[drew] + 1e-6), "drew above the line"
        sim.renew(np.flatnonzero(result.terminated | result.truncated))


@pytest.mark.slow
def test_utilisation_of_a_cut_line_stays_high():
    # CFPB: median utilisation above 90% after a decrease for prime-and-below consumers.
    assert utilisation_after_cut(envs.load_config("wechat"), 10_000) >= 0.85


# -- 4. utilisation spread and the debt response ---------------------------------------------------------


@pytest.mark.slow
def test_a_share_of_accounts_sits_near_the_limit():
    assert book_signals(envs.load_config("wechat"), 8_000, 36, 36).near_limit_share >= 0.08


@pytest.mark.slow
def test_debt_response_keeps_growing_to_three_years():
    quarter, year, three_years = line_response(envs.load_config("wechat"), num_accounts=20_000)
    assert 0.06 <= quarter.all_accounts <= 0.16  # Aydin 2022: 0.11
    assert 0.10 <= year.all_accounts <= 0.20  # Gross & Souleles 2002: 0.10-0.14, on the way to 0.28
    assert 0.22 <= three_years.all_accounts <= 0.34  # Aydin 2022: 0.28
    assert three_years.all_accounts > 1.25 * year.all_accounts


# -- 5. non-accrual --------------------------------------------------------------------------------------


def test_no_interest_or_fees_from_m3plus_but_m1_m2_accrue():
    sim = _seasoned({"default.risk_intercept": -2.0}, n=5_000, months=18, preset="douyin")
    seen = 0
    for _ in range(6):
        before = sim.state.months_past_due.copy()
        balance = sim.state.balance.copy()
        result = sim.step(np.ones(sim.num_accounts))
        m3plus = before >= 3
        early = (before > 0) & (before < 3) & (balance > 0)
        assert np.all(result.components["interest"][m3plus] == 0.0)
        assert np.all(result.components["fees"][m3plus] == 0.0)
        assert np.all(result.components["fees"][early] > 0.0)
        seen += int(m3plus.sum())
        sim.renew(np.flatnonzero(result.terminated | result.truncated))
    assert seen > 100
