"""Shared helpers for the envs tests: drive the simulator core month by month and check, every month, the
invariants any valid config must keep (money conserved, no NaN, lines and prices in range, ...).

The helpers are exposed as session-scoped fixtures (``simulate``, ``check_month``, ``check_state``) so that
hypothesis tests can use them without the function-scoped-fixture health check.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import settings

from envs.actions import LIMIT_MULTIPLIERS
from envs.config import CHARGE_OFF_MONTHS, Config
from envs.dynamics import MonthResult
from envs.params import SimParams
from envs.population import SCORE_RANGE, hidden_traits
from envs.simulator import Simulator
from envs.state import PortfolioState

# Property tests are derandomized by default, so the suite gives the same result on every run and in CI
# ("same seed, same results"). HYPOTHESIS_PROFILE=explore draws fresh, ten times more examples to hunt bugs.
settings.register_profile("deterministic", derandomize=True, deadline=None, max_examples=40, print_blob=True)
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=400, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

# A policy maps (month, num_accounts) to line multipliers of shape (num_accounts,).
Policy = Callable[[int, int], np.ndarray]

# Money is conserved "to rounding": float64 sums of a handful of terms of up to ~1e6 CNY carry errors of
# ~1e-10 CNY; 1e-9 of the terms' magnitude (plus a micro-yuan) is far below any real leak (a fen, 0.01).
_RELATIVE_ROUNDING = 1e-9
_ABSOLUTE_ROUNDING = 1e-6  # [CNY]


class MonthRecord(NamedTuple):
    """One simulated month: the state before and after (both copies), the action and the result."""

    month: int
    before: PortfolioState
    multiplier: np.ndarray
    result: MonthResult
    after: PortfolioState  # before any ended account is replaced
    stress: bool  # the regime the month was simulated in


def random_policy(seed: int) -> Policy:
    """Each account gets an independent, uniformly drawn discrete multiplier each month (seeded)."""
    rng = np.random.default_rng(seed)
    choices = np.array(LIMIT_MULTIPLIERS)
    return lambda month, n: rng.choice(choices, size=n)


def simulate(
    config: Config, num_accounts: int, months: int, seed: int = 0, policy: Policy | None = None
) -> Iterator[MonthRecord]:
    """Run the core ``Simulator`` as the envs do (ended accounts replaced), yielding every month."""
    sim = Simulator(config, num_accounts)
    sim.seed_accounts(np.arange(num_accounts), seed + np.arange(num_accounts, dtype=np.uint64))
    sim.restart_calendar()
    policy = policy or random_policy(seed)
    for month in range(months):
        multiplier = np.asarray(policy(month, num_accounts), dtype=np.float64)
        before, stress = sim.state.copy(), sim.stress
        result = sim.step(multiplier)
        yield MonthRecord(month, before, multiplier, result, sim.state.copy(), stress)
        sim.renew(np.flatnonzero(result.terminated | result.truncated))


def _where(mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask)
    return f"{idx.size} accounts, first at index {idx[:5].tolist()}"


def check_state(config: Config, s: PortfolioState) -> None:
    """Invariants of any state, right after origination or after a month."""
    prod = config.product
    for name in s.field_names():
        value = getattr(s, name)
        if value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), f"state.{name} not finite: {_where(~np.isfinite(value))}"
    assert np.all(s.balance >= 0.0), f"negative balance: {s.balance.min()} ({_where(s.balance < 0)})"
    assert np.all((s.line >= prod.min_line) & (s.line <= prod.max_line)), (
        f"line outside [{prod.min_line}, {prod.max_line}]: {s.line.min()}..{s.line.max()}"
    )
    assert np.all((s.origination_line >= prod.min_line) & (s.origination_line <= prod.max_line)), (
        f"origination line outside [{prod.min_line}, {prod.max_line}]: {s.origination_line.max()}"
    )
    assert np.all((s.apr >= prod.apr_low) & (s.apr <= prod.apr_high)), (
        f"APR outside [{prod.apr_low}, {prod.apr_high}]: {s.apr.min()}..{s.apr.max()}"
    )
    assert np.all((s.months_past_due >= 0) & (s.months_past_due <= CHARGE_OFF_MONTHS))
    assert np.all((s.payment_ratios >= 0.0) & (s.payment_ratios <= 1.0)), (
        f"payment ratio outside [0, 1]: {s.payment_ratios.min()}..{s.payment_ratios.max()}"
    )
    assert np.all((s.score >= SCORE_RANGE[0]) & (s.score <= SCORE_RANGE[1])), "score outside its range"
    assert np.all((s.job_loss_rate >= 0.0) & (s.job_loss_rate <= 1.0))
    assert np.all((s.distress >= 0.0) & (s.distress <= 1.0)), f"distress outside [0, 1]: {s.distress.max()}"
    assert np.all((s.distress_onset >= 0.0) & (s.distress_onset <= 1.0))
    np.testing.assert_array_equal(s.shock_rate, s.job_loss_rate + s.distress_onset, err_msg="stale shock rate")
    assert np.all(s.adapted_line >= s.origination_line) and np.all(s.slow_adapted_line >= s.origination_line), (
        "the adapted line fell below the origination line: a cut was adapted to"
    )
    assert np.all(s.provision >= 0.0), f"negative expected-loss allowance: {s.provision.min()}"
    # Hidden traits, recomputed from the accounts' keys (they are not stored).
    traits = hidden_traits(s, SimParams.from_config(config))
    assert np.all((traits["target_utilisation"] >= 0.0) & (traits["target_utilisation"] <= 1.0))
    assert np.all((traits["constraint"] >= 0.0) & (traits["constraint"] <= 1.0)), "constrainedness outside [0, 1]"
    assert np.all(traits["income"] > 0.0) and np.all(traits["need"] > 0.0)
    assert np.all(np.isfinite(traits["risk"]))


def check_month(config: Config, rec: MonthRecord) -> None:
    """Invariants of one simulated month, for every account."""
    before, r, after = rec.before, rec.result, rec.after
    check_state(config, after)
    opening_mpd = before.months_past_due
    new_mpd = after.months_past_due

    for name in ("reward", "revenue", "cost", "charged_off", "drawn", "repaid", "opening_balance"):
        value = getattr(r, name)
        assert value.shape == (len(before),), f"{name} has shape {value.shape}"
        assert np.all(np.isfinite(value)), f"{name} not finite: {_where(~np.isfinite(value))}"
    for name, value in r.components.items():
        assert np.all(np.isfinite(value)), f"reward component {name} not finite"

    # Money is conserved: the month-end balance is the opening balance plus interest and fees, plus new
    # drawings, less payments and charge-offs.
    comps = r.components
    np.testing.assert_array_equal(r.opening_balance, before.balance)
    terms = (r.opening_balance, comps["interest"], comps["fees"], r.drawn, -r.repaid, -r.charged_off)
    scale = sum(np.abs(t) for t in terms)
    np.testing.assert_allclose(
        after.balance,
        sum(terms),
        rtol=0,
        atol=_ABSOLUTE_ROUNDING + _RELATIVE_ROUNDING * float(scale.max()),
        err_msg="money not conserved",
    )
    # Flows are non-negative (to rounding: a -1e-13 balance accrues -1e-15 interest).
    for name, flow in (
        ("drawn", r.drawn),
        ("repaid", r.repaid),
        ("charged_off", r.charged_off),
        ("interest", comps["interest"]),
        ("fees", comps["fees"]),
    ):
        assert np.all(flow >= -_ABSOLUTE_ROUNDING), f"negative {name}: {flow.min()} ({_where(flow < 0)})"

    # The reward is the sum of its components.
    total = sum(comps.values())
    np.testing.assert_allclose(r.reward, total, rtol=1e-12, atol=1e-9, err_msg="reward != sum of components")

    # Non-accrual (DOMAIN: IFRS 9 stage 3): an account at M3+ when the month opens books no interest and no
    # fees, so its balance changes only by cures (payments) and charge-off.
    m3plus_open = opening_mpd >= 3
    assert np.all(comps["interest"][m3plus_open] == 0.0), (
        f"interest on M3+: {_where(m3plus_open & (comps['interest'] != 0))}"
    )
    assert np.all(comps["fees"][m3plus_open] == 0.0), f"fees on M3+: {_where(m3plus_open & (comps['fees'] != 0))}"

    # A cut caps exposure: an account that draws ends the month at or below its line.
    drew = r.drawn > 0
    assert np.all(after.balance[drew] <= after.line[drew] * (1 + 1e-12) + _ABSOLUTE_ROUNDING), (
        f"drew above the line: {_where(drew & (after.balance > after.line + _ABSOLUTE_ROUNDING))}"
    )

    # No drawing while delinquent.
    assert np.all(r.drawn[opening_mpd > 0] == 0.0), (
        f"delinquent accounts drew: {_where((opening_mpd > 0) & (r.drawn != 0))}"
    )

    # Buckets move by at most one, a delinquent account cures to 0 or rolls one bucket.
    rolled = (opening_mpd > 0) & (new_mpd != 0)
    assert np.all(new_mpd[rolled] == opening_mpd[rolled] + 1), "a delinquent account neither cured nor rolled"
    assert np.all(new_mpd[opening_mpd == 0] <= 1), "a current account skipped a bucket"

    # Charge-off exactly when months past due reaches 6: the whole balance leaves the book.
    charge_off = new_mpd >= CHARGE_OFF_MONTHS
    assert np.all(r.terminated[charge_off]), "an account reached 6 months past due but was not terminated"
    assert np.all(r.charged_off[~charge_off] == 0.0), (
        f"charge-off before 6 months past due: {_where(~charge_off & (r.charged_off != 0))}"
    )
    assert np.all(after.balance[charge_off] == 0.0), "a charged-off balance stayed on the book"
    assert np.all(r.terminated == (charge_off | r.closed)), "terminated is neither charge-off nor closure"
    # Closure pays the balance off, and only current accounts close.
    assert np.all(new_mpd[r.closed] == 0) and np.all(after.balance[r.closed] == 0.0)
    assert not np.any(r.terminated & r.truncated), "an account both terminated and truncated"
    horizon = config.env.horizon
    np.testing.assert_array_equal(r.truncated, (after.months_on_book >= horizon) & ~r.terminated)

    # The capped cost is zero unless the account is M3+ (and not charged off); it is the M3+ balance.
    m3plus = (new_mpd >= 3) & ~charge_off
    assert np.all(r.cost[~m3plus] == 0.0), f"cost outside M3+: {_where(~m3plus & (r.cost != 0))}"
    np.testing.assert_allclose(r.cost[m3plus], after.balance[m3plus] / config.accounting.reference_balance, rtol=1e-12)

    # The line applied is the requested multiple, rounded to hundreds, inside the product's range.
    prod = config.product
    wanted = np.clip(np.round(before.line * rec.multiplier, -2), prod.min_line, prod.max_line)
    np.testing.assert_array_equal(after.line, wanted)


@pytest.fixture(scope="session")
def simulate_months() -> Callable[..., Iterator[MonthRecord]]:
    return simulate


@pytest.fixture(scope="session")
def month_checker() -> Callable[[Config, MonthRecord], None]:
    return check_month


@pytest.fixture(scope="session")
def state_checker() -> Callable[[Config, PortfolioState], None]:
    return check_state
