"""Steady-state portfolio statistics under fixed lines, the figures the source document gives.

The portfolio is run with every line held; accounts that close, are charged off or reach the horizon are
replaced by new ones, as in ``make_portfolio``. After a burn-in long enough for the book's age mix to
settle, month-end statistics are pooled over the measurement window.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from envs.config import Config
from envs.simulator import Simulator


class SteadyState(NamedTuple):
    m3plus_rate: float  # M3+ balance / outstanding balance, pooled over the window
    m3plus_account_share: float  # open accounts in M3+ / open accounts
    revolver_utilisation: float  # mean balance / line of current revolving accounts
    transactor_utilisation: float
    m1_to_m2: float  # share of M1 accounts that are M2 a month later
    realised_yield: float  # (interest + fees) / opening balance, annualised
    charge_off_rate: float  # balance charged off / opening balance, annualised
    revenue_per_account_month: float  # [CNY]
    average_balance: float  # [CNY] per open account
    average_line: float  # [CNY]


def steady_state(
    config: Config, num_accounts: int = 10_000, months: int = 120, burn_in: int = 60, seed: int = 0, runs: int = 8
) -> SteadyState:
    """Hold every line and measure the book over ``months`` after ``burn_in`` months, pooled over runs.

    Each run has its own accounts and its own macro path (``macro.seed = seed + run``): the stress regime
    comes in episodes years apart, so one path over a decade is not the long-run average.

    Args:
        config: the preset.
        num_accounts: accounts in the book at any time, in each run.
        months: length of the measurement window [months].
        burn_in: months simulated before measuring [months]; at least the horizon so the age mix settles.
        seed: run r keys account i on ``seed + r * num_accounts + i``.
        runs: independent runs pooled.
    """
    from envs.config import resolve_config

    sums = dict.fromkeys(
        (
            "m3_bal",
            "bal",
            "m3_acc",
            "open",
            "rev_util",
            "rev_n",
            "tra_util",
            "tra_n",
            "m1",
            "m1_to_m2",
            "income",
            "opening",
            "charged",
            "revenue",
            "line",
        ),
        0.0,
    )
    idx = np.arange(num_accounts)
    for run in range(runs):
        sim = Simulator(resolve_config(config, {"macro.seed": seed + run}), num_accounts)
        sim.seed_accounts(idx, (seed + run * num_accounts + idx).astype(np.uint64))
        sim.restart_calendar()
        _accumulate(sim, sums, months, burn_in)
    return SteadyState(
        m3plus_rate=sums["m3_bal"] / sums["bal"],
        m3plus_account_share=sums["m3_acc"] / sums["open"],
        revolver_utilisation=sums["rev_util"] / max(sums["rev_n"], 1),
        transactor_utilisation=sums["tra_util"] / max(sums["tra_n"], 1),
        m1_to_m2=sums["m1_to_m2"] / max(sums["m1"], 1),
        realised_yield=12 * sums["income"] / sums["opening"],
        charge_off_rate=12 * sums["charged"] / sums["opening"],
        revenue_per_account_month=sums["revenue"] / (runs * num_accounts * months),
        average_balance=sums["bal"] / sums["open"],
        average_line=sums["line"] / sums["open"],
    )


def _accumulate(sim: Simulator, sums: dict[str, float], months: int, burn_in: int) -> None:
    num_accounts = sim.num_accounts
    hold = np.ones(num_accounts)
    revolver = sim.hidden_traits()["revolver"]  # hidden, recomputed from keys; refreshed at each renewal
    for month in range(burn_in + months):
        opening_mpd = sim.state.months_past_due.copy()
        result = sim.step(hold)
        s = sim.state
        if month >= burn_in:
            open_ = ~result.terminated
            m3 = open_ & (s.months_past_due >= 3)
            current = open_ & (s.months_past_due == 0)
            util = s.balance / s.line
            sums["m3_bal"] += s.balance[m3].sum()
            sums["bal"] += s.balance[open_].sum()
            sums["m3_acc"] += m3.sum()
            sums["open"] += open_.sum()
            sums["line"] += s.line[open_].sum()
            rev, tra = current & revolver, current & ~revolver
            sums["rev_util"] += util[rev].sum()
            sums["rev_n"] += rev.sum()
            sums["tra_util"] += util[tra].sum()
            sums["tra_n"] += tra.sum()
            was_m1 = opening_mpd == 1
            sums["m1"] += was_m1.sum()
            sums["m1_to_m2"] += (was_m1 & (s.months_past_due == 2)).sum()
            sums["income"] += (result.components["interest"] + result.components["fees"]).sum()
            sums["opening"] += result.opening_balance.sum()
            sums["charged"] += result.charged_off.sum()
            sums["revenue"] += result.revenue.sum()
        done = np.flatnonzero(result.terminated | result.truncated)
        if done.size:
            sim.renew(done)
            revolver[done] = sim.hidden_traits(done)["revolver"]


def fit_risk_intercept(
    config: Config, target_m3plus: float, low: float = -9.0, high: float = -1.0, tolerance: float = 2e-4, **kwargs
) -> tuple[float, SteadyState]:
    """Bisect ``default.risk_intercept`` until the steady-state M3+ rate is within ``tolerance`` of the target."""
    return fit_parameter(config, target_m3plus, "default.risk_intercept", low, high, tolerance, 3, **kwargs)


def fit_parameter(
    config: Config,
    target_m3plus: float,
    key: str = "default.distress_onset_rate",
    low: float = 0.0,
    high: float = 0.01,
    tolerance: float = 2e-4,
    digits: int = 5,
    **kwargs,
) -> tuple[float, SteadyState]:
    """Bisect the config value ``key`` until the steady-state M3+ rate is within ``tolerance`` of the target.

    The value must raise the M3+ rate as it grows (the distress onset rate and the miss intercept do), so
    bisection converges; the same seed is used at every step so the comparison is between parameters, not
    draws. Returns the value rounded to ``digits`` decimals and its steady state.
    """
    from envs.config import resolve_config

    result = None
    for _ in range(30):
        mid = round(0.5 * (low + high), digits)
        result = steady_state(resolve_config(config, {key: mid}), **kwargs)
        if abs(result.m3plus_rate - target_m3plus) <= tolerance:
            break
        if result.m3plus_rate < target_m3plus:
            low = mid
        else:
            high = mid
    assert result is not None  # (the loop runs at least once)
    return mid, result


class LineResponse(NamedTuple):
    months_after: int  # months since the raise
    all_accounts: float  # extra balance per unit of extra line, current accounts
    subprime: float  # origination score below 560
    prime: float  # origination score above 680
    revolvers: float
    transactors: float


def line_response(
    config: Config,
    num_accounts: int = 40_000,
    raise_by: float = 1.5,
    checkpoints: tuple[int, ...] = (3, 12, 36),
    seed: int = 0,
) -> list[LineResponse]:
    """Debt response to a one-off line raise: a randomised trial on common random numbers.

    Two copies of one cohort are run from origination; in the treated copy every line is raised by
    ``raise_by`` in month 2. Attrition is switched off so both copies keep the same accounts. The response
    at ``k`` months is (treated - control balance) / (treated - control line) among accounts current in
    both, the quantity Gross & Souleles (2002), Agarwal et al. (2018) and Aydin (2022) estimate.
    """
    from envs.config import resolve_config

    quiet = resolve_config(
        config,
        {
            "attrition.base_rate": 0.0,
            "attrition.cut_effect": 0.0,
            "attrition.low_line_effect": 0.0,
            "attrition.apr_effect": 0.0,
        },
    )
    months = 2 + max(checkpoints)
    idx = np.arange(num_accounts)
    runs = []
    for multiplier in (1.0, raise_by):
        sim = Simulator(quiet, num_accounts)
        sim.seed_accounts(idx, (seed + idx).astype(np.uint64))
        sim.restart_calendar()
        snapshots = {}
        for month in range(months):
            sim.step(np.full(num_accounts, multiplier if month == 1 else 1.0))
            if month - 1 in checkpoints:  # k months after the raise in month index 1
                s = sim.state
                snapshots[month - 1] = (s.balance.copy(), s.line.copy(), s.months_past_due == 0)
        runs.append((sim, snapshots))
    (control, base), (_, treated) = runs
    score, revolver = control.state.origination_score, control.hidden_traits()["revolver"]
    out = []
    for k in checkpoints:
        b0, l0, ok0 = base[k]
        b1, l1, ok1 = treated[k]
        ok = ok0 & ok1 & (l1 > l0)

        def ratio(mask: np.ndarray, ok=ok, b0=b0, b1=b1, l0=l0, l1=l1) -> float:
            m = ok & mask
            return float((b1[m] - b0[m]).sum() / (l1[m] - l0[m]).sum())

        everyone = np.ones_like(ok)
        out.append(
            LineResponse(k, ratio(everyone), ratio(score < 560), ratio(score > 680), ratio(revolver), ratio(~revolver))
        )
    return out
