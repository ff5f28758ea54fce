"""One month of a revolving credit portfolio, for every account at once.

Order within a month: the lender sets the line; jobs are lost and found, and financial distress sets in,
deepens or passes; interest accrues on the opening balance (not on accounts at M3+: non-accrual); each
account pays (or misses) what it owes and draws toward its target balance (the distressed toward the line);
delinquent accounts cure or roll a bucket, and are charged off at 6 months past due; content current
accounts may close; the lender's behaviour score updates; the book is valued. No Python loop over
accounts; every random number comes from the account's counter-based stream, so one account's month does
not depend on which others share the batch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from envs.accounting import expected_loss
from envs.config import CHARGE_OFF_MONTHS, AccountingConfig
from envs.kernels import balance_targets, behaviour_score_points, bounded_wanted, new_lines, payments
from envs.params import SimParams
from envs.population import SCORE_RANGE
from envs.random_stream import MONTHLY_STRIDE, monthly_uniforms_at
from envs.state import PortfolioState

_MISSED_PAYMENT_MEMORY = 0.9  # monthly decay of the missed-payment count (assumption: ~10-month memory)
_SCORE_PER_BUCKET = 60.0  # behaviour-score points lost per month past due (assumption)
SCORE_POINTS_PER_LOGIT = 100.0  # behaviour-score points per unit of the scorecard's logit (pd_stage1_slope = 1)
# The scorecard's logit is taken relative to an account at 50% utilisation paying half its statement
# (assumption: a centre, so that the score keeps the origination score's scale).
_SCORE_CENTRE_UTILISATION = 0.5
_SCORE_CENTRE_PAYMENT = 0.5
NON_ACCRUAL_MONTHS = 3  # no interest or fees from 90 days past due (DOMAIN: IFRS 9 stage 3, lenders' practice)
FULL_LINE = 0.9  # a borrower using this share of the line or more does not close the account (assumption)
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


def _sigmoid_(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``scale / (1 + exp(-x))`` computed in place in ``x`` (which is returned)."""
    np.negative(x, out=x)
    np.exp(x, out=x)
    x += 1.0
    return np.divide(scale, x, out=x)


def _clip_below_(x: np.ndarray, low: float) -> np.ndarray:
    """``np.maximum(x, low)`` in place; np.clip with scalar bounds takes numpy's vectorised path (2x faster)."""
    return np.clip(x, low, np.inf, out=x)


def _same_for_all(value: float, n: int) -> np.ndarray:
    """A read-only array of ``n`` copies of ``value`` that stores one (stride 0; np.full would fill n)."""
    out = np.ndarray((n,), dtype=np.float64, buffer=np.array([value]), strides=(0,))
    out.flags.writeable = False
    return out


