"""What the lender can see of each account: the observation vector and its bounds.

Hidden traits (latent risk, income, need, revolver or transactor, employment) never appear here.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from gymnasium import spaces

from envs.config import AGE_BANDS, CITY_TIERS, REPAYMENT_MODES, Config
from envs.population import SCORE_RANGE
from envs.state import PortfolioState

MAX_UTILISATION = 10.0  # utilisation is clipped here (a cut can leave a balance far above the line)
MAX_MONTHS = 600  # months-type entries are clipped here


class Entry(NamedTuple):
    name: str
    unit: str
    low: float
    high: float  # a value of None-like inf is never used: every entry is bounded
    meaning: str


def observation_entries(config: Config) -> tuple[Entry, ...]:
    """The observation layout, one row per index; the env docstrings show the same table."""
    max_line = config.product.max_line
    # A balance can exceed the line by capitalised penalty interest over six overdue months.
    max_balance = 2.0 * max_line
    return (
        Entry("line", "CNY", 0.0, max_line, "current credit line"),
        Entry("origination_line", "CNY", 0.0, max_line, "line granted at origination"),
        Entry("balance", "CNY", 0.0, max_balance, "outstanding balance at month end"),
        Entry("utilisation", "ratio", 0.0, MAX_UTILISATION, "balance / line (clipped at 10)"),
        Entry("months_past_due", "months", 0.0, 6.0, "0 current, k in bucket Mk, 6 charged off"),
        Entry("months_on_book", "months", 0.0, MAX_MONTHS, "months since origination"),
        Entry("payment_ratio_1", "ratio", 0.0, 1.0, "share of last month's statement paid"),
        Entry("payment_ratio_2", "ratio", 0.0, 1.0, "same, two months ago"),
        Entry("payment_ratio_3", "ratio", 0.0, 1.0, "same, three months ago"),
        Entry("behaviour_score", "points", SCORE_RANGE[0], SCORE_RANGE[1], "lender's score, higher is safer"),
        Entry("apr", "per year", 0.0, 0.36, "contract interest rate"),
        Entry("age_band", "index", 0.0, len(AGE_BANDS) - 1, f"{', '.join(AGE_BANDS)}"),
        Entry("city_tier", "index", 0.0, len(CITY_TIERS) - 1, f"{', '.join(CITY_TIERS)}"),
        Entry("thin_file", "flag", 0.0, 1.0, "1 if the applicant had a thin data file"),
        Entry("repayment_mode", "index", 0.0, len(REPAYMENT_MODES) - 1, f"{', '.join(REPAYMENT_MODES)}"),
        Entry("months_since_line_change", "months", 0.0, MAX_MONTHS, "months since the line last changed"),
        Entry("macro_stress", "flag", 0.0, 1.0, "1 in the stress regime (public information)"),
    )


def observation_space(config: Config) -> spaces.Box:
    entries = observation_entries(config)
    low = np.array([e.low for e in entries], dtype=np.float32)
    high = np.array([e.high for e in entries], dtype=np.float32)
    return spaces.Box(low=low, high=high, dtype=np.float32)


def observe(state: PortfolioState, stress: bool, space: spaces.Box, idx: np.ndarray | None = None) -> np.ndarray:
    """Observations of every account (or those at ``idx``), feature-major: shape ``(17, accounts)``, float32.

    Column j is account j's observation, inside ``space``; ``.T`` gives the ``(accounts, 17)`` batch.
    Feature-major because filling contiguous rows is several times faster than filling strided columns
    at 100k accounts.
    """
    s = state
    take = (lambda a: a) if idx is None else (lambda a: a[..., idx])  # noqa: E731
    n = len(s) if idx is None else len(idx)
    rows = np.empty((space.shape[0], n), dtype=np.float32)
    rows[0] = take(s.line)
    rows[1] = take(s.origination_line)
    balance = take(s.balance)
    rows[2] = balance
    np.divide(balance, take(s.line), out=rows[3], casting="unsafe")
    rows[4] = take(s.months_past_due)
    rows[5] = take(s.months_on_book)
    for lag, ratios in enumerate(s.payment_ratios):  # row by row: a 2-D gather is slower
        rows[6 + lag] = take(ratios)
    rows[9] = take(s.score)
    rows[10] = take(s.apr)
    rows[11] = take(s.age_band)
    rows[12] = take(s.city_tier)
    rows[13] = take(s.thin_file)
    rows[14] = take(s.repayment_mode)
    rows[15] = take(s.months_since_line_change)
    rows[16] = stress
    # Only these entries can leave their bounds (a cut can leave the balance far above the line; months
    # grow without limit); clipping them in float32 keeps every entry inside the space, as checkers require.
    for i in _UNBOUNDED_ROWS:
        np.clip(rows[i], space.low[i], space.high[i], out=rows[i])
    return rows


_UNBOUNDED_ROWS = (2, 3, 5, 15)  # balance, utilisation, months_on_book, months_since_line_change
