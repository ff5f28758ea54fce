"""Expected-loss provisioning (IFRS 9 style) and the names of the reward's components."""

from __future__ import annotations

import numpy as np

from envs.kernels import pd_lgd_exposure, stage1_logit
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
    if score.dtype != np.float32:
        raise TypeError(f"score must be float32 (the state's behaviour score), got {score.dtype}")
    lgd = 1 - p.config.delinquency.recovery_rate
    # PD x LGD = LGD / (1 + exp(-logit)), logit = intercept + slope x (center - score) / 100, in float32 (the
    # score's precision); two compiled passes (envs.kernels) around numpy's exp, in numpy's order.
    slope = acc.pd_stage1_slope / 100
    pd_lgd = np.empty(len(score), dtype=np.float32)
    stage1_logit(
        score, np.float32(slope), np.float32(acc.pd_stage1_intercept + slope * p.config.population.score_center), pd_lgd
    )
    np.exp(pd_lgd, out=pd_lgd)
    if late is None:  # indices of the delinquent accounts, if the caller does not have them already
        late = np.flatnonzero(months_past_due > 0)
    late = np.flatnonzero(late) if late.dtype == bool else np.asarray(late, dtype=np.intp)  # (a mask: its indices)
    # (the delinquent take their bucket's PD; EAD = max(undrawn, 0) x CCF + drawn)
    exposure = np.empty(len(score))
    pd_lgd_exposure(
        pd_lgd,
        np.float32(lgd),
        late,
        p.stage2_pd * lgd,
        months_past_due,
        line,
        balance,
        float(acc.ccf),
        exposure,
    )
    return exposure