def step(
    state: PortfolioState,
    line_multiplier: np.ndarray,
    p: SimParams,
    stress: bool,
    new_accounts: np.ndarray | None = None,
) -> MonthResult:
    """Advance every account one month in place; ``line_multiplier`` scales each line before the month.

    ``new_accounts``, if the caller knows them, are the indices of the accounts in their first month
    (``months_on_book == 0``), which spares a scan.

    Speed: arithmetic runs on whole arrays as if every account were current and paying; the few accounts
    that are delinquent, miss, close or are charged off are then corrected on index subsets. Per-account
    constants are computed once at origination (``envs.population``), temporaries are updated in place,
    and random masks in ``np.where`` are avoided (they defeat branch prediction at 100k accounts).
    """
    cfg = p.config
    prod, beh, dflt, acc = cfg.product, cfg.behaviour, cfg.default, cfg.accounting
    s = state
    n = len(s)
    u = monthly_uniforms_at(s.stream)  # the account's draws for its months_on_book-th month
    s.stream += MONTHLY_STRIDE
    first = np.flatnonzero(s.months_on_book == 0) if new_accounts is None else new_accounts  # first month

    # 1. The lender's decision: a new line, in whole hundreds, inside the product's floor and maximum.
    # The borrower adjusts to a raise, fast and slowly (Aydin 2022); a cut is not adjusted to: the borrower
    # still wants the balance and the new line caps it (DOMAIN: CFPB, utilisation above 90% after a cut).
    # (one compiled pass: envs.kernels.new_lines)
    old_line = s.line
    multiplier = np.broadcast_to(np.asarray(line_multiplier, dtype=np.float64), (n,))
    line, unchanged, cut = np.empty(n), np.empty(n, dtype=bool), np.empty(n, dtype=bool)
    new_lines(
        old_line,
        multiplier,
        float(prod.min_line),
        float(prod.max_line),
        line,
        unchanged,
        cut,
        s.adapted_line,
        s.slow_adapted_line,
        float(beh.line_adapt_rate),
        float(beh.slow_line_adapt_rate),
    )
    cut[first] = False  # a cut before the first month is a lower starting line, not one lived through
    s.line = line

    # 2. Jobs are lost and found; stress raises losses and slows re-employment.
    mac = cfg.macro
    job_loss = s.job_loss_rate * mac.stress_job_loss_multiplier if stress else s.job_loss_rate
    find = dflt.reemployment_rate * (mac.stress_reemployment_multiplier if stress else 1.0)
    was_jobless = np.flatnonzero(s.unemployed)  # a few percent
    # A shock (u < job loss + other onset) is rare: one scan finds it, job losses are the shocks below job_loss.
    shocked = np.flatnonzero(u[0] < (job_loss + s.distress_onset if stress else s.shock_rate))
    unemployed = np.zeros(n, dtype=bool)
    unemployed[shocked] = u[0][shocked] < job_loss[shocked]
    unemployed[was_jobless] = u[0][was_jobless] >= find
    s.unemployed = unemployed
    jobless = np.flatnonzero(unemployed)
    # distressed accounts (a few percent)
    troubled = _update_distress(s, u[0], shocked, unemployed, dflt.distress_ramp, dflt.distress_recovery_rate)
    distress = s.distress[troubled]

    # 3. Interest on the opening balance; overdue balances pay the penalty rate on top.
    balance = s.balance
    mpd = s.months_past_due
    late = np.flatnonzero(mpd > 0)  # delinquent accounts (a few percent); a bool mask scans 5x faster
    interest = balance * s.monthly_rate
    interest[late[mpd[late] >= NON_ACCRUAL_MONTHS]] = 0.0  # non-accrual: nothing accrues, nothing is booked
    interest_late = interest[late]
    fees_late = interest_late * (prod.penalty_rate_multiplier - 1)
    fees = np.zeros(n)
    fees[late] = fees_late

    # 4. What is due: interest plus the repayment mode's share of principal; interest-first accounts owe
    # all of it in their balloon month. ``floor`` is the balance if exactly what is due is paid.
    share = s.scheduled_share
    floor = balance * (1.0 - share)
    balloon = _balloon_accounts(s, prod.instalment_months) if p.has_interest_first else late[:0]
    floor[balloon] = 0.0
    share_late = share[late]
    if balloon.size:
        in_balloon = np.zeros(n, dtype=bool)
        in_balloon[balloon] = True
        share_late[in_balloon[late]] = 1.0

    # 5. Current accounts miss with a logistic hazard; job loss dominates (DOMAIN: Castellanos et al.).
    # The logit is intercept + risk (miss_logit_base) + utilisation + payment burden (both linear in the
    # balance: miss_per_cny) + missed-payment history + unemployment + stress.
    # Utilisation is taken against the line the borrower was underwritten for: in the data it marks
    # stretched borrowers, it does not cause default, so raising a line must not make anyone safer, while
    # borrowing more of it does make them riskier (DOMAIN: Gross & Souleles 2002, risk flows through exposure).
    logit = s.miss_per_cny * balance.astype(np.float32)  # float32 hazard (envs.state)
    logit += s.miss_logit_base
    logit += dflt.history_effect * s.missed_payments
    logit[jobless] += dflt.unemployed_effect
    logit[troubled] += dflt.distress_effect * distress
    if balloon.size:
        logit[balloon] += s.burden_per_cny[balloon] * balance[balloon]
    if stress:
        logit += dflt.stress_effect
    miss = u[1] < _sigmoid_(logit)
    miss &= balance > 0
    miss[late] = False
    missed = np.flatnonzero(miss)

    # 6. Paying accounts move toward their target balance: their target share of the original line, plus
    # a share of any change in the line they have adapted to, as large as the borrower is credit-constrained
    # (DOMAIN: Gross & Souleles 2002; Agarwal et al. 2018; Aydin 2022 for the gradual build-up), up to
    # their need for credit: no one borrows past it (need_headroom caps the extra).
    # (the fast and the slow part of the adapted line, weighted by slow_response_share; a uniform noise on
    # +-balance_noise x line; the balance moving toward the target by balance_adjust_rate: one compiled
    # pass, envs.kernels.balance_targets, in numpy's order of operations)
    target, noise, wanted = np.empty(n), np.empty(n), np.empty(n)
    balance_targets(
        s.adapted_line,
        s.slow_adapted_line,
        s.origination_line,
        s.line_response,
        s.need_headroom,
        s.target_balance,
        u[2],
        line,
        balance,
        1.0 - beh.slow_response_share,
        float(beh.slow_response_share),
        np.float32(2 * beh.balance_noise),
        np.float32(beh.balance_noise),
        float(beh.balance_adjust_rate),
        target,
        noise,
        wanted,
    )
    # The distressed borrow toward the line, as far as their distress goes (DOMAIN: Qi 2009, drawdown
    # before default). (Their wanted balance above is replaced below: only the overrides read this target.)
    gap = line[troubled] - target[troubled]
    target[troubled] += np.maximum(gap, 0.0) * np.minimum(dflt.distress_draw * distress, 1.0)
    wanted[first] = target[first] + noise[first]  # new accounts draw their target at once
    # So do the distressed (they need the money now). No prepayment by the distressed, nor of a balance
    # above a cut line: they pay what is due and no more (DOMAIN: CFPB, balances stay near the new line),
    # so a cut caps exposure and does not buy repayment.
    wanted[troubled] = np.maximum(target[troubled] + noise[troubled], floor[troubled])
    # At least the floor where the balance is above the line, no drawing past the line, never below 0.
    bounded_wanted(wanted, balance, line, floor)
    # Accounts being closed draw nothing and run their balance off (at least what is due, and the
    # adjustment rate of the rest), exposed to default until it is paid. (Only borrowers who can do without
    # the credit decide to close: not the distressed, nor those using the whole line, step 8.)
    closing = np.flatnonzero(s.closing)
    wanted[closing] = np.minimum(floor[closing], balance[closing] * (1 - beh.balance_adjust_rate))
    drawn, statement, repaid = np.empty(n), np.empty(n), np.empty(n)
    payments(wanted, floor, balance, interest, drawn, statement, repaid)  # statement: owed before any payment
    new_balance = wanted  # for paying accounts; set directly so that a paid-off balance is exactly 0
    drawn[missed] = 0.0
    repaid[missed] = 0.0
    new_balance[missed] = balance[missed] + interest[missed]  # interest is capitalised
    drawn[late] = 0.0  # delinquent accounts cannot draw

    # Delinquent accounts cure (pay what is overdue) or roll one bucket; the out-of-work cure less.
    mpd_late = mpd[late]
    cure_p = _cure_probability(p, mpd_late, unemployed[late], s.distress[late])
    cure = u[1][late] < cure_p
    b_late = balance[late]
    # A cure pays the interest, fees and the overdue principal of the missed months.
    overdue = np.minimum(b_late * np.maximum(share_late, 1.0 / prod.instalment_months) * mpd_late, b_late)
    charges_late = interest_late + fees_late
    repaid[late] = cure * (charges_late + overdue)
    new_balance[late] = np.where(cure, b_late - overdue, b_late + charges_late)

    # 7. Buckets move; six months past due is charged off (DOMAIN: 180 days).
    # (the clamp only matters to a caller that keeps stepping a charged-off account without renewing it)
    new_mpd = miss.view(np.int8).copy()
    mpd_after = np.where(cure, 0, np.minimum(mpd_late + 1, CHARGE_OFF_MONTHS)).astype(np.int8)
    new_mpd[late] = mpd_after
    written_off = late[mpd_after >= CHARGE_OFF_MONTHS]
    charged_off = np.zeros(n)
    charged_off[written_off] = new_balance[written_off]
    new_balance[written_off] = 0.0

    # 8. Content current accounts in work may close, more so after a cut, with a line short of their
    # need, or a price above the market (DOMAIN: "low lines, high rates"); attrition_logit_base holds the
    # base rate and the price effect.
    att = cfg.attrition
    since_cut = s.months_since_cut
    since_cut += 1
    since_cut *= ~cut
    logit_close = np.log(line, dtype=np.float32)
    np.subtract(s.log_need, logit_close, out=logit_close)
    _clip_below_(logit_close, 0.0)
    logit_close *= att.low_line_effect
    logit_close += s.attrition_logit_base
    logit_close += np.float32(att.cut_effect) * (since_cut <= att.cut_memory_months)
    # A borrower who decides to close stops drawing; the account leaves the book once what is left is
    # small enough to pay off at once (an assumption: CLOSING_PAYOFF CNY), charged off if it defaults first.
    deciding = np.flatnonzero(u[3] < _sigmoid_(logit_close))
    # Neither the distressed nor a borrower using (nearly) all of the line walks away from it: to leave,
    # a borrower must be able to do without the credit (assumption; DOMAIN: CFPB, balances stay near a cut line).
    deciding = deciding[
        ~s.closing[deciding]
        & ~unemployed[deciding]
        & (new_mpd[deciding] == 0)
        & (s.distress[deciding] == 0)
        & (new_balance[deciding] < FULL_LINE * line[deciding])
    ]
    s.closing[deciding] = True
    closing = np.concatenate((closing, deciding))
    leaving = closing[(new_mpd[closing] == 0) & (new_balance[closing] <= CLOSING_PAYOFF)]
    repaid[leaving] += new_balance[leaving]
    new_balance[leaving] = 0.0
    closed = np.zeros(n, dtype=bool)
    closed[leaving] = True
    terminated = closed.copy()
    terminated[written_off] = True

    # 9. The lender's view of the account updates.
    s.missed_payments *= _MISSED_PAYMENT_MEMORY
    s.missed_payments[missed] += 1.0
    behind = np.concatenate((missed, late[mpd_after > 0]))  # past due at month end (charged off included)
    # Share of the statement paid; a micro-fen added to both sides makes "nothing owed" a ratio of 1.
    statement[late] += fees_late
    statement += 1e-9
    ratio = repaid + 1e-9
    ratio /= statement
    s.payment_ratios[2] = s.payment_ratios[1]
    s.payment_ratios[1] = s.payment_ratios[0]
    np.clip(ratio, 0.0, 1.0, out=s.payment_ratios[0])  # (0 guards a -1e-13 rounding of a zero payment)
    s.score = _behaviour_score(s, new_balance, acc)
    s.score[behind] -= _SCORE_PER_BUCKET * new_mpd[behind]
    _clip_below_(s.score, SCORE_RANGE[0])

    # 10. The month's accounts.
    provision = expected_loss(p, new_mpd, s.score, new_balance, line, behind)
    provision[leaving] = 0.0
    provision[written_off] = 0.0
    funding_cost = balance * (-acc.funding_rate / 12)
    credit_loss = np.zeros(n)
    credit_loss[written_off] = charged_off[written_off] * -(1 - cfg.delinquency.recovery_rate)
    acquisition = np.zeros(n)
    if acc.book_acquisition_cost:
        acquisition[first] = -acc.acquisition_cost
    components = {
        "interest": interest,
        "fees": fees,
        "funding_cost": funding_cost,
        "credit_loss": credit_loss,
        "provision_change": s.provision - provision,
        "operating_cost": _same_for_all(-acc.operating_cost, n),
        "acquisition_cost": acquisition,
    }
    # Fees, losses and acquisition costs are zero outside a few accounts: add them there only.
    revenue = interest + funding_cost
    revenue[late] += fees_late
    revenue[written_off] += credit_loss[written_off]
    revenue[first] += acquisition[first]
    reward = revenue + components["provision_change"]
    reward -= acc.operating_cost
    cost = np.zeros(n)
    in_m3plus = late[(mpd_after >= 3) & (mpd_after < CHARGE_OFF_MONTHS)]
    cost[in_m3plus] = new_balance[in_m3plus] / acc.reference_balance

    s.balance = new_balance
    s.months_past_due = new_mpd
    s.provision = provision
    s.months_on_book = s.months_on_book + 1
    s.months_since_line_change += 1
    s.months_since_line_change *= unchanged
    truncated = s.months_on_book >= cfg.env.horizon
    truncated &= ~terminated
    return MonthResult(
        reward, components, revenue, cost, terminated, truncated, charged_off, closed, drawn, repaid, balance
    )


