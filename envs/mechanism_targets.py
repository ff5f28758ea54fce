"""Issue 8's calibration targets for the mechanisms line management acts on, measured on a seasoned book.

- Drawdown before default: the loan-equivalent factor LEQ = (EAD - drawn 12 months before the first miss)
  / (line - drawn then) of accounts whose first miss leads to M3+ (DOMAIN: Qi 2009, 0.4-0.6), pooled as a
  ratio of sums (the factor one applies to a book's undrawn line; per-account ratios explode where the
  undrawn line is small).
- Early warning: Gini (2 AUC - 1) with which signals rank M3+ within 12 months among current accounts
  (DOMAIN: behaviour scorecards 0.6-0.8, an assumption), for the lender's behaviour score, for a logistic
  model on the observation vector, and for a logistic model that also sees the hidden state.
- Near-limit share: current accounts with a balance at 80% or more of the line (DOMAIN: FRED utilisation
  percentiles, 90th ~94%).
- Utilisation after a cut: median balance / new line six months after a x0.5 cut, among accounts below
  prime (score < 680) with a balance of at least 10% of the line when cut (DOMAIN: CFPB, above 90%).

Every line is held (except the cut), accounts that end are replaced, as in ``make_portfolio``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from envs.config import Config, resolve_config
from envs.observation import observation_space, observe
from envs.simulator import Simulator

LEQ_LOOKBACK = 12  # [months] (Qi 2009: the horizon of the LEQ)
OUTCOME_MONTHS = 12  # [months] the early-warning outcome: M3+ within this many months
NEAR_LIMIT = 0.8  # utilisation counted as near the limit
PRIME_SCORE = 680.0  # score at and above which an account is prime (as in envs.calibration.line_response)
CUT_MULTIPLIER = 0.5
CUT_FOLLOW_UP = 6  # [months]
_HIDDEN_FEATURES = ("risk", "distress", "unemployed", "miss_probability")


class BookSignals(NamedTuple):
    leq: float  # defaulters' loan-equivalent factor over the 12 months before the first miss
    defaulters: int  # defaults the LEQ pools
    gini_score: float  # behaviour score vs M3+ within 12 months, current accounts
    gini_observed: float  # logistic model on the observation vector (cross-fitted)
    gini_hidden: float  # logistic model on the observation vector and the hidden state (cross-fitted)
    near_limit_share: float  # current accounts with balance >= 80% of the line
    revolver_utilisation_median: float  # of current accounts with a balance


def book_signals(
    config: Config, num_accounts: int = 20_000, months: int = 72, burn_in: int = 48, seed: int = 0
) -> BookSignals:
    """Run a seasoned book with every line held and measure drawdown, early warning and utilisation."""
    sim = Simulator(config, num_accounts)
    n = num_accounts
    idx = np.arange(n)
    sim.seed_accounts(idx, (seed + idx).astype(np.uint64))
    sim.restart_calendar()
    hold = np.ones(n)
    space = observation_space(config)
    history = np.zeros((LEQ_LOOKBACK, n))  # month-end balances of the last 12 months, ring buffer
    pending = np.full((3, n), np.nan)  # drawn 12 months before the spell's first miss, line then, EAD
    leq_sums = np.zeros(2)  # sum of EAD - drawn, sum of line - drawn
    defaulters = 0
    snapshots: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # features, hidden, episode, bad
    snapshot_months: list[int] = []
    near, current_total, util_balances = 0, 0, []
    for month in range(burn_in + months):
        before_mpd = sim.state.months_past_due.copy()
        balance_year_ago = history[month % LEQ_LOOKBACK].copy()
        line_before = sim.state.line.copy()
        result = sim.step(hold)
        s = sim.state
        mpd = s.months_past_due
        # A spell's first miss: remember the balance and line 12 months earlier and the balance now.
        first_miss = np.flatnonzero((before_mpd == 0) & (mpd == 1) & (s.months_on_book > LEQ_LOOKBACK))
        pending[:, first_miss] = balance_year_ago[first_miss], line_before[first_miss], s.balance[first_miss]
        reached_m3 = np.flatnonzero((before_mpd == 2) & (mpd == 3) & ~np.isnan(pending[0]))
        drawn, line, ead = pending[:, reached_m3]
        if month >= burn_in:
            leq_sums += (ead - drawn).sum(), (line - drawn).clip(0).sum()
            defaulters += reached_m3.size
            for start, (_, _, episode, bad) in zip(snapshot_months, snapshots, strict=True):
                if month - start <= OUTCOME_MONTHS:
                    bad[(mpd >= 3) & (s.episode == episode)] = True
            open_current = ~result.terminated & (mpd == 0)
            util = s.balance / s.line
            near += int((open_current & (util >= NEAR_LIMIT)).sum())
            current_total += int(open_current.sum())
            util_balances.append(util[open_current & (s.balance > 0)])
            if (month - burn_in) % 3 == 0 and month + OUTCOME_MONTHS < burn_in + months:
                snapshots.append(_snapshot(sim, space, open_current))
                snapshot_months.append(month)
        history[month % LEQ_LOOKBACK] = s.balance
        cured_or_out = np.flatnonzero(mpd == 0)
        pending[:, cured_or_out[~np.isnan(pending[0, cured_or_out]) & (before_mpd[cured_or_out] > 0)]] = np.nan
        done = np.flatnonzero(result.terminated | result.truncated)
        if done.size:
            sim.renew(done)
            history[:, done] = 0.0
            pending[:, done] = np.nan
    gini_score, gini_observed, gini_hidden = _ginis(snapshots)
    return BookSignals(
        leq=float(leq_sums[0] / leq_sums[1]) if leq_sums[1] > 0 else float("nan"),
        defaulters=defaulters,
        gini_score=gini_score,
        gini_observed=gini_observed,
        gini_hidden=gini_hidden,
        near_limit_share=near / max(current_total, 1),
        revolver_utilisation_median=float(np.median(np.concatenate(util_balances))),
    )


def _snapshot(sim: Simulator, space, current: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observations and hidden state of today's current accounts; their outcome flags start False."""
    at = np.flatnonzero(current)
    obs = observe(sim.state, sim.stress, space, at).T.astype(np.float64)
    hidden = sim.hidden_state(at)
    hidden_columns = np.column_stack([np.asarray(hidden[k], dtype=np.float64) for k in _HIDDEN_FEATURES])
    hidden_columns[:, -1] = np.log(np.clip(hidden_columns[:, -1], 1e-9, 1.0))  # log miss probability
    episode = np.full(len(sim.state), -1, dtype=np.int64)
    episode[at] = sim.state.episode[at]
    return obs, hidden_columns, episode, np.zeros(len(sim.state), dtype=bool)


