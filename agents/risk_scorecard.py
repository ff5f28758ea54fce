"""A lender's scorecards, fitted on history: the histories they learn from, the risk and need models.

Built from the observations alone (``envs.observation``; no hidden state), for the line rules of
``agents.risk_policy``:

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

   The last training seed is held out: the ROC AUC of each model there is its check
   (``agents.risk_tuning.train_risk_policy``). A scorecard is bin edges and coefficients, saved as JSON (no
   pickle: a run folder from someone else is safe to load).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy import sparse
from sklearn.linear_model import LogisticRegression

import envs
from agents.evaluation import portfolio_seed
from agents.policies import BestStatic, Policy, RuleBased, StaticHold, _Baseline, obs_index
from agents.scorecard import scorecard_logit
from envs.actions import HOLD_ACTION, LIMIT_MULTIPLIERS
from envs.config import Config, ConfigError, read_yaml

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