def _update_distress(
    s: PortfolioState, u: np.ndarray, shocked: np.ndarray, unemployed: np.ndarray, ramp: float, recovery: float
) -> np.ndarray:
    """Distress deepens by ``ramp`` a month until it passes (a borrower in work recovers with probability
    ``recovery``); a job loss or another shock (the accounts ``shocked``) starts it. One uniform serves job
    loss (u < job_loss), other shocks (u < job_loss + onset), recovery (u >= 1 - recovery): disjoint events,
    no extra draw. Returns the indices of the accounts in distress after the update (in no particular order)."""
    troubled = np.flatnonzero(s.distress)
    deeper = np.minimum(s.distress[troubled] + np.float32(ramp), np.float32(1.0))
    recovered = (u[troubled] >= 1.0 - recovery) & ~unemployed[troubled]
    deeper[recovered] = 0.0
    s.distress[troubled] = deeper
    fresh = shocked[s.distress[shocked] == 0]  # (those still distressed deepen, not restart)
    s.distress[fresh] = np.float32(ramp)
    return np.concatenate((troubled[~recovered], fresh))


def _behaviour_score(s: PortfolioState, balance: np.ndarray, acc: AccountingConfig) -> np.ndarray:
    """The lender's behaviour score from what it observes: the origination score moved by a scorecard logit
    of utilisation (level and rise above its recent average), the share of statements paid, remembered
    missed payments and months on book (DOMAIN: Alfonso-Sanchez et al. 2024 for the coefficients' signs
    and sizes). Updates ``s.utilisation_average`` in place; returns a new float32 array."""
    # Utilisation of the line granted at origination, as in the miss hazard: the lender's own line changes
    # do not move the score (a raise does not make anyone safer); clipped at a full line. One compiled pass
    # (envs.kernels.behaviour_score_points) in float32, in this order: utilisation x its points, plus its
    # rise above the average x points, the mean payment ratio, the remembered misses and the months on book
    # (before this month's increment) x their points, on the origination score, less the centre.
    points = -SCORE_POINTS_PER_LOGIT  # score points per unit of the scorecard logit (down is riskier)
    centre = acc.score_utilisation_effect * _SCORE_CENTRE_UTILISATION + acc.score_payment_effect * _SCORE_CENTRE_PAYMENT
    score = np.empty(len(s), dtype=np.float32)
    f32 = np.float32
    behaviour_score_points(
        balance,
        s.origination_line,
        s.utilisation_average,
        s.payment_ratios,
        s.missed_payments,
        s.months_on_book,
        s.origination_score,
        f32(acc.score_trend_memory),
        f32(points * acc.score_utilisation_effect),
        f32(points * acc.score_trend_effect),
        f32(points * acc.score_payment_effect / len(s.payment_ratios)),
        f32(points * acc.score_history_effect),
        f32(points * acc.score_tenure_effect),
        f32(points * centre),
        f32(SCORE_RANGE[0]),
        f32(SCORE_RANGE[1]),
        score,
    )
    return score


