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

from envs.accounting import expected_loss
from envs.config import CHARGE_OFF_MONTHS, REPAYMENT_MODES
from envs.params import SimParams
from envs.population import SCORE_RANGE
from envs.random_stream import monthly_uniforms
from envs.state import PortfolioState

_INTEREST_FIRST = REPAYMENT_MODES.index("interest_first")
_MISSED_PAYMENT_MEMORY = 0.9  # monthly decay of the missed-payment count (assumption: ~10-month memory)
_SCORE_PER_BUCKET = 60.0  # behaviour-score points lost per month past due (assumption)
_SCORE_PER_MISS = 30.0  # points lost per remembered missed payment (assumption)
CLOSING_PAYOFF = 100.0  # [CNY] a closing account pays off a balance this small at once (assumption)


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
    """Advance every account one month in place; ``line_multiplier`` scales each line before the month.

    Speed: arithmetic runs on whole arrays as if every account were current and paying; the few accounts
    that are delinquent, miss, close or are charged off are then corrected on index subsets. Random masks
    in ``np.where`` are avoided on the hot path (they defeat branch prediction at 100k accounts).
    """
    cfg = p.config
    prod, beh, dflt, acc = cfg.product, cfg.behaviour, cfg.default, cfg.accounting
    s = state
    n = len(s)
    u = monthly_uniforms(s.key, s.months_on_book, 4)

    # 1. The lender's decision: a new line, in whole hundreds, inside the product's floor and maximum.
    old_line = s.line
    line = np.clip(np.round(old_line * line_multiplier, -2), prod.min_line, prod.max_line)
    unchanged = line == old_line
    # A cut before the first month is a lower starting line, not a cut the borrower lived through.
    cut = (line < old_line) & (s.months_on_book > 0)
    s.line = line
    s.adapted_line += beh.line_adapt_rate * (line - s.adapted_line)

    # 2. Jobs are lost and found; stress raises losses and slows re-employment.
    mac = cfg.macro
    job_loss = s.job_loss_rate * (mac.stress_job_loss_multiplier if stress else 1.0)
    find = dflt.reemployment_rate * (mac.stress_reemployment_multiplier if stress else 1.0)
    s.unemployed = np.where(s.unemployed, u[0] >= find, u[0] < job_loss)

    # 3. Interest on the opening balance; overdue balances pay the penalty rate on top.
    balance = s.balance
    mpd = s.months_past_due
    late = np.flatnonzero(mpd > 0)  # delinquent accounts (a few percent); a bool mask scans faster
    interest = balance * (s.apr / 12)
    fees = np.zeros(n)
    fees[late] = interest[late] * (prod.penalty_rate_multiplier - 1)

    # 4. What is due: interest plus the repayment mode's principal (interest-first: all of it at maturity).
    share = s.scheduled_share
    if p.has_interest_first:
        maturity = ((s.months_on_book + 1) % prod.instalment_months == 0) & (s.repayment_mode == _INTEREST_FIRST)
        share = np.where(maturity, 1.0, share)
    due = interest + balance * share

    # 5. Current accounts miss with a logistic hazard; job loss dominates (DOMAIN: Castellanos et al.).
    # miss_logit_base holds intercept + risk, and burden_per_cny the burden effect over income.
    # Utilisation is taken against the line the borrower was underwritten for: in the data it marks
    # stretched borrowers, it does not cause default, so raising a line must not make anyone safer, while
    # borrowing more of it does make them riskier (DOMAIN: Gross & Souleles 2002, risk flows through exposure).
    logit = (s.miss_logit_base + dflt.unemployed_effect * s.unemployed
             + dflt.utilisation_effect * (balance / s.origination_line)
             + dflt.history_effect * s.missed_payments + s.burden_per_cny * due)
    if stress:
        logit += dflt.stress_effect
    miss = (u[1] < _sigmoid(logit)) & (balance > 0)
    miss[late] = False
    missed = np.flatnonzero(miss)

    # 6. Paying accounts move toward their target balance: their target share of the original line, plus
    # a share of any change in the line they have adapted to, as large as the borrower is credit-constrained
    # (DOMAIN: Gross & Souleles 2002; Agarwal et al. 2018; Aydin 2022 for the gradual build-up), up to
    # their need for credit.
    # No one borrows past their need for credit: extra borrowing is capped by the need's headroom.
    extra = beh.max_line_response * s.constraint * (s.adapted_line - s.origination_line)
    target = s.target_utilisation * s.origination_line + np.minimum(extra, s.need_headroom)
    noise = beh.balance_noise * line * (2 * u[2] - 1)
    wanted = balance + beh.balance_adjust_rate * (target - balance) + noise
    first = np.flatnonzero(s.months_on_book == 0)  # new accounts draw their target at once
    wanted[first] = target[first] + noise[first]
    floor = balance + interest - due  # the balance if exactly what is due is paid
    wanted = np.clip(wanted, 0.0, np.maximum(line, floor))  # no drawing past the line
    # Accounts being closed draw nothing and run their balance off (at least what is due, and the
    # adjustment rate of the rest), exposed to default until it is paid.
    closing = np.flatnonzero(s.closing)
    wanted[closing] = np.minimum(floor[closing], balance[closing] * (1 - beh.balance_adjust_rate))
    drawn = np.maximum(wanted - floor, 0.0)
    repaid = balance + interest + drawn - wanted
    new_balance = wanted  # for paying accounts; set directly so that a paid-off balance is exactly 0
    drawn[missed] = 0.0
    repaid[missed] = 0.0
    new_balance[missed] = balance[missed] + interest[missed]  # interest is capitalised
    drawn[late] = 0.0  # delinquent accounts cannot draw

    # Delinquent accounts cure (pay what is overdue) or roll one bucket; the out-of-work cure less.
    mpd_late = mpd[late]
    cure_p = p.cure_rate[mpd_late] * np.where(s.unemployed[late], cfg.delinquency.unemployed_cure_factor, 1.0)
    cure = u[1][late] < cure_p
    b_late = balance[late]
    # A cure pays the interest, fees and the overdue principal of the missed months.
    overdue = np.minimum(b_late * np.maximum(share[late], 1.0 / prod.instalment_months) * mpd_late, b_late)
    repaid[late] = cure * (interest[late] + fees[late] + overdue)
    new_balance[late] = np.where(cure, b_late - overdue, b_late + interest[late] + fees[late])

    # 7. Buckets move; six months past due is charged off (DOMAIN: 180 days).
    # (the clamp only matters to a caller that keeps stepping a charged-off account without renewing it)
    new_mpd = miss.astype(np.int8)
    new_mpd[late] = np.where(cure, 0, np.minimum(mpd_late + 1, CHARGE_OFF_MONTHS))
    written_off = late[new_mpd[late] >= CHARGE_OFF_MONTHS]
    charge_off = np.zeros(n, dtype=bool)
    charge_off[written_off] = True
    charged_off = np.zeros(n)
    charged_off[written_off] = new_balance[written_off]
    new_balance[written_off] = 0.0

    # 8. Content current accounts in work may close, more so after a cut, with a line short of their
    # need, or a price above the market (DOMAIN: "low lines, high rates"); attrition_logit_base holds the
    # base rate and the price effect.
    s.months_since_cut = (s.months_since_cut + 1) * ~cut
    att = cfg.attrition
    logit_close = (s.attrition_logit_base + att.cut_effect * (s.months_since_cut <= att.cut_memory_months)
                   + att.low_line_effect * np.maximum(s.log_need - np.log(line), 0.0))
    # A borrower who decides to close stops drawing; the account leaves the book once what is left is
    # small enough to pay off at once (an assumption: CLOSING_PAYOFF CNY), charged off if it defaults first.
    deciding = (u[3] < _sigmoid(logit_close)) & ~s.unemployed & (new_mpd == 0)
    s.closing = s.closing | deciding
    closed = s.closing & (new_mpd == 0) & (new_balance <= CLOSING_PAYOFF)
    leaving = np.flatnonzero(closed)
    repaid[leaving] += new_balance[leaving]
    new_balance[leaving] = 0.0
    terminated = charge_off | closed

    # 9. The lender's view of the account updates.
    s.missed_payments *= _MISSED_PAYMENT_MEMORY
    s.missed_payments[missed] += 1.0
    s.score = np.clip(s.origination_score - _SCORE_PER_BUCKET * new_mpd
                           - _SCORE_PER_MISS * s.missed_payments, *SCORE_RANGE)
    # Share of the statement paid; a micro-fen added to both sides makes "nothing owed" a ratio of 1.
    ratio = (repaid + 1e-9) / (balance + interest + fees + 1e-9)
    s.payment_ratios[2] = s.payment_ratios[1]
    s.payment_ratios[1] = s.payment_ratios[0]
    np.clip(ratio, 0.0, 1.0, out=s.payment_ratios[0])  # (0 guards a -1e-13 rounding of a zero payment)

    # 10. The month's accounts.
    still_late = np.concatenate((missed, late[(new_mpd[late] > 0) & (new_mpd[late] < CHARGE_OFF_MONTHS)]))
    provision = expected_loss(p, new_mpd, s.score, new_balance, line, still_late)
    provision[terminated] = 0.0
    acquisition = np.zeros(n)
    if acc.book_acquisition_cost:
        acquisition[first] = -acc.acquisition_cost
    components = {
        "interest": interest,
        "fees": fees,
        "funding_cost": balance * (-acc.funding_rate / 12),
        "credit_loss": charged_off * -(1 - cfg.delinquency.recovery_rate),
        "provision_change": s.provision - provision,
        "operating_cost": np.full(n, -acc.operating_cost),
        "acquisition_cost": acquisition,
    }
    revenue = interest + fees + components["funding_cost"] + components["credit_loss"] + acquisition
    reward = revenue + components["provision_change"] + components["operating_cost"]
    cost = np.zeros(n)
    in_m3plus = late[(new_mpd[late] >= 3) & (new_mpd[late] < CHARGE_OFF_MONTHS)]
    cost[in_m3plus] = new_balance[in_m3plus] / acc.reference_balance

    s.balance = new_balance
    s.months_past_due = new_mpd
    s.provision = provision
    s.months_on_book = s.months_on_book + 1
    s.months_since_line_change = (s.months_since_line_change + 1) * unchanged
    truncated = (s.months_on_book >= cfg.env.horizon) & ~terminated
    return MonthResult(reward, components, revenue, cost, terminated, truncated, charged_off, closed,
                       drawn, repaid, balance)
