"""Expected-loss provisioning (IFRS 9 style) and the names of the reward's components."""

from __future__ import annotations

import numpy as np

from envs.params import SimParams

# Each month's reward is the sum of these, in CNY per account (signs: income positive, costs negative).
REWARD_COMPONENTS = (
    "interest",  # contract interest accrued on the opening balance
    "fees",  # penalty interest on overdue balances
    "funding_cost",  # funding rate on the opening drawn balance
    "credit_loss",  # balance charged off this month, net of the expected recovery
    "provision_change",  # minus the change in the expected-loss allowance
    "operating_cost",  # servicing cost of an open account
    "acquisition_cost",  # booked in an account's first month when accounting.book_acquisition_cost
)
# Per-user revenue (DOMAIN.md section 2) leaves out provisions and servicing: it is the cash margin.
REVENUE_COMPONENTS = ("interest", "fees", "funding_cost", "credit_loss", "acquisition_cost")


def expected_loss(
    p: SimParams,
    months_past_due: np.ndarray,
    score: np.ndarray,
    balance: np.ndarray,
    line: np.ndarray,
    late: np.ndarray | None = None,
) -> np.ndarray:
    """PD x LGD x EAD with EAD = drawn + CCF x undrawn (DOMAIN.md section 3) [CNY].

    Stage 1 (current) takes a 12-month PD from the behaviour score; M1-M2 (stage 2) and M3+ (default)
    take the configured PDs. A higher line raises the allowance before any of it is drawn.
    """
    acc = p.config.accounting
    lgd = 1 - p.config.delinquency.recovery_rate
    # PD x LGD = LGD / (1 + exp(-logit)), logit = intercept + slope x (center - score) / 100, in place.
    slope = acc.pd_stage1_slope / 100
    pd_lgd = score * slope
    pd_lgd -= acc.pd_stage1_intercept + slope * p.config.population.score_center
    np.exp(pd_lgd, out=pd_lgd)
    pd_lgd += 1.0
    np.divide(lgd, pd_lgd, out=pd_lgd)
    if late is None:  # indices of the delinquent accounts, if the caller does not have them already
        late = np.flatnonzero(months_past_due > 0)
    # a few percent: overwrite on the subset, not with np.where
    pd_lgd[late] = p.stage2_pd[months_past_due[late]] * lgd
    exposure = line - balance
    np.clip(exposure, 0.0, np.inf, out=exposure)  # max(undrawn, 0); clip is numpy's faster path
    exposure *= acc.ccf
    exposure += balance
    exposure *= pd_lgd
    return exposure
