"""The risk policy's per-account memory: last month's balance and line, kept in ``predict``'s SB3 ``state``.

A lender sees each account month after month; the observation (``envs.observation``) is one month. The
memory holds what the policy needs from the month before, per account, as a float64 array of shape
``(accounts, 2)`` (columns :data:`BALANCE`, :data:`LINE`): JSON-free (it is not saved with the policy: it is
the state of a run, rebuilt from the first month) and threaded as SB3's recurrent policies thread theirs:
``predict`` returns it and takes it back next month, ``episode_start`` marking the accounts new since.

What it measures:

- the *drawdown*: the balance's change since last month as a share of the line (the distressed draw toward
  the line; an attribute of the scorecards, ``agents.risk_scorecard.features``);
- the *use of a raise*: the balance's change since last month per CNY of line added since last month. A
  borrower who takes up all of a raise within a month is still short of credit (the balance moves half of
  the way to its target a month, envs.dynamics step 6), so the raise was needed: the policy raises again.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from agents.policies import obs_index

BALANCE, LINE = 0, 1  # columns of the state [CNY]


class Memory(NamedTuple):
    """Each account's balance and line at the previous ``predict`` [CNY] (its own current ones if none)."""

    balance: np.ndarray
    line: np.ndarray


def remember(obs: np.ndarray) -> np.ndarray:
    """The state to hand back to the next ``predict``: this month's balance and line, ``(accounts, 2)``."""
    col = obs_index()
    return np.stack([obs[:, col["balance"]], obs[:, col["line"]]], axis=1).astype(np.float64)


def recall(obs: np.ndarray, state: Any, episode_start: np.ndarray | None) -> Memory:
    """Last month's balance and line of the accounts of ``obs`` (``(accounts, 17)``) from ``state``.

    An account with no memory (no state, a state of another book, or ``episode_start`` True: new since)
    gets its own current values: no drawdown, no raise. A 1-D state of balances (the memory before the
    line was kept) gives the balances and the current lines.
    """
    now = remember(obs)
    before = now
    if state is not None:
        state = np.asarray(state, dtype=np.float64)
        if state.shape == now.shape:
            before = state
        elif state.shape == now[:, BALANCE].shape:
            before = np.stack([state, now[:, LINE]], axis=1)
    if before is not now and episode_start is not None:
        before = np.where(np.asarray(episode_start, bool)[:, None], now, before)
    return Memory(before[:, BALANCE], before[:, LINE])


def raise_use(obs: np.ndarray, memory: Memory) -> np.ndarray:
    """Per account: the balance's change since last month per CNY of line added since last month; NaN
    where the line did not rise (no raise to measure)."""
    col = obs_index()
    balance, line = obs[:, col["balance"]].astype(np.float64), obs[:, col["line"]].astype(np.float64)
    added = line - memory.line
    out = np.full(len(obs), np.nan)
    raised = added > 0
    out[raised] = (balance[raised] - memory.balance[raised]) / added[raised]
    return out
