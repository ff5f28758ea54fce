"""Origination: draw new accounts from the preset's segment mix and grant their line and price."""

from __future__ import annotations

import numpy as np

from envs.params import SimParams, draw_category
from envs.random_stream import account_keys, origination_uniforms, standard_normal
from envs.state import PortfolioState

NEVER_CUT = 10_000  # months_since_cut of an account whose line was never cut
SCORE_RANGE = (300.0, 900.0)
_APR_TIERS = 5  # risk tiers of the price grid


def originate(state: PortfolioState, idx: np.ndarray, p: SimParams) -> None:
    """Replace the accounts at ``idx`` by newly acquired ones; their seeds and episode counters must be set."""
    cfg, pop, prod = p.config, p.config.population, p.config.product
    key = account_keys(state.seed[idx], state.episode[idx])
    u = origination_uniforms(key, 16)
    age = draw_category(p.age_cdf, u[0])
    city = draw_category(p.city_cdf, u[1])
    thin = u[2] < pop.thin_file_share
    risk = (p.age_risk[age] + p.city_risk[city] + pop.thin_file_risk * thin
            + standard_normal(u[3], u[4]))
    income = p.income_median[city] * np.exp(pop.income_sigma * standard_normal(u[5], u[6]))
    need = income * pop.need_median * np.exp(pop.need_sigma * standard_normal(u[7], u[8]))

    # The score sees latent risk through noise; thin files are seen worse (DOMAIN: long-tail users).
    noise_sd = np.where(thin, pop.thin_file_score_noise, pop.score_noise)
    score_noise = noise_sd * standard_normal(u[9], u[10])
    score = np.clip(pop.score_center - pop.score_scale * (risk + score_noise), *SCORE_RANGE)

    # Line: months of income scaled by score, in whole hundreds of CNY, inside the product's range.
    line = income * prod.line_income_multiple * np.exp(prod.line_score_slope * (score - pop.score_center) / 100)
    line = np.clip(np.round(line, -2), prod.min_line, prod.max_line)

    # Price: five risk tiers by score, spread evenly over the product's band (always inside it); tier 0
    # at or above price_best_score, one tier per price_tier_width points below it.
    tier = np.clip(np.floor((prod.price_best_score - score) / prod.price_tier_width) + 1, 0, _APR_TIERS - 1)
    apr = np.minimum(prod.apr_low + tier / (_APR_TIERS - 1) * (prod.apr_high - prod.apr_low), prod.apr_high)

    revolver = u[11] < 1 / (1 + np.exp(-(p.revolver_logit + pop.revolver_risk_slope * risk)))
    lo_r, hi_r = pop.revolver_utilisation
    lo_t, hi_t = pop.transactor_utilisation
    target = np.where(revolver, lo_r + (hi_r - lo_r) * u[12], lo_t + (hi_t - lo_t) * u[12])
    beh = cfg.behaviour
    constraint = 1 / (1 + np.exp(-(beh.constraint_intercept + beh.constraint_risk_slope * risk
                                   + beh.constraint_need_slope * np.log(need / line))))
    constraint = np.where(revolver, constraint, 0.0)  # transactors' borrowing does not follow the line

    state.key[idx] = key
    state.risk[idx] = risk
    state.income[idx] = income
    state.need[idx] = need
    state.revolver[idx] = revolver
    state.target_utilisation[idx] = target
    state.constraint[idx] = constraint
    state.adapted_line[idx] = line
    state.unemployed[idx] = False  # approved applicants are in work
    state.closing[idx] = False
    state.job_loss_rate[idx] = job_loss_rate(p, age, city, thin)
    state.age_band[idx] = age
    state.city_tier[idx] = city
    state.thin_file[idx] = thin
    mode = draw_category(p.mode_cdf, u[13])
    state.repayment_mode[idx] = mode
    state.scheduled_share[idx] = p.scheduled_share[mode]
    dflt, att = cfg.default, cfg.attrition
    # Constant parts of the monthly hazards (envs.dynamics), computed once per account.
    state.miss_logit_base[idx] = dflt.risk_intercept + dflt.risk_slope * risk - 0.5 * dflt.utilisation_effect
    state.burden_per_cny[idx] = dflt.payment_burden_effect / income
    state.attrition_logit_base[idx] = p.attrition_logit + att.apr_effect * 100 * (apr - prod.market_apr)
    state.log_need[idx] = np.log(need)
    state.need_headroom[idx] = np.maximum(need - target * line, 0.0)
    state.apr[idx] = apr
    state.origination_score[idx] = score
    state.origination_line[idx] = line
    state.line[idx] = line
    state.balance[idx] = 0.0  # the first month's draw happens in the first step
    state.months_past_due[idx] = 0
    state.months_on_book[idx] = 0
    state.months_since_line_change[idx] = 0
    state.months_since_cut[idx] = NEVER_CUT
    state.missed_payments[idx] = 0.0
    state.score[idx] = score
    state.payment_ratios[:, idx] = 1.0
    state.provision[idx] = 0.0  # the first month books the allowance on the new line


def job_loss_rate(p: SimParams, age: np.ndarray, city: np.ndarray, thin: np.ndarray) -> np.ndarray:
    """Monthly job-loss probability in the normal regime, by segment."""
    d = p.config.default
    mult = d.job_loss_multiplier
    rate = d.job_loss_rate * np.where(age == 0, mult.get("young", 1.0), 1.0)
    rate = rate * np.where(thin, mult.get("thin_file", 1.0), 1.0)
    rate = rate * np.where(city == 2, mult.get("lower_tier", 1.0), 1.0)
    return np.minimum(rate, 1.0)  # a probability: large what-if multipliers saturate

