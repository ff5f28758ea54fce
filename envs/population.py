"""Origination: draw new accounts from the preset's segment mix and grant their line and price."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from envs.kernels import write_new_accounts
from envs.params import SimParams, draw_category
from envs.random_stream import account_keys, monthly_position, origination_uniforms, standard_normals
from envs.state import PortfolioState

NEVER_CUT = 10_000  # months_since_cut of an account whose line was never cut
SCORE_RANGE = (300.0, 900.0)
_APR_TIERS = 5  # risk tiers of the price grid


class Applicants(NamedTuple):
    """Newly acquired accounts as drawn from their keys: hidden traits, segment, and what was granted."""

    age: np.ndarray  # int8 index into AGE_BANDS
    city: np.ndarray  # int8 index into CITY_TIERS
    thin: np.ndarray  # bool, thin data file
    risk: np.ndarray  # hidden: latent risk [sd units], higher is riskier
    income: np.ndarray  # hidden: [CNY/month]
    need: np.ndarray  # hidden: credit need [CNY]
    revolver: np.ndarray  # hidden: bool, borrows on the line (else pays in full)
    target_utilisation: np.ndarray  # hidden: of the original line
    constraint: np.ndarray  # hidden: 0..1, how much borrowing follows the line
    score: np.ndarray  # origination score
    line: np.ndarray  # [CNY] granted line
    apr: np.ndarray  # granted price
    mode: np.ndarray  # int8 index into REPAYMENT_MODES


HIDDEN_TRAITS = ("risk", "income", "need", "revolver", "target_utilisation", "constraint")


def draw_applicants(key: np.ndarray, p: SimParams) -> Applicants:
    """The accounts keyed ``key`` at acquisition: a pure function of the key and the preset."""
    cfg, pop, prod = p.config, p.config.population, p.config.product
    u = origination_uniforms(key, 10)
    age = draw_category(p.age_cdf, u[0])
    city = draw_category(p.city_cdf, u[1])
    thin = u[2] < pop.thin_file_share
    risk_draw, income_draw = standard_normals(u[3], u[4])
    need_draw, score_draw = standard_normals(u[5], u[6])
    risk = p.age_risk[age] + p.city_risk[city] + pop.thin_file_risk * thin + risk_draw
    income = p.income_median[city] * np.exp(pop.income_sigma * income_draw)
    need = income * pop.need_median * np.exp(pop.need_sigma * need_draw)

    # The score sees latent risk through noise; thin files are seen worse (DOMAIN: long-tail users).
    noise_sd = np.where(thin, pop.thin_file_score_noise, pop.score_noise)
    score = np.clip(pop.score_center - pop.score_scale * (risk + noise_sd * score_draw), *SCORE_RANGE)

    # Line: months of income scaled by score, in whole hundreds of CNY, inside the product's range.
    line = income * prod.line_income_multiple * np.exp(prod.line_score_slope * (score - pop.score_center) / 100)
    line = np.clip(np.round(line, -2), prod.min_line, prod.max_line)

    # Price: five risk tiers by score, spread evenly over the product's band (always inside it); tier 0
    # at or above price_best_score, one tier per price_tier_width points below it.
    tier = np.clip(np.floor((prod.price_best_score - score) / prod.price_tier_width) + 1, 0, _APR_TIERS - 1)
    apr = np.minimum(prod.apr_low + tier / (_APR_TIERS - 1) * (prod.apr_high - prod.apr_low), prod.apr_high)

    revolver = u[7] < 1 / (1 + np.exp(-(p.revolver_logit + pop.revolver_risk_slope * risk)))
    lo_r, hi_r = pop.revolver_utilisation
    lo_t, hi_t = pop.transactor_utilisation
    target = np.where(revolver, lo_r + (hi_r - lo_r) * u[8], lo_t + (hi_t - lo_t) * u[8])
    beh = cfg.behaviour
    constraint = 1 / (
        1
        + np.exp(
            -(
                beh.constraint_intercept
                + beh.constraint_risk_slope * risk
                + beh.constraint_need_slope * np.log(need / line)
            )
        )
    )
    constraint = np.where(revolver, constraint, 0.0)  # transactors' borrowing does not follow the line
    mode = draw_category(p.mode_cdf, u[9])
    return Applicants(age, city, thin, risk, income, need, revolver, target, constraint, score, line, apr, mode)


def hidden_traits(state: PortfolioState, p: SimParams, idx: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Hidden traits (HIDDEN_TRAITS) of the accounts at ``idx`` (default all), recomputed from their keys.

    The monthly dynamics read the traits only through per-account constants set at origination, so the
    traits themselves are not stored (fewer arrays to write for every new account); analyses and tests
    get them here, exactly as drawn.
    """
    drawn = draw_applicants(state.key if idx is None else state.key[idx], p)
    return {name: getattr(drawn, name) for name in HIDDEN_TRAITS}


