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


def expected_loss(p: SimParams, months_past_due: np.ndarray, score: np.ndarray, balance: np.ndarray,
                  line: np.ndarray, late: np.ndarray | None = None) -> np.ndarray:
    """PD x LGD x EAD with EAD = drawn + CCF x undrawn (DOMAIN.md section 3) [CNY].

    Stage 1 (current) takes a 12-month PD from the behaviour score; M1-M2 (stage 2) and M3+ (default)
    take the configured PDs. A higher line raises the allowance before any of it is drawn.
    """
    acc = p.config.accounting
    center = p.config.population.score_center
    pd = 1 / (1 + np.exp(-(acc.pd_stage1_intercept + acc.pd_stage1_slope * (center - score) / 100)))
    if late is None:  # indices of the delinquent accounts, if the caller does not have them already
        late = np.flatnonzero(months_past_due > 0)
    # a few percent: overwrite on the subset, not with np.where
    pd[late] = p.stage2_pd[months_past_due[late]]
    exposure = balance + acc.ccf * np.maximum(line - balance, 0.0)
    return pd * (1 - p.config.delinquency.recovery_rate) * exposure
