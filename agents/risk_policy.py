"""A lender's line policy: risk and need scorecards fitted on history, and line rules driven by them.

What a lender deploys, built from the observations alone (``envs.observation``; no hidden state):

1. **Histories** (:func:`simulate_histories`): portfolios of the *training* seeds run for ``env.horizon``
   months, each account slot under one of four behaviour policies so the data hold cuts, holds and raises:
   slot ``i mod 4`` = 0 holds its line, 1 is best static x0.5, 2 the default "low and grow" rule
   (``RuleParams()``), 3 random line moves (each month, with probability ``random_move_share``, a uniformly
   random line step from a generator seeded by the training seed).
2. **Two scorecards** (:class:`RiskModel`). Every observation entry is binned (quantile bins for the
   continuous ones, one bin per value for the categorical ones, plus the line as a multiple of the
   origination line and the drawdown since last month) and a scikit-learn ``LogisticRegression`` on the
   one-hot bins predicts a realised outcome:

   - *risk* (:func:`fit_risk_model`, every row): "misses a payment (or, if delinquent, rolls further) within
     the next ``horizon`` months"; rows whose window runs past the history's end are left out;
   - *need* (:func:`fit_uptake_model`, the rows with a raise): "two months after the raise the balance has
     grown by at least ``uptake_share`` of the added line", the observable side of the hidden credit need
     (a raise beyond the need adds exposure and no balance).

   The last training seed is held out: the ROC AUC of each model there is its check. A scorecard is bin
   edges and coefficients, saved as JSON (no pickle: a run folder from someone else is safe to load).
3. **The policy** (:class:`RiskPolicy`), the oracle's shape with predictions for the hidden hazard and need:
   a line never changed is first set to its risk tier's starting line (``start_safe`` for an application
   whose predicted risk is at most ``start_safe_risk`` and predicted use at least ``start_uptake``,
   ``start_line`` for the rest); cut when the predicted risk is at least ``cut_risk`` or the balance jumped
   by ``cut_drawdown`` of the line in a month (down to ``line_floor x`` the origination line; the product's
   ``min_line`` still applies), or jumped by ``jump_drawdown`` of the line while the line had not moved for
   ``jump_quiet`` months (down to ``jump_floor``: a settled balance that jumps is the distressed draw toward
   the line, while a balance growing after a raise is the borrower using it); raise a current account whose
   risk is at most ``raise_risk``, whose utilisation is at least ``min_utilisation`` and whose raise the need
   model expects used (``min_uptake``), within ``line_cap``, every ``raise_wait`` months, or a month after the
   last change by ``fast_multiplier`` when the expected use is at least ``fast_uptake``; a raise the borrower
   took up in full within the month (at least ``used_raise_share`` of the added line, measured, not
   predicted) is followed by another of ``used_raise_multiplier`` at once, whatever the need model says;
   otherwise hold. (An option off by default, ``tight_utilisation``, cuts held lines down to the balance; it
   exploits an assumption of the simulator, see :class:`RiskParams`.) The drawdown, the jump and the use of a
   raise need last month's balance and line: ``predict`` keeps them in SB3's ``state``
   (``agents.risk_memory``). The thresholds are tuned on the *tuning* seeds under the cap with the rule's
   budget by a local search around the best so far
   (:func:`tune_risk_policy`, choosing with ``agents.tuning.select_under_cap``).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

import envs
from agents.evaluation import check_disjoint, portfolio_seed
from agents.policies import BestStatic, Policy, RuleBased, StaticHold, _Baseline, obs_index
from agents.population import population_summary
from agents.risk_memory import Memory, raise_use, recall, remember
from agents.scorecard import scorecard_logit
from agents.tuning import select_under_cap
from envs.actions import HOLD_ACTION, LIMIT_MULTIPLIERS
from envs.config import Config, ConfigError, read_yaml, resolve_config

RISK_POLICY_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "agents" / "risk_policy.yaml"
# Scorecard attributes: quantile-binned entries, and entries with a few values (one bin each).
CONTINUOUS = (
    "utilisation",
    "balance",
    "line_ratio",  # line / origination line: where the line stands after the policy's moves
    "origination_line",
    "behaviour_score",
    "payment_ratio_1",
    "payment_ratio_2",
    "payment_ratio_3",
    "months_on_book",
    "months_since_line_change",
    "apr",
    "drawdown",  # (balance - last month's balance) / line: the distressed draw toward the line month by month
)
CATEGORICAL = ("months_past_due", "age_band", "city_tier", "thin_file", "repayment_mode", "macro_stress")


class RiskPolicyConfig(BaseModel):
    """configs/agents/risk_policy.yaml (see its comments)."""

    model_config = ConfigDict(extra="forbid")
    accounts: int = Field(2000, ge=100)
    training_seeds: int = Field(8, ge=2)  # one is held out for the model's check
    horizon: int = Field(3, ge=1, le=12)  # [months]
    bins: int = Field(10, ge=2, le=50)
    regularisation: float = Field(1.0, gt=0.0)
    random_move_share: float = Field(0.15, ge=0.0, le=1.0)
    uptake_share: float = Field(0.3, gt=0.0, le=1.0)


def load_risk_policy_config(
    preset: str | None = None, overrides: Mapping[str, Any] | None = None, path: str | Path | None = None
) -> RiskPolicyConfig:
    """Read the YAML, merge its ``presets.<preset>`` section and ``overrides`` (field names), validate."""
    path = Path(path) if path is not None else RISK_POLICY_CONFIG
    data = read_yaml(path)
    presets = data.pop("presets", None) or {}
    data.update(presets.get(preset) or {})
    data.update(overrides or {})
    try:
        return RiskPolicyConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])} = {e.get('input')!r}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("\n".join([f"invalid risk-policy config ({path.name}):", *lines])) from None


# -- histories --------------------------------------------------------------------------------------------
class _RandomMoves(_Baseline):
    """Hold, except a uniformly random line step with probability ``share`` a month (seeded generator)."""

    def __init__(self, share: float, seed: int):
        super().__init__(False)
        self.share, self._rng = share, np.random.default_rng(seed)

    def _actions(self, obs: np.ndarray) -> np.ndarray:
        move = self._rng.random(len(obs)) < self.share
        return np.where(move, self._rng.integers(0, len(LIMIT_MULTIPLIERS), len(obs)), HOLD_ACTION)


class Histories(NamedTuple):
    """Observations with their realised labels, and the training seed each row came from."""

    obs: np.ndarray  # (rows, 17) float32
    label: np.ndarray  # (rows,) bool: a miss within the next `horizon` months
    seed: np.ndarray  # (rows,) int
    previous_balance: np.ndarray  # (rows,) [CNY] the account's balance a month before (its own if new)
    uptake: np.ndarray  # (rows,) after a raise this month: 1 if the borrower used it, 0 if not; NaN no raise

    def subset(self, rows: np.ndarray) -> Histories:
        return Histories(*(a[rows] for a in self))


def simulate_histories(config: Config, seeds: Sequence[int], settings: RiskPolicyConfig) -> Histories:
    """``env.horizon`` months of every training seed under the behaviour mix of the module docstring."""
    months, k, parts = config.env.horizon, settings.horizon, []
    for seed in seeds:
        n = settings.accounts
        venv = envs.make_portfolio(config, n, seed=portfolio_seed(seed), **{"macro.seed": int(seed)})
        behaviours: list[Policy] = [
            StaticHold(),
            BestStatic(0.5),
            RuleBased(),
            _RandomMoves(settings.random_move_share, int(seed)),
        ]
        slots = [np.arange(n)[np.arange(n) % len(behaviours) == b] for b in range(len(behaviours))]
        obs = venv.reset()
        seen, miss, done = np.empty((months, n, obs.shape[1]), np.float32), np.empty((months, n), bool), []
        mpd_col = obs_index()["months_past_due"]
        raised = np.empty((months, n), bool)
        for t in range(months):
            actions = np.full(n, HOLD_ACTION, dtype=np.int64)
            for policy, rows in zip(behaviours, slots, strict=True):
                actions[rows] = policy.predict(obs[rows])[0]
            seen[t], raised[t] = obs, np.asarray(LIMIT_MULTIPLIERS)[actions] > 1.0
            obs, _, dones, _ = venv.step(actions)
            # a miss: the month ended further past due than it started (a charge-off is 6 months past due)
            miss[t] = venv.last_info["months_past_due"] > seen[t][:, mpd_col]
            done.append(dones)
        done_ = np.array(done)
        balance = seen[:, :, obs_index()["balance"]]
        previous = balance.copy()  # an account's first observed month has no drawdown
        previous[1:] = np.where(done_[:-1], balance[1:], balance[:-1])
        label, known = _labels(miss, done_, k)
        uptake = _uptake(seen, raised, done_, settings.uptake_share)
        parts.append((seen[known], label[known], np.full(int(known.sum()), seed), previous[known], uptake[known]))
    return Histories(*(np.concatenate(p) for p in zip(*parts, strict=True)))


def _uptake(seen: np.ndarray, raised: np.ndarray, done: np.ndarray, share: float) -> np.ndarray:
    """(months, slots) for a raise in month t: 1.0 if two months later the balance has grown by at least
    ``share`` of the line added (the borrower needed it), else 0.0; NaN without a raise or an outcome."""
    col = obs_index()
    line, balance = seen[:, :, col["line"]].astype(np.float64), seen[:, :, col["balance"]].astype(np.float64)
    out = np.full(raised.shape, np.nan)
    added = line[1:-1] - line[:-2]  # [CNY] the raise as the simulator applied it (rounded, within max_line)
    grown = balance[2:] - balance[:-2]
    ok = raised[:-2] & ~done[:-2] & ~done[1:-1] & (added > 0)
    out[:-2] = np.where(ok, (grown >= share * np.maximum(added, 0.0)).astype(np.float64), np.nan)
    return out


def _labels(miss: np.ndarray, done: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(months, slots) label "a miss in months t..t+k-1 before the account ended" and whether it is known."""
    months = len(miss)
    label, known = np.zeros_like(miss), np.zeros_like(miss)
    for t in range(months):
        alive, hit = np.ones(miss.shape[1], bool), np.zeros(miss.shape[1], bool)
        for j in range(t, min(t + k, months)):
            hit |= alive & miss[j]
            alive &= ~done[j]
        label[t] = hit
        known[t] = hit | ~alive | (t + k <= months)  # else the window runs past the history's end
    return label, known


