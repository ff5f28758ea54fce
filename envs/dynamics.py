"""One month of a revolving credit portfolio, for every account at once.

Order within a month: the lender sets the line; jobs are lost and found; interest accrues on the opening
balance; each account pays (or misses) what it owes and draws toward its target balance; delinquent
accounts cure or roll a bucket, and are charged off at 6 months past due; content current accounts may
close; the book is valued. No Python loop over accounts; every random number comes from the account's
counter-based stream, so one account's month does not depend on which others share the batch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from envs.accounting import REVENUE_COMPONENTS, REWARD_COMPONENTS, expected_loss
from envs.config import CHARGE_OFF_MONTHS, REPAYMENT_MODES
from envs.params import SimParams
from envs.population import SCORE_RANGE
from envs.random_stream import monthly_uniforms
from envs.state import PortfolioState

_INTEREST_FIRST = REPAYMENT_MODES.index("interest_first")
_MISSED_PAYMENT_MEMORY = 0.9  # monthly decay of the missed-payment count (assumption: ~10-month memory)
_SCORE_PER_BUCKET = 60.0  # behaviour-score points lost per month past due (assumption)
_SCORE_PER_MISS = 30.0  # points lost per remembered missed payment (assumption)


class MonthResult(NamedTuple):
    """What one month did to each account; every array has shape ``(num_accounts,)``."""

    reward: np.ndarray  # [CNY] sum of the components
    components: dict[str, np.ndarray]  # [CNY] by name, see envs.accounting.REWARD_COMPONENTS
    revenue: np.ndarray  # [CNY] the per-user-revenue part of the reward
    cost: np.ndarray  # M3+ balance / accounting.reference_balance
    terminated: np.ndarray  # charged off or closed
    truncated: np.ndarray  # reached the horizon
    charged_off: np.ndarray  # [CNY] gross balance written off
    closed: np.ndarray  # bool, closed voluntarily
    drawn: np.ndarray  # [CNY] new drawings
    repaid: np.ndarray  # [CNY] payments received (including payoff at closure)
    opening_balance: np.ndarray  # [CNY]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def step(state: PortfolioState, line_multiplier: np.ndarray, p: SimParams, stress: bool) -> MonthResult:
    """Advance every account one month in place; ``line_multiplier`` scales each line before the month."""
    cfg = p.config
    prod, beh, dflt, acc = cfg.product, cfg.behaviour, cfg.default, cfg.accounting
    s = state
    u = monthly_uniforms(s.key, s.months_on_book, 4)

    # 1. The lender's decision: a new line, in whole hundreds, inside the product's floor and maximum.
    old_line = s.line
    line = np.clip(np.round(old_line * line_multiplier, -2), prod.min_line, prod.max_line)
    changed = line != old_line
    cut = line < old_line
    s.line = line
    s.adapted_line += beh.line_adapt_rate * (line - s.adapted_line)

    # 2. Jobs are lost and found; stress raises losses and slows re-employment.
    mac = cfg.macro
    job_loss = s.job_loss_rate * (mac.stress_job_loss_multiplier if stress else 1.0)
    find = dflt.reemployment_rate * (mac.stress_reemployment_multiplier if stress else 1.0)
    s.unemployed = np.where(s.unemployed, u[:, 0] >= find, u[:, 0] < job_loss)

    # 3. Interest on the opening balance; overdue balances pay the penalty rate on top.
    balance = s.balance
    mpd = s.months_past_due
    current = mpd == 0
    interest = balance * (s.apr / 12)
    fees = np.where(current, 0.0, interest * (prod.penalty_rate_multiplier - 1))

    # 4. What is due: interest plus the repayment mode's principal (interest-first: all of it at maturity).
    share = p.scheduled_share[s.repayment_mode]
    maturity = (s.months_on_book + 1) % prod.instalment_months == 0
    share = np.where((s.repayment_mode == _INTEREST_FIRST) & maturity, 1.0, share)
    due = interest + balance * share

    # 5. Current accounts miss with a logistic hazard; job loss dominates (DOMAIN: Castellanos et al.).
    utilisation = balance / line
    logit = (dflt.risk_intercept + dflt.risk_slope * s.risk + dflt.unemployed_effect * s.unemployed
             + dflt.utilisation_effect * (utilisation - 0.5) + dflt.history_effect * s.missed_payments
             + dflt.payment_burden_effect * due / s.income + (dflt.stress_effect if stress else 0.0))
    miss = current & (balance > 0) & (u[:, 1] < _sigmoid(logit))
    # Delinquent accounts cure (pay what is overdue) or roll one bucket; the out-of-work cure less.
    cure_p = p.cure_rate[mpd] * np.where(s.unemployed, cfg.delinquency.unemployed_cure_factor, 1.0)
    cure = ~current & (u[:, 1] < cure_p)
    roll = ~current & ~cure
    paying = current & ~miss

    # 6. Paying accounts move toward their target balance: their target share of the original line, plus
    # a share of any change in the line they have adapted to, as large as the borrower is credit-constrained
    # (DOMAIN: Gross & Souleles 2002; Agarwal et al. 2018; Aydin 2022 for the gradual build-up).
    target = (s.target_utilisation * s.origination_line
              + beh.max_line_response * s.constraint * (s.adapted_line - s.origination_line))
    adjust = np.where(s.months_on_book == 0, 1.0, beh.balance_adjust_rate)
    wanted = balance + adjust * (target - balance) + beh.balance_noise * line * (2 * u[:, 2] - 1)
    floor = balance + interest - due  # the balance if exactly what is due is paid
    wanted = np.clip(wanted, 0.0, np.maximum(line, floor))  # no drawing past the line
    drawn = np.where(paying, np.maximum(wanted - floor, 0.0), 0.0)
    # A cure pays the interest, fees and the overdue principal of the missed months.
    overdue = np.minimum(balance * np.maximum(share, 1.0 / prod.instalment_months) * mpd, balance)
    repaid = np.where(paying, balance + interest + drawn - wanted, np.where(cure, interest + fees + overdue, 0.0))
    new_balance = balance + interest + fees + drawn - repaid

    # 7. Buckets move; six months past due is charged off (DOMAIN: 180 days).
    # (the clamp only matters to a caller that keeps stepping a charged-off account without renewing it)
    new_mpd = np.where(miss, 1, np.where(roll, np.minimum(mpd + 1, CHARGE_OFF_MONTHS), np.where(cure, 0, mpd)))
    new_mpd = new_mpd.astype(np.int8)
    charge_off = new_mpd >= CHARGE_OFF_MONTHS
    charged_off = np.where(charge_off, new_balance, 0.0)
    new_balance = new_balance - charged_off

    # 8. Content current accounts in work may close, more so after a cut, with a line short of their
    # need, or a price above the market (DOMAIN: "low lines, high rates").
    s.months_since_cut = np.where(cut, 0, s.months_since_cut + 1)
    att = cfg.attrition
    logit_close = (p.attrition_logit + att.cut_effect * (s.months_since_cut <= att.cut_memory_months)
                   + att.low_line_effect * np.maximum(np.log(s.need / line), 0.0)
                   + att.apr_effect * 100 * (s.apr - prod.market_apr))
    closed = (new_mpd == 0) & ~s.unemployed & (u[:, 3] < _sigmoid(logit_close))
    repaid = repaid + np.where(closed, new_balance, 0.0)  # closing pays the balance off
    new_balance = np.where(closed, 0.0, new_balance)
    terminated = charge_off | closed

    # 9. The lender's view of the account updates.
    s.missed_payments = _MISSED_PAYMENT_MEMORY * s.missed_payments + miss
    s.score = np.clip(s.origination_score - _SCORE_PER_BUCKET * new_mpd - _SCORE_PER_MISS * s.missed_payments,
                      *SCORE_RANGE)
    statement = balance + interest + fees
    ratio = np.divide(repaid, statement, out=np.ones_like(statement), where=statement > 0)
    s.payment_ratios[:, 1:] = s.payment_ratios[:, :-1]
    s.payment_ratios[:, 0] = np.minimum(ratio, 1.0)

    # 10. The month's accounts.
    provision = np.where(terminated, 0.0, expected_loss(p, new_mpd, s.score, new_balance, line))
    first_month = s.months_on_book == 0
    components = {
        "interest": interest,
        "fees": fees,
        "funding_cost": -balance * (acc.funding_rate / 12),
        "credit_loss": -charged_off * (1 - cfg.delinquency.recovery_rate),
        "provision_change": s.provision - provision,
        "operating_cost": np.full(len(s), -acc.operating_cost),
        "acquisition_cost": np.where(first_month, -acc.acquisition_cost, 0.0) if acc.book_acquisition_cost
        else np.zeros(len(s)),
    }
    revenue = sum(components[name] for name in REVENUE_COMPONENTS)
    reward = revenue + components["provision_change"] + components["operating_cost"]
    m3plus = new_mpd >= 3
    cost = np.where(m3plus & ~charge_off, new_balance, 0.0) / acc.reference_balance

    s.balance = new_balance
    s.months_past_due = new_mpd
    s.provision = provision
    s.months_on_book = s.months_on_book + 1
    s.months_since_line_change = np.where(changed, 0, s.months_since_line_change + 1)
    truncated = (s.months_on_book >= cfg.env.horizon) & ~terminated
    assert set(components) == set(REWARD_COMPONENTS)
    return MonthResult(reward, components, revenue, cost, terminated, truncated, charged_off, closed,
                       drawn, repaid, balance)