def miss_probability(s: PortfolioState, p: SimParams, stress: bool) -> np.ndarray:
    """The probability that each account misses its next payment if its line is held, as the monthly step
    would compute it from the state as it stands (employment and distress as they are now, ignoring the
    month's draws): for a current account with a balance the logistic miss hazard, for a delinquent one
    the probability of not curing (rolling a bucket), 0 for a zero balance."""
    _cfg, dflt = p.config, p.config.default
    balance = s.balance
    logit = s.miss_per_cny * balance.astype(np.float32)  # float32, as in the step
    logit += s.miss_logit_base
    logit += dflt.history_effect * s.missed_payments
    logit[s.unemployed] += dflt.unemployed_effect
    logit += dflt.distress_effect * s.distress
    balloon = (s.months_to_balloon == 1) if p.has_interest_first else np.zeros(len(s), dtype=bool)
    logit[balloon] += s.burden_per_cny[balloon] * balance[balloon]
    if stress:
        logit += dflt.stress_effect
    prob = 1.0 / (1.0 + np.exp(-logit.astype(np.float64)))
    prob[balance <= 0] = 0.0
    mpd = s.months_past_due
    late = (mpd > 0) & (mpd < CHARGE_OFF_MONTHS)
    prob[late] = 1.0 - _cure_probability(p, mpd[late], s.unemployed[late], s.distress[late])
    return prob


def _cure_probability(p: SimParams, mpd: np.ndarray, unemployed: np.ndarray, distress: np.ndarray) -> np.ndarray:
    """Cure probability of delinquent accounts: the bucket's rate, less for the out of work and the
    distressed (who cannot pay what is overdue)."""
    dq = p.config.delinquency
    cure = p.cure_rate[mpd] * np.where(unemployed, dq.unemployed_cure_factor, 1.0)
    cure *= 1.0 - (1.0 - dq.distressed_cure_factor) * distress
    return cure


def _balloon_accounts(s: PortfolioState, instalment_months: int) -> np.ndarray:
    """Interest-first accounts whose principal falls due this month (every ``instalment_months`` months)."""
    s.months_to_balloon -= 1
    balloon = np.flatnonzero(s.months_to_balloon == 0)
    s.months_to_balloon[balloon] = instalment_months
    return balloon