# -- the risk model ---------------------------------------------------------------------------------------
def features(obs: np.ndarray, previous_balance: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The scorecard's attributes of an ``(n, 17)`` observation batch: the entries, the line ratio and the
    drawdown since the previous month's observation of the same account (0 without one)."""
    col = obs_index()
    out = {name: obs[:, col[name]].astype(np.float64) for name in CONTINUOUS + CATEGORICAL if name in col}
    line = np.maximum(obs[:, col["line"]].astype(np.float64), 1.0)
    out["line_ratio"] = line / np.maximum(obs[:, col["origination_line"]].astype(np.float64), 1.0)
    out["drawdown"] = drawdown(obs, previous_balance)
    return out


def drawdown(obs: np.ndarray, previous_balance: np.ndarray | None = None) -> np.ndarray:
    """(balance - the previous month's balance) / line of each row (0 without a previous balance): the
    attribute of :func:`features` alone, for the rules (the policy needs it every month, not the rest)."""
    col = obs_index()
    balance = obs[:, col["balance"]].astype(np.float64)
    line = np.maximum(obs[:, col["line"]].astype(np.float64), 1.0)
    before = balance if previous_balance is None else np.asarray(previous_balance, dtype=np.float64)
    return (balance - before) / line


@dataclass(frozen=True)
class RiskModel:
    """A scorecard: per attribute, bin edges and one coefficient a bin; risk = logistic(intercept + sum)."""

    edges: dict[str, list[float]]
    coef: dict[str, list[float]]  # len(edges[name]) + 1 coefficients each
    intercept: float
    horizon: int  # [months] of the label the model predicts

    def _bins(self, obs: np.ndarray, previous_balance: np.ndarray | None) -> dict[str, np.ndarray]:
        values = features(obs, previous_balance)
        return {name: np.searchsorted(np.asarray(e), values[name], side="right") for name, e in self.edges.items()}

    def predict_risk(self, obs: np.ndarray, previous_balance: np.ndarray | None = None) -> np.ndarray:
        """Probability of a miss within ``horizon`` months for each row of ``obs`` (n, 17), given each
        account's balance a month before [CNY] (None: unknown, no drawdown)."""
        fast = scorecard_logit(self.edges, self.coef, self.intercept, obs, previous_balance)
        if fast is not None:  # agents.scorecard: the same sums in one compiled pass (speed only, same bits)
            return 1.0 / (1.0 + np.exp(-fast))
        logit = np.full(len(obs), self.intercept)
        for name, index in self._bins(obs, previous_balance).items():
            logit += np.asarray(self.coef[name])[index]
        return 1.0 / (1.0 + np.exp(-logit))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RiskModel:
        edges, coef = dict(data["edges"]), dict(data["coef"])
        expected = set(CONTINUOUS + CATEGORICAL)
        if set(edges) != expected or set(coef) != expected:
            raise ValueError(f"a risk model needs edges and coefficients for exactly {sorted(expected)}")
        for name in expected:
            if len(coef[name]) != len(edges[name]) + 1:
                raise ValueError(
                    f"risk model attribute {name}: {len(edges[name])} edges need {len(edges[name]) + 1} coefficients"
                )
        return cls(edges, coef, float(data["intercept"]), int(data["horizon"]))


def _design(model_edges: Mapping[str, list[float]], obs: np.ndarray, previous: np.ndarray) -> sparse.csr_matrix:
    """One-hot bins of every attribute, side by side."""
    values, blocks = features(obs, previous), []
    for name, e in model_edges.items():
        index = np.searchsorted(np.asarray(e), values[name], side="right")
        blocks.append(
            sparse.csr_matrix((np.ones(len(obs)), (np.arange(len(obs)), index)), shape=(len(obs), len(e) + 1))
        )
    return sparse.hstack(blocks, format="csr")


def fit_risk_model(data: Histories, settings: RiskPolicyConfig) -> RiskModel:
    """The risk scorecard: a miss within ``horizon`` months, fitted on every row of the histories."""
    return _fit_scorecard(data.obs, data.previous_balance, data.label, settings, settings.horizon)


def fit_uptake_model(data: Histories, settings: RiskPolicyConfig) -> RiskModel:
    """The need scorecard: whether a raise is used (two months later), fitted on the rows with a raise."""
    rows = ~np.isnan(data.uptake)
    return _fit_scorecard(data.obs[rows], data.previous_balance[rows], data.uptake[rows] > 0.5, settings, 2)


def _fit_scorecard(
    obs: np.ndarray, previous: np.ndarray, label: np.ndarray, settings: RiskPolicyConfig, horizon: int
) -> RiskModel:
    """A scorecard fitted on ``obs`` -> ``label`` (bins from the same rows)."""
    values, edges = features(obs, previous), {}
    quantiles = np.linspace(0.0, 1.0, settings.bins + 1)[1:-1]
    for name in CONTINUOUS:
        edges[name] = np.unique(np.quantile(values[name], quantiles)).tolist()
    for name in CATEGORICAL:  # one bin per observed value (they are small integers)
        edges[name] = (np.unique(values[name])[:-1] + 0.5).tolist()
    edges = {name: edges[name] for name in CONTINUOUS + CATEGORICAL}
    fit = LogisticRegression(C=settings.regularisation, max_iter=2000).fit(_design(edges, obs, previous), label)
    sizes = np.cumsum([0] + [len(e) + 1 for e in edges.values()])
    coef = {name: fit.coef_[0, sizes[i] : sizes[i + 1]].tolist() for i, name in enumerate(edges)}
    return RiskModel(edges, coef, float(fit.intercept_[0]), horizon)


# -- the policy -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RiskParams:
    """Thresholds of the line rules. The defaults (trial 0 of the search) are a start found by exploring on
    wechat's tuning seeds (low at x0.5, then small monthly raises x1.1 of the safe whose raise the need model
    expects used: 463.5 CNY a user there against 431.6 for x1.25 every 3 months), not tuned values; the
    risk tiers and the fast lane are off by default (on wechat's tuning seeds neither helped by hand).

    Args:
        cut_risk: cut when the predicted risk is at least this, in (0, 1].
        cut_multiplier: line step on a cut, one of LIMIT_MULTIPLIERS below 1.
        line_floor: cut no further than this multiple of the origination line, in (0, 1].
        raise_risk: raise only when the predicted risk is at most this, in [0, 1).
        raise_multiplier: line step on a raise, one of LIMIT_MULTIPLIERS above 1.
        min_utilisation: raise only when balance / line is at least this (the visible sign of unmet need).
        line_cap: raise no further than this multiple of the origination line (None: product maximum only).
        start_line: a line never changed since origination is first set to this multiple of the origination
            line (one of LIMIT_MULTIPLIERS up to 1; 1 keeps it): "low", before the model's "grow".
        raise_wait: months since the last line change before a raise [months], at least 1.
        min_uptake: raise only when the need model's probability that the raise is used is at least this.
        cut_drawdown: also cut when the balance grew by at least this share of the line since last month
            (the distressed draw toward the line within a month or two); above 1 never.
        start_safe_risk: risk tiers of the starting line (the application score): a never-changed account
            whose predicted risk is at most this starts at ``start_safe`` instead of ``start_line`` (0: one tier).
        start_uptake: ... and whose predicted use of a raise is at least this (the need model at application).
        start_safe: the low-risk tier's starting line, one of LIMIT_MULTIPLIERS (above 1: raised at month 0).
        fast_uptake: raise again a month after the last change, by ``fast_multiplier``, when the need model's
            probability that the raise is used is at least this (the borrower used the previous one); above
            1 never.
        fast_multiplier: line step of such a raise, one of LIMIT_MULTIPLIERS above 1.
        used_raise_share: raise again at once, by ``used_raise_multiplier``, a current account whose balance
            grew since last month by at least this share of the line added since (the raise was needed:
            measured by the memory, no need model), if its risk is at most ``raise_risk``, within
            ``line_cap``; None never. Default 1.0, found on the tuning seeds of every preset (x1.1 after a
            raise used in full: wechat 464.0 -> 470.6, alipay 595.2 -> 601.1, jd 778.6 -> 785.4, douyin
            542.9 -> 545.7 CNY a user with risk2's chosen thresholds; x1.25 lost on all four).
        used_raise_multiplier: line step of such a raise, one of LIMIT_MULTIPLIERS above 1.
        tight_utilisation: a current account (line changed before) the rules would hold, using less than
            this share of its line, gets the smallest cut (x0.9, x0.75, x0.5) that brings its balance to at
            least this share of the new line; None never. It rests on the simulator's assumption that a
            borrower using at least envs.dynamics.FULL_LINE (90%) of the line never closes it (a cut
            that leaves the balance there costs no attrition) and frees the undrawn line a distressed
            borrower would draw. Default None, and not in the tuner's space: on the tuning seeds it earns
            more than the oracle (jd 791.7 -> 910.6 CNY a user at 0.9; attrition falls from 16.8% to 12.4%
            a year because of the cuts), which says more about that assumption than about line management:
            a cut that makes borrowers stay contradicts the cut's attrition effect it bypasses. Kept as an
            option to show the artefact (README, "Headline"), not as a deployable rule.
        jump_drawdown: also cut (by ``cut_multiplier``) when the balance grew by at least this share of the
            line since last month and the line has not moved for ``jump_quiet`` months; above 1 never.
        jump_quiet: months without a line change before such a jump counts [months], at least 1.
        jump_floor: cut on a jump no further than this multiple of the origination line, in (0, 1].
    """

    cut_risk: float = 0.3
    cut_multiplier: float = 0.5
    line_floor: float = 0.5
    raise_risk: float = 0.2
    raise_multiplier: float = 1.1
    min_utilisation: float = 0.2
    line_cap: float | None = 2.0
    start_line: float = 0.5
    raise_wait: int = 1
    cut_drawdown: float = 2.0
    min_uptake: float = 0.5
    start_safe_risk: float = 0.0
    start_safe: float = 1.0
    start_uptake: float = 0.0
    fast_uptake: float = 2.0
    fast_multiplier: float = 1.5
    used_raise_share: float | None = 1.0
    used_raise_multiplier: float = 1.1
    tight_utilisation: float | None = None
    # The jump cut (defaults found by hand on jd's tuning seeds, 2000 accounts: 818.5 CNY a user against
    # 778.6 without it; 0.1-0.2 of the line, 3 months, floor 0.125 all within 2 CNY of it).
    jump_drawdown: float = 0.15
    jump_quiet: int = 3
    jump_floor: float = 0.125

    def __post_init__(self) -> None:
        numbers = ("cut_risk", "raise_risk", "line_floor", "min_utilisation", "cut_drawdown", "min_uptake")
        for name in (*numbers, "start_safe_risk", "start_uptake", "fast_uptake", "jump_drawdown", "jump_floor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if not 0.0 < self.cut_risk <= 1.0:
            raise ValueError(f"cut_risk must be in (0, 1], got {self.cut_risk!r}")
        if not 0.0 <= self.raise_risk < 1.0:
            raise ValueError(f"raise_risk must be in [0, 1), got {self.raise_risk!r}")
        for name in ("line_floor", "jump_floor"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        if not 0.0 <= self.min_utilisation <= 10.0:
            raise ValueError(f"min_utilisation must be in [0, 10], got {self.min_utilisation!r}")
        cuts, raises = [m for m in LIMIT_MULTIPLIERS if m < 1.0], [m for m in LIMIT_MULTIPLIERS if m > 1.0]
        if self.cut_multiplier not in cuts:
            raise ValueError(f"cut_multiplier must be one of {cuts}, got {self.cut_multiplier!r}")
        for name in ("raise_multiplier", "fast_multiplier", "used_raise_multiplier"):
            if getattr(self, name) not in raises:
                raise ValueError(f"{name} must be one of {raises}, got {getattr(self, name)!r}")
        if self.start_safe not in LIMIT_MULTIPLIERS:
            raise ValueError(f"start_safe must be one of {list(LIMIT_MULTIPLIERS)}, got {self.start_safe!r}")
        if not 0.0 <= self.start_safe_risk <= 1.0:
            raise ValueError(f"start_safe_risk must be in [0, 1], got {self.start_safe_risk!r}")
        used = self.used_raise_share
        number = isinstance(used, (int, float)) and not isinstance(used, bool)
        if used is not None and not (number and 0.0 <= used <= 10.0):
            raise ValueError(f"used_raise_share must be a number in [0, 10] or None, got {used!r}")
        tight = self.tight_utilisation
        number = isinstance(tight, (int, float)) and not isinstance(tight, bool)
        if tight is not None and not (number and 0.0 < tight <= 1.0):
            raise ValueError(f"tight_utilisation must be a number in (0, 1] or None, got {tight!r}")
        if self.line_cap is not None and not (isinstance(self.line_cap, (int, float)) and self.line_cap >= 1.0):
            raise ValueError(f"line_cap must be a number >= 1 or None, got {self.line_cap!r}")
        starts = [m for m in LIMIT_MULTIPLIERS if m <= 1.0]
        if self.start_line not in starts:
            raise ValueError(f"start_line must be one of {starts}, got {self.start_line!r}")
        for name in ("raise_wait", "jump_quiet"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


# A policy saved before the jump cut existed has no jump_* entries: it loads with that rule off, as it ran.
_BEFORE_JUMP_CUT: dict[str, Any] = {"jump_drawdown": 2.0}


class RiskPolicy(_Baseline):
    """Line rules on a fitted risk model's prediction (module docstring); sees the observation only.

    Args:
        model: the fitted risk scorecard (:func:`fit_risk_model`).
        params: a :class:`RiskParams` (defaults if None).
        continuous: return Box actions instead of indices.
        uptake: the fitted need scorecard (:func:`fit_uptake_model`); None: no such condition on a raise.
    """

    def __init__(
        self,
        model: RiskModel,
        params: RiskParams | None = None,
        continuous: bool = False,
        uptake: RiskModel | None = None,
    ):
        super().__init__(continuous)
        for name, m in (("model", model), ("uptake", uptake if uptake is not None else model)):
            if not isinstance(m, RiskModel):
                raise TypeError(f"{name} must be a RiskModel, got {type(m).__name__}")
        self.uptake = uptake
        params = RiskParams() if params is None else params
        if not isinstance(params, RiskParams):
            raise TypeError(f"params must be a RiskParams, got {type(params).__name__}")
        self.model, self.params = model, params
        self._cut = LIMIT_MULTIPLIERS.index(params.cut_multiplier)
        self._raise = LIMIT_MULTIPLIERS.index(params.raise_multiplier)
        self._start = LIMIT_MULTIPLIERS.index(params.start_line)
        self._start_safe = LIMIT_MULTIPLIERS.index(params.start_safe)
        self._fast = LIMIT_MULTIPLIERS.index(params.fast_multiplier)
        self._used = LIMIT_MULTIPLIERS.index(params.used_raise_multiplier)
        self._memory: Memory | None = None

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """As the baselines' ``predict``, with a memory (``agents.risk_memory``): ``state`` is every account's
        balance and line at the last call [CNY] (SB3's recurrent-policy convention: pass back what was
        returned, ``episode_start`` marks the accounts that are new since), for the drawdown and the use of
        a raise; None, or a new account, has neither."""
        obs = np.atleast_2d(np.asarray(observation))
        self._memory = recall(obs, state, episode_start)  # read by _actions below, within this call only
        actions, _ = super().predict(observation, None, episode_start, deterministic)
        return actions, remember(obs)

    def _actions(self, obs: np.ndarray) -> np.ndarray:
        p, col = self.params, obs_index()
        memory = self._memory if self._memory is not None and len(self._memory.balance) == len(obs) else None
        previous = None if memory is None else memory.balance
        risk = self.model.predict_risk(obs, previous)
        line = obs[:, col["line"]].astype(np.float64)
        origination = obs[:, col["origination_line"]].astype(np.float64)
        slack = 1.01  # lines are rounded to whole hundreds of CNY: "at the floor / cap" is never exact
        drawn = drawdown(obs, previous)
        since_change = obs[:, col["months_since_line_change"]]
        cut = (risk >= p.cut_risk) | (drawn >= p.cut_drawdown)
        cut &= line * p.cut_multiplier * slack >= p.line_floor * origination
        jump = (drawn >= p.jump_drawdown) & (since_change >= p.jump_quiet)
        cut |= jump & (line * p.cut_multiplier * slack >= p.jump_floor * origination)
        # The starting line by risk tier: set once, by the first move of a line never changed.
        need = np.ones(len(obs)) if self.uptake is None else self.uptake.predict_risk(obs, previous)
        safe = (risk <= p.start_safe_risk) & (need >= p.start_uptake)
        start = np.where(safe, p.start_safe, p.start_line)
        never_changed = since_change == obs[:, col["months_on_book"]]
        untouched = never_changed & (line > start * origination * slack)
        untouched |= never_changed & (obs[:, col["months_on_book"]] == 0) & (line * slack < start * origination)
        fast = need >= p.fast_uptake  # the borrower uses what it is given: raise again a month on, by more
        step = np.where(fast, p.fast_multiplier, p.raise_multiplier)
        grow = (obs[:, col["months_past_due"]] == 0) & (risk <= p.raise_risk)
        grow &= (since_change >= p.raise_wait) | (fast & (since_change >= 1))
        grow &= obs[:, col["utilisation"]] >= p.min_utilisation
        if self.uptake is not None and p.min_uptake > 0.0:
            grow &= need >= p.min_uptake
        if p.line_cap is not None:
            grow &= line * step <= p.line_cap * origination * slack
        actions = np.where(grow, np.where(fast, self._fast, self._raise), HOLD_ACTION)
        if memory is not None and p.used_raise_share is not None:  # a raise taken up in full: raise again
            used = raise_use(obs, memory) >= p.used_raise_share  # (NaN, no raise last month: False)
            used &= (obs[:, col["months_past_due"]] == 0) & (risk <= p.raise_risk)
            if p.line_cap is not None:
                used &= line * p.used_raise_multiplier <= p.line_cap * origination * slack
            actions = np.where(used, self._used, actions)
        actions = np.where(cut, self._cut, actions)
        actions = np.where(untouched, np.where(safe, self._start_safe, self._start), actions)
        if p.tight_utilisation is not None:
            held = (actions == HOLD_ACTION) & ~never_changed & (obs[:, col["months_past_due"]] == 0)
            actions = np.where(held, _tight_cut(obs[:, col["utilisation"]], p.tight_utilisation), actions)
        return actions

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the model's bins and coefficients and the thresholds (no code, no pickle)."""
        uptake = None if self.uptake is None else self.uptake.to_dict()
        return {"model": self.model.to_dict(), "uptake": uptake, "params": dataclasses.asdict(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], continuous: bool = False) -> RiskPolicy:
        try:
            uptake = data.get("uptake")
            need = None if uptake is None else RiskModel.from_dict(uptake)
            # a policy saved before a rule existed acts as it was tuned: without it
            params = {"used_raise_share": None, "tight_utilisation": None, **_BEFORE_JUMP_CUT, **data["params"]}
            return cls(RiskModel.from_dict(data["model"]), RiskParams(**params), continuous, need)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a saved risk policy: {exc}") from None

    def __repr__(self) -> str:
        return f"RiskPolicy({self.params})"


def _tight_cut(utilisation: np.ndarray, share: float) -> np.ndarray:
    """Per account: the action of the smallest cut that brings ``utilisation`` (balance / line) to at least
    ``share`` of the new line, HOLD_ACTION where none is needed (at or above already) or none reaches it.
    (The smallest: a balance above the new line must be paid down, and earns no more interest.)"""
    out = np.full(len(utilisation), HOLD_ACTION)
    below = utilisation < share
    for step in sorted((m for m in LIMIT_MULTIPLIERS if m < 1.0), reverse=True):  # x0.9 first: first fit wins
        fits = below & (out == HOLD_ACTION) & (utilisation >= share * step)
        out[fits] = LIMIT_MULTIPLIERS.index(step)
    return out


# -- tuning and training ----------------------------------------------------------------------------------
# Search space: choices uniform, (low, high) of a probability log-uniform (risks span decades).
RISK_SPACE: dict[str, tuple] = {
    "cut_risk": (0.02, 0.9),
    "cut_multiplier": tuple(m for m in LIMIT_MULTIPLIERS if m < 1.0),
    "line_floor": (0.25, 0.5, 0.75, 1.0),
    "raise_risk": (0.002, 0.3),
    "raise_multiplier": tuple(m for m in LIMIT_MULTIPLIERS if m > 1.0),
    "min_utilisation": (0.0, 0.2, 0.4, 0.6, 0.8, 0.9),
    "line_cap": (1.25, 1.5, 2.0, 3.0, 5.0, None),
    "start_line": tuple(m for m in LIMIT_MULTIPLIERS if m <= 1.0),
    "raise_wait": (1, 2, 3, 6),
    "cut_drawdown": (0.1, 0.2, 0.3, 0.5, 2.0),
    "min_uptake": (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "start_safe_risk": (0.0, 0.005, 0.01, 0.02, 0.05, 1.0),
    "start_uptake": (0.0, 0.5, 0.7, 0.9),
    "start_safe": LIMIT_MULTIPLIERS,
    "fast_uptake": (0.6, 0.7, 0.8, 0.9, 2.0),
    "fast_multiplier": tuple(m for m in LIMIT_MULTIPLIERS if m > 1.0),
    "used_raise_share": (0.5, 0.8, 1.0, 1.2, None),
    "jump_drawdown": (0.1, 0.15, 0.2, 0.3, 2.0),
    "jump_quiet": (2, 3, 4, 6),
    "jump_floor": (0.0625, 0.125, 0.25, 0.5),
}
_LOG_RANGES = ("cut_risk", "raise_risk")
SEARCH_ROUNDS = 4  # local search: the trial budget in this many rounds, each around the best so far


def _draw(name: str, rng: np.random.Generator) -> Any:
    options = RISK_SPACE[name]
    if name in _LOG_RANGES:
        return float(math.exp(rng.uniform(math.log(options[0]), math.log(options[1]))))
    return options[int(rng.integers(len(options)))]


def sample_risk_params(rng: np.random.Generator) -> RiskParams:
    """One random draw from :data:`RISK_SPACE`."""
    return RiskParams(**{name: _draw(name, rng) for name in RISK_SPACE})


def perturb_risk_params(params: RiskParams, rng: np.random.Generator, max_changes: int = 3) -> RiskParams:
    """``params`` with 1 to ``max_changes`` of its entries drawn afresh from :data:`RISK_SPACE`."""
    names = list(RISK_SPACE)
    changed = rng.choice(len(names), size=int(rng.integers(1, max_changes + 1)), replace=False)
    return dataclasses.replace(params, **{names[i]: _draw(names[i], rng) for i in changed})


class RiskTuning(NamedTuple):
    """The chosen thresholds and one row per trial (parameters, search round and the evaluator's metrics)."""

    params: RiskParams
    table: pd.DataFrame


def tune_risk_policy(
    model: RiskModel,
    config: Config | str,
    seeds: Sequence[int],
    num_accounts: int,
    n_trials: int = 40,
    progress: bool = True,
    holdout_seeds: Iterable[int] = (),
    search_seed: int = 0,
    uptake: RiskModel | None = None,
) -> RiskTuning:
    """A local search over :class:`RiskParams` on tuning ``seeds`` under the cap, with ``agents.tuning.tune_rule``'s
    budget, evaluator and choice (``select_under_cap``): ``n_trials`` in :data:`SEARCH_ROUNDS` rounds; trial 0
    is the defaults, every other trial the best so far with 1-3 entries redrawn (:func:`perturb_risk_params`;
    the rule's plain random draws over this many entries never beat the defaults)."""
    config = resolve_config(config)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("tuning needs at least one seed")
    check_disjoint(tuning=seeds, holdout=holdout_seeds)
    if not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    rng = np.random.default_rng(search_seed)
    sizes = [len(r) for r in np.array_split(np.arange(n_trials), min(SEARCH_ROUNDS, n_trials))]
    trials: list[RiskParams] = []
    tables: list[pd.DataFrame] = []
    best = 0
    for round_, size in enumerate(sizes):
        batch = [RiskParams()] if not trials else []
        batch += [perturb_risk_params(trials[best] if trials else batch[0], rng) for _ in range(size - len(batch))]
        policies = {f"trial_{len(trials) + i}": RiskPolicy(model, p, uptake=uptake) for i, p in enumerate(batch)}
        # All trials of a round in one batched simulator per seed (agents.population: the evaluator's figures).
        summary = population_summary(policies, config, num_accounts, seeds, progress=progress, n_boot=10)
        summary = summary.set_index("policy").loc[list(policies)].reset_index(drop=True)
        metrics = summary[["per_user_revenue", "m3plus_rate", "cap", "meets_cap", "average_line", "attrition_rate"]]
        head = pd.DataFrame({"trial": range(len(trials), len(trials) + len(batch)), "round": round_})
        tables.append(pd.concat([head, pd.DataFrame([dataclasses.asdict(p) for p in batch]), metrics], axis=1))
        trials += batch
        table = pd.concat(tables, ignore_index=True)
        with warnings.catch_warnings():  # an early round may have no trial under the cap: warned at the end
            warnings.simplefilter("ignore")
            best = select_under_cap(table)
    best = select_under_cap(table)
    table["chosen"] = np.arange(len(table)) == best
    return RiskTuning(trials[best], table)


def _auc(label: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC, NaN when the held-out rows hold one class only (a tiny book)."""
    return float(roc_auc_score(label, score)) if 0 < label.sum() < len(label) else float("nan")


class RiskPolicyResult(NamedTuple):
    policy: RiskPolicy
    tuning: pd.DataFrame  # one row per threshold trial
    holdout_auc: float  # ROC AUC of the model on the held-out training seed
    holdout_base_rate: float  # share of held-out rows with the outcome
    uptake_auc: float  # ROC AUC of the need model on the held-out seed's raises


def train_risk_policy(
    config: Config | str,
    training_seeds: Sequence[int],
    tuning_seeds: Sequence[int],
    tune_accounts: int,
    n_trials: int = 40,  # tune_rule's default budget
    holdout_seeds: Iterable[int] = (),
    settings: RiskPolicyConfig | None = None,
    search_seed: int = 0,
    progress: bool = True,
) -> RiskPolicyResult:
    """Histories of ``training_seeds`` (all but the last fit the model, the last measures it), then the
    thresholds tuned on ``tuning_seeds``. Every seed set is checked disjoint from the others."""
    config = resolve_config(config)
    settings = load_risk_policy_config(config.name) if settings is None else settings
    training, holdout = list(training_seeds), list(holdout_seeds)
    if len(training) < 2:
        raise ValueError(f"the risk policy needs at least 2 training seeds (one is held out), got {training}")
    check_disjoint(training=training, tuning=tuning_seeds, evaluation=holdout)
    data = simulate_histories(config, training, settings)
    fitting, held = data.subset(data.seed != training[-1]), data.subset(data.seed == training[-1])
    model, uptake = fit_risk_model(fitting, settings), fit_uptake_model(fitting, settings)
    auc = _auc(held.label, model.predict_risk(held.obs, held.previous_balance))
    raised = ~np.isnan(held.uptake)
    uptake_auc = _auc(held.uptake[raised] > 0.5, uptake.predict_risk(held.obs[raised], held.previous_balance[raised]))
    tuned = tune_risk_policy(
        model, config, tuning_seeds, tune_accounts, n_trials, progress, holdout, search_seed, uptake=uptake
    )
    policy = RiskPolicy(model, tuned.params, uptake=uptake)
    return RiskPolicyResult(policy, tuned.table, auc, float(held.label.mean()), uptake_auc)
