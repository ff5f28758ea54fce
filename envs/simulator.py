"""The portfolio simulator: state, macro regime and calendar, with no Gymnasium in sight.

Both environments are thin faces of this class: ``CreditLine-v0`` drives one account, ``make_portfolio``
drives many. Accounts that end (charge-off, closure, horizon) are replaced by the caller through
:meth:`Simulator.renew`, so that a replacement is the same new account whichever face asked for it.
"""

from __future__ import annotations

import numpy as np

from envs.config import Config
from envs.dynamics import MonthResult, miss_probability, step
from envs.params import SimParams
from envs.population import hidden_traits, originate
from envs.random_stream import macro_uniform
from envs.state import PortfolioState


class Simulator:
    """A batch of accounts sharing one preset and one macro path.

    Args:
        config: a validated preset.
        num_accounts: batch size.
    """

    def __init__(self, config: Config, num_accounts: int):
        if num_accounts < 1:
            raise ValueError(f"num_accounts must be at least 1, got {num_accounts}")
        self.params = SimParams.from_config(config)
        self.config = config
        self.state = PortfolioState.empty(num_accounts)
        self.calendar_month = 0
        self.stress = False
        self._originated: list[np.ndarray] = []  # indices originated since the last step (first month next)

    @property
    def num_accounts(self) -> int:
        return len(self.state)

    def seed_accounts(self, idx: np.ndarray, seeds: np.ndarray) -> None:
        """Give the accounts at ``idx`` new seeds and originate their first life."""
        self.state.seed[idx] = np.asarray(seeds, dtype=np.uint64)
        self.state.episode[idx] = 0
        originate(self.state, idx, self.params)
        self._originated.append(_indices(idx))

    def renew(self, idx: np.ndarray) -> None:
        """Replace the accounts at ``idx`` by their next life (a newly acquired account)."""
        self.state.episode[idx] += 1
        originate(self.state, idx, self.params)
        self._originated.append(_indices(idx))

    def start_run_off(self, idx: np.ndarray) -> None:
        """Put the accounts at ``idx`` into run-off (used by the evaluator after its window).

        They enter the state of a borrower who has decided to close: no new drawing, the balance repaid
        under the product's schedule, still able to miss, roll and be charged off, off the book once repaid.
        Nothing else changes; the caller keeps stepping them with their lines held (multiplier 1).
        """
        self.state.closing[idx] = True

    def hidden_traits(self, idx: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Latent risk, income, need, revolver, target utilisation and constraint of the accounts at ``idx``."""
        return hidden_traits(self.state, self.params, idx)

    def hidden_state(self, idx: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Everything the lender does not see, for the accounts at ``idx`` (default all), shape ``(n,)`` each:
        the hidden traits (:meth:`hidden_traits`), ``unemployed`` (bool), ``distress`` (float, 0 none .. 1
        full), ``distress_onset`` (monthly probability of a shock other than job loss) and
        ``miss_probability``: the probability that the account misses its next payment at its current
        balance if the line is held, as the monthly step computes it from the state as it stands (ignoring
        the month's draws, including the job and distress changes they may bring; for a delinquent account,
        the probability that it does not cure). Copies: changing them changes nothing.
        """
        s = self.state
        take = (lambda a: a.copy()) if idx is None else (lambda a: a[idx])  # noqa: E731
        out = self.hidden_traits(idx)
        out["unemployed"] = take(s.unemployed)
        out["distress"] = take(s.distress).astype(np.float64)
        out["distress_onset"] = take(s.distress_onset).astype(np.float64)
        out["miss_probability"] = take(miss_probability(s, self.params, self.stress))
        return out

    def restart_calendar(self) -> None:
        """Back to calendar month 0 in the normal regime (done when an env is reset with a seed)."""
        self.calendar_month = 0
        self.stress = self._regime(0, False)

    def step(self, line_multiplier: np.ndarray) -> MonthResult:
        result = step(self.state, line_multiplier, self.params, self.stress, self.new_accounts())
        self._originated = []
        self.calendar_month += 1
        self.stress = self._regime(self.calendar_month, self.stress)
        return result

    def new_accounts(self) -> np.ndarray:
        """Indices of the accounts originated since the last step (those in their first month; an account
        renewed twice appears twice, which the monthly step's index assignments do not mind)."""
        if len(self._originated) == 1:
            return self._originated[0]
        if not self._originated:
            return np.zeros(0, dtype=np.intp)
        return np.concatenate(self._originated)

    def _regime(self, month: int, previous: bool) -> bool:
        """The macro regime of a calendar month: a two-state Markov chain keyed on ``macro.seed``."""
        mac = self.config.macro
        if mac.forced_stress_start is not None and (
            mac.forced_stress_start <= month < mac.forced_stress_start + mac.forced_stress_months
        ):
            return True
        if month == 0:
            return False
        u = macro_uniform(mac.seed, month)
        return u >= mac.exit_stress if previous else u < mac.enter_stress


def _indices(idx: np.ndarray) -> np.ndarray:
    """``idx`` (indices, or a boolean mask over the accounts) as an array of indices of its own."""
    idx = np.atleast_1d(np.asarray(idx))
    return np.flatnonzero(idx) if idx.dtype == bool else idx.copy()
