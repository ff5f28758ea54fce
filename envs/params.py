"""Frozen numeric parameters derived once from a validated Config, in the shapes the core indexes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.config import AGE_BANDS, CHARGE_OFF_MONTHS, CITY_TIERS, REPAYMENT_MODES, Config

NO_BALLOON = 2**30  # months_to_balloon of an account that never owes its principal at once


def _cdf(weights: list[float]) -> np.ndarray:
    # Normalised so the last positive weight ends exactly at 1: a uniform in (0, 1) never lands on a
    # trailing zero-weight category.
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return float(np.log(p / (1 - p)))


@dataclass(frozen=True)
class SimParams:
    config: Config
    age_cdf: np.ndarray
    city_cdf: np.ndarray
    mode_cdf: np.ndarray
    age_risk: np.ndarray
    city_risk: np.ndarray
    income_median: np.ndarray
    scheduled_share: np.ndarray  # principal due per month as a share of balance, by repayment mode
    cure_rate: np.ndarray  # by months past due (index 0 unused)
    stage2_pd: np.ndarray  # 12-month PD by months past due for provisions (index 0 unused)
    revolver_logit: float
    attrition_logit: float
    has_interest_first: bool  # whether any account can have a balloon month
    job_loss_rate: np.ndarray  # monthly, normal regime, by [age band, city tier, thin file]
    first_balloon: np.ndarray  # months_to_balloon of a new account, by repayment mode

    @classmethod
    def from_config(cls, config: Config) -> SimParams:
        pop, prod = config.population, config.product
        term = prod.instalment_months
        share = {
            "revolving": prod.revolving_min_payment,
            "equal_principal": 1.0 / term,
            # interest-first owes nothing until maturity; the dynamics bill the balloon then
            "interest_first": 0.0,
        }
        cure = np.zeros(CHARGE_OFF_MONTHS + 1)
        cure[1:CHARGE_OFF_MONTHS] = config.delinquency.cure_rates
        pd = np.ones(CHARGE_OFF_MONTHS + 1)
        pd[1:3] = config.accounting.pd_stage2
        return cls(
            config=config,
            age_cdf=_cdf([pop.age_mix.get(a, 0.0) for a in AGE_BANDS]),
            city_cdf=_cdf([pop.city_mix.get(c, 0.0) for c in CITY_TIERS]),
            mode_cdf=_cdf([prod.repayment_mix.get(m, 0.0) for m in REPAYMENT_MODES]),
            age_risk=np.array([pop.age_risk[a] for a in AGE_BANDS]),
            city_risk=np.array([pop.city_risk[c] for c in CITY_TIERS]),
            income_median=np.array([pop.income_median[c] for c in CITY_TIERS]),
            scheduled_share=np.array([share[m] for m in REPAYMENT_MODES]),
            cure_rate=cure,
            stage2_pd=pd,
            revolver_logit=_logit(pop.revolver_share),
            attrition_logit=_logit(config.attrition.base_rate),
            has_interest_first=prod.repayment_mix.get("interest_first", 0.0) > 0,
            job_loss_rate=_job_loss_rates(config),
            first_balloon=np.array(
                [term if m == "interest_first" else NO_BALLOON for m in REPAYMENT_MODES], dtype=np.int32
            ),
        )


def _job_loss_rates(config: Config) -> np.ndarray:
    """Monthly job-loss probability in the normal regime by [age band, city tier, thin file]."""
    d = config.default
    mult = d.job_loss_multiplier
    young = np.array([mult.get("young", 1.0) if a == AGE_BANDS[0] else 1.0 for a in AGE_BANDS])
    lower_tier = np.array([mult.get("lower_tier", 1.0) if c == CITY_TIERS[-1] else 1.0 for c in CITY_TIERS])
    thin = np.array([1.0, mult.get("thin_file", 1.0)])
    rate = d.job_loss_rate * young[:, None, None] * lower_tier[None, :, None] * thin[None, None, :]
    return np.minimum(rate, 1.0)  # a probability: large what-if multipliers saturate


def draw_category(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index of the category each uniform falls in, given the cumulative weights.

    The number of cumulative weights at or below u (searchsorted, side="right"), counted with one
    comparison per category: a handful of categories, so this beats a binary search per draw.
    """
    index = np.zeros(len(u), dtype=np.int8)
    for edge in cdf[:-1]:  # u < 1 = cdf[-1] always
        index += u >= edge
    return index