def originate(state: PortfolioState, idx: np.ndarray, p: SimParams) -> None:
    """Replace the accounts at ``idx`` by newly acquired ones; their seeds and episode counters must be set."""
    cfg, prod = p.config, p.config.product
    rows = np.asarray(idx)
    if rows.dtype == bool or rows.ndim != 1 or (rows.size and rows.min() < 0):
        rows = np.arange(len(state))[rows]  # a mask or negative indices: the indices numpy reads them as
    key = account_keys(state.seed[rows], state.episode[rows])
    age, city, thin, risk, income, need, revolver, target, constraint, score, line, apr, mode = draw_applicants(key, p)
    beh, dflt, att = cfg.behaviour, cfg.default, cfg.attrition
    scheduled_share = p.scheduled_share[mode]
    burden_per_cny = dflt.payment_burden_effect / income
    monthly_rate = apr / 12

    segment = (age.astype(np.intp) * p.job_loss_rate.shape[1] + city) * 2 + thin  # flat [age, city, thin]
    # Riskier borrowers hold less secure jobs (assumption: job_loss_risk_slope per sd of latent risk). The
    # segment's part of latent risk is in the segment's rate already; the factor exp(slope x z - slope^2 / 2)
    # of the individual part z ~ N(0, 1) averages 1, so job_loss_rate stays the segment's average rate.
    z = risk - p.age_risk[age] - p.city_risk[city] - cfg.population.thin_file_risk * thin
    slope = dflt.job_loss_risk_slope
    job_loss = np.minimum(p.job_loss_rate.ravel()[segment] * np.exp(slope * z - 0.5 * slope**2), 1.0)
    # Constant parts of the monthly hazards and balances (envs.dynamics), computed once per account.
    # Outside a balloon month what is due is (monthly rate + scheduled share) x balance, so utilisation
    # (of the original line) and payment burden both move the miss logit in proportion to the balance.
    new = (
        key,
        monthly_position(key, 0),
        job_loss,
        target * line,  # target_balance
        beh.max_line_response * constraint,  # line_response
        np.minimum(dflt.distress_onset_rate * np.exp(dflt.distress_risk_slope * risk), 1.0),  # distress_onset
        dflt.risk_intercept + dflt.risk_slope * risk - 0.5 * dflt.utilisation_effect,  # miss_logit_base
        burden_per_cny,
        dflt.utilisation_effect / line + burden_per_cny * (monthly_rate + scheduled_share),  # miss_per_cny
        p.attrition_logit + att.apr_effect * 100 * (apr - prod.market_apr),  # attrition_logit_base
        np.log(need),  # log_need
        np.maximum(need - target * line, 0.0),  # need_headroom
        age,
        city,
        thin,
        mode,
        scheduled_share,
        apr,
        monthly_rate,
        score,
        line,
    )
    s = state
    # One compiled pass writes these and a fresh account's starting values (approved applicants are in
    # work and not in distress; the first month's draw happens in the first step; the first month books
    # the allowance on the new line): envs.kernels.write_new_accounts, in the order it unpacks.
    book = (s.key, s.stream, s.unemployed, s.closing, s.job_loss_rate, s.target_balance, s.line_response,
            s.adapted_line, s.slow_adapted_line, s.distress, s.distress_onset, s.shock_rate, s.miss_logit_base,
            s.burden_per_cny, s.miss_per_cny, s.attrition_logit_base, s.log_need, s.need_headroom, s.age_band,
            s.city_tier, s.thin_file, s.repayment_mode, s.scheduled_share, s.apr, s.monthly_rate,
            s.origination_score, s.origination_line, s.line, s.balance, s.months_past_due, s.months_on_book,
            s.months_since_line_change, s.months_since_cut, s.months_to_balloon, s.missed_payments, s.score,
            s.utilisation_average, s.payment_ratios, s.provision)  # fmt: skip
    write_new_accounts(rows, new, book, p.first_balloon, NEVER_CUT)