def _ginis(snapshots: list) -> tuple[float, float, float]:
    """Gini of the score, of a model on observations and of one that adds the hidden state (2-fold
    cross-fitted, folds by account so one account's snapshots stay on one side)."""
    obs = np.concatenate([o for o, _, _, _ in snapshots])
    hidden = np.concatenate([h for _, h, _, _ in snapshots])
    bad = np.concatenate([b[e >= 0] for _, _, e, b in snapshots])
    account = np.concatenate([np.flatnonzero(e >= 0) for _, _, e, _ in snapshots])
    if bad.sum() < 10 or bad.all():
        return float("nan"), float("nan"), float("nan")
    score_column = 9  # envs.observation: behaviour_score
    gini_score = 2 * roc_auc_score(bad, -obs[:, score_column]) - 1
    fold = account % 2 == 0
    return (
        float(gini_score),
        _cross_fitted_gini(obs, bad, fold),
        _cross_fitted_gini(np.hstack([obs, hidden]), bad, fold),
    )


def _cross_fitted_gini(x: np.ndarray, y: np.ndarray, fold: np.ndarray) -> float:
    predicted = np.empty(len(y))
    for train in (fold, ~fold):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
        model.fit(x[train], y[train])
        predicted[~train] = model.predict_proba(x[~train])[:, 1]
    return float(2 * roc_auc_score(y, predicted) - 1)


def utilisation_after_cut(config: Config, num_accounts: int = 20_000, cut_month: int = 24, seed: int = 0) -> float:
    """Median balance / new line ``CUT_FOLLOW_UP`` months after every line is cut x0.5 in ``cut_month``,
    among accounts below prime at the cut with a balance of at least 10% of the old line, still on the book."""
    sim = Simulator(resolve_config(config), num_accounts)
    idx = np.arange(num_accounts)
    sim.seed_accounts(idx, (seed + idx).astype(np.uint64))
    sim.restart_calendar()
    chosen = np.zeros(num_accounts, dtype=bool)
    for month in range(cut_month + CUT_FOLLOW_UP + 1):
        s = sim.state
        if month == cut_month:
            chosen = (s.months_past_due == 0) & (s.score < PRIME_SCORE) & (s.balance >= 0.1 * s.line)
            chosen &= s.months_on_book > 0
            episode = s.episode.copy()
        cut = month == cut_month
        result = sim.step(np.where(chosen, CUT_MULTIPLIER, 1.0) if cut else np.ones(num_accounts))
        sim.renew(np.flatnonzero(result.terminated | result.truncated))
    s = sim.state
    still = chosen & (s.episode == episode)
    return float(np.median(s.balance[still] / s.line[still])) if still.any() else float("nan")
