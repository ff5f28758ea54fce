"""What the lender can see of each account: the observation vector and its bounds.

Hidden traits (latent risk, income, need, revolver or transactor, employment) never appear here.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from gymnasium import spaces

from envs.config import AGE_BANDS, CITY_TIERS, REPAYMENT_MODES, Config
from envs.kernels import observe_rows
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
    at 100k accounts. Only balance, utilisation and the month counts can leave their bounds (a cut can
    leave the balance far above the line; months grow without limit): they are clipped in float32, so
    that every entry is inside the space, as checkers require.
    """
    s = state
    n = len(s) if idx is None else len(idx)
    rows = np.empty((space.shape[0], n), dtype=np.float32)
    # one compiled pass (envs.kernels), the same values as filling row by row with numpy
    observe_rows(
        rows,
        _NO_INDEX if idx is None else np.asarray(idx, dtype=np.intp),
        idx is None,
        s.line,
        s.origination_line,
        s.balance,
        s.months_past_due,
        s.months_on_book,
        s.payment_ratios,
        s.score,
        s.apr,
        s.age_band,
        s.city_tier,
        s.thin_file,
        s.repayment_mode,
        s.months_since_line_change,
        np.float32(stress),
        space.low,
        space.high,
    )
    return rows


_NO_INDEX = np.zeros(0, dtype=np.intp)
