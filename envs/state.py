"""The portfolio's state: one numpy array per account attribute, batch-first.

Hidden state (employment, a decision to close, per-account constants that encode the hidden traits) and
the book (what the lender sees) live side by side here; only ``envs.observation`` decides what an agent
is shown. The traits drawn at acquisition are not stored: ``envs.population.hidden_traits`` recomputes
them from the keys. Money is float64; the inputs of the monthly hazards (logits, rates, the score and
payment history) are float32, which halves the memory the hot path moves and is far finer than anything
the model resolves (the provision's PD, from the float32 score, is good to about 1e-7 relative).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

PAYMENT_LAGS = 3  # months of payment ratios the lender keeps


@dataclass(slots=True)
class PortfolioState:
    # identity of each account's random stream
    seed: np.ndarray  # uint64, the account's seed
    episode: np.ndarray  # int64, lives this slot has had since seeding
    key: np.ndarray  # uint64, hash of (seed, episode)
    stream: np.ndarray  # uint64, where this month's draws start in the account's stream (random_stream)
    # hidden state (what the lender never sees); the traits drawn at acquisition (HIDDEN_TRAITS: latent risk,
    # income, need, revolver, target utilisation, constraint) are not stored: hidden_traits recomputes them
    adapted_line: np.ndarray  # [CNY] the line the borrower has adjusted to, fast part (lags raises)
    slow_adapted_line: np.ndarray  # [CNY] the same, slow part (Aydin 2022: the response grows for years)
    distress: np.ndarray  # financial distress, 0 none .. 1 full (job loss, income shock, over-borrowing)
    distress_onset: np.ndarray  # monthly probability of a distress shock other than job loss
    shock_rate: np.ndarray  # job_loss_rate + distress_onset: probability of a shock in the normal regime
    unemployed: np.ndarray  # bool
    closing: np.ndarray  # bool, the borrower has decided to close: no new drawing, the balance runs off
    job_loss_rate: np.ndarray  # monthly, normal regime
    # per-account constants of the monthly hazards, computed once at origination (envs.population)
    miss_logit_base: np.ndarray  # intercept + latent risk part of the miss logit
    burden_per_cny: np.ndarray  # miss-logit change per CNY due (burden effect / income), for balloon months
    miss_per_cny: np.ndarray  # miss-logit change per CNY of balance in a month with no balloon due
    target_balance: np.ndarray  # [CNY] balance wanted at the original line (target utilisation x line)
    line_response: np.ndarray  # extra balance per CNY of line above the original (max response x constraint)
    attrition_logit_base: np.ndarray  # base closure logit + the price effect
    log_need: np.ndarray  # log of credit need [log CNY]
    need_headroom: np.ndarray  # [CNY] need above the balance the borrower wants at the original line
    # segment and contract (observable)
    age_band: np.ndarray  # int8 index into AGE_BANDS
    city_tier: np.ndarray  # int8 index into CITY_TIERS
    thin_file: np.ndarray  # bool
    repayment_mode: np.ndarray  # int8 index into REPAYMENT_MODES
    scheduled_share: np.ndarray  # principal due per month as a share of balance, by the repayment mode
    apr: np.ndarray  # contract rate, per year
    monthly_rate: np.ndarray  # apr / 12
    origination_score: np.ndarray
    origination_line: np.ndarray  # [CNY]
    # the book (observable)
    line: np.ndarray  # [CNY]
    balance: np.ndarray  # [CNY] drawn and unpaid, including capitalised interest
    months_past_due: np.ndarray  # int8, 0..6
    months_on_book: np.ndarray  # int32
    months_since_line_change: np.ndarray  # int32
    months_since_cut: np.ndarray  # int32, large when never cut
    months_to_balloon: np.ndarray  # int32, interest-first: months until principal is due; others: large
    missed_payments: np.ndarray  # decayed count of missed payments
    score: np.ndarray  # behaviour score, 300..900
    utilisation_average: np.ndarray  # the scorecard's recent average of utilisation (balance / line)
    payment_ratios: np.ndarray  # (PAYMENT_LAGS, n) share of the statement paid, newest first
    provision: np.ndarray  # [CNY] expected-loss allowance held

    @classmethod
    def empty(cls, num_accounts: int) -> PortfolioState:
        n = num_accounts
        floats = lambda: np.zeros(n)  # noqa: E731
        hazard = lambda: np.zeros(n, np.float32)  # noqa: E731
        return cls(
            seed=np.zeros(n, np.uint64),
            episode=np.zeros(n, np.int64),
            key=np.zeros(n, np.uint64),
            stream=np.zeros(n, np.uint64),
            adapted_line=floats(),
            slow_adapted_line=floats(),
            distress=hazard(),
            distress_onset=hazard(),
            shock_rate=hazard(),
            unemployed=np.zeros(n, bool),
            closing=np.zeros(n, bool),
            job_loss_rate=hazard(),
            miss_logit_base=hazard(),
            burden_per_cny=hazard(),
            miss_per_cny=hazard(),
            target_balance=floats(),
            line_response=floats(),
            attrition_logit_base=hazard(),
            log_need=hazard(),
            need_headroom=floats(),
            age_band=np.zeros(n, np.int8),
            city_tier=np.zeros(n, np.int8),
            thin_file=np.zeros(n, bool),
            repayment_mode=np.zeros(n, np.int8),
            scheduled_share=floats(),
            apr=floats(),
            monthly_rate=floats(),
            origination_score=hazard(),
            origination_line=floats(),
            line=floats(),
            balance=floats(),
            months_past_due=np.zeros(n, np.int8),
            months_on_book=np.zeros(n, np.int32),
            months_since_line_change=np.zeros(n, np.int32),
            months_since_cut=np.zeros(n, np.int32),
            months_to_balloon=np.zeros(n, np.int32),
            missed_payments=hazard(),
            score=hazard(),
            utilisation_average=hazard(),
            payment_ratios=np.ones((PAYMENT_LAGS, n), np.float32),
            provision=floats(),
        )

    def __len__(self) -> int:  # accounts
        return len(self.balance)

    def field_names(self) -> list[str]:
        return [f.name for f in fields(self)]

    def copy(self) -> PortfolioState:
        return PortfolioState(**{name: getattr(self, name).copy() for name in self.field_names()})
