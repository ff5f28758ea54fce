"""Bank baselines that speak Stable-Baselines3's ``predict()`` API, so they share the evaluator with agents.

Every policy here sees only the observation (``envs.observation``), never the simulator's hidden state,
and decides for a whole batch of accounts at once with numpy (no Python loop over accounts).

| policy | what a bank would call it |
|---|---|
| :class:`StaticHold` | keep every account at its origination line |
| :class:`BestStatic` | move every line once to ``x`` times its origination line, then hold |
| :class:`RuleBased` | "low and grow": raise after good months, cut on delinquency or a low score |
| :class:`RandomPolicy` | uniform random actions (a sanity floor) |

Actions are indices into ``envs.actions.LIMIT_MULTIPLIERS`` (``CreditLine-v0``); with ``continuous=True``
the same multiplier is returned as a ``Box(-1, 1, (1,))`` action (``CreditLineContinuous-v0``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol, runtime_checkable

import numpy as np

from envs.actions import HOLD_ACTION, LIMIT_MULTIPLIERS, multiplier_to_continuous
from envs.config import load_config
from envs.observation import observation_entries
from envs.population import SCORE_RANGE

_LOG_MULTIPLIERS = np.log(np.array(LIMIT_MULTIPLIERS))
_RAISES = np.array([m > 1.0 for m in LIMIT_MULTIPLIERS])
_CUTS = np.array([m < 1.0 for m in LIMIT_MULTIPLIERS])


@runtime_checkable
class Policy(Protocol):
    """Anything with SB3's ``predict``: a trained model (``PPO``, ``DQN``, ...) or a baseline below."""

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]: ...


@cache
def obs_index() -> dict[str, int]:
    """Observation column of each entry name. The layout is the same for every preset (only the bounds
    depend on the config), so the default preset is used to read it."""
    return {entry.name: i for i, entry in enumerate(observation_entries(load_config()))}


def is_continuous(policy: Policy) -> bool:
    """Whether ``policy`` returns Box actions: a baseline's ``continuous`` flag, else an SB3 model's space."""
    flag = getattr(policy, "continuous", None)
    if isinstance(flag, bool):
        return flag
    space = getattr(policy, "action_space", None)
    return space is not None and type(space).__name__ == "Box"


class _Baseline:
    """Shape handling shared by the baselines; subclasses choose an action index for each row.

    Args:
        continuous: return ``Box(-1, 1, (1,))`` actions (for ``CreditLineContinuous-v0``) instead of indices.
    """

    def __init__(self, continuous: bool = False):
        if not isinstance(continuous, bool):
            raise TypeError(f"continuous must be True or False, got {continuous!r}")
        self.continuous = continuous

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:
        """Actions for ``observation`` of shape ``(n, 17)`` (or one account, ``(17,)``), SB3 style.

        Args:
            observation: observations as produced by ``CreditLine-v0`` or ``make_portfolio``.
            state, episode_start: unused (the baselines keep no memory); accepted for SB3 compatibility.
            deterministic: unused except by :class:`RandomPolicy`, which is random either way.

        Returns:
            ``(actions, None)``: int64 indices of shape ``(n,)`` (``()`` for a single observation), or with
            ``continuous=True`` float32 of shape ``(n, 1)`` (``(1,)``).
        """
        obs = np.asarray(observation)
        width = len(obs_index())
        if obs.ndim not in (1, 2) or obs.shape[-1] != width:
            raise ValueError(
                f"{type(self).__name__}.predict expects observations of shape ({width},) or "
                f"(n, {width}), got {obs.shape}"
            )
        single = obs.ndim == 1
        batch = obs.reshape(1, -1) if single else obs
        if self.continuous:
            actions = self._continuous_actions(batch)
            return (actions[0] if single else actions), None
        actions = self._actions(batch).astype(np.int64)
        return (actions[0] if single else actions), None

    def _actions(self, obs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _continuous_actions(self, obs: np.ndarray) -> np.ndarray:
        multiplier = np.array(LIMIT_MULTIPLIERS)[self._actions(obs)]
        return multiplier_to_continuous(multiplier).astype(np.float32).reshape(-1, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class StaticHold(_Baseline):
    """Always ``HOLD_ACTION``: every account keeps the line it was granted at origination."""

    def _actions(self, obs: np.ndarray) -> np.ndarray:
        return np.full(len(obs), HOLD_ACTION, dtype=np.int64)


class BestStatic(_Baseline):
    """Every line moved once to ``target`` times its origination line, then held.

    Each month the policy takes the action whose multiplier brings the line closest to
    ``target x origination_line`` on a log scale, considering only hold and moves toward the target
    (raises when ``target > 1``, cuts when ``target < 1``), so a line is never raised and then cut back.
    Hold wins ties. A target of 1.8 is reached in two months: x1.5, then x1.25 (1.875).

    Rounding: the line ends on a product of the multipliers, so within one step of the grid of the target.
    With raises only, the final line is between about 0.953 and 1.095 times the target (log error in
    [-log(1.1)/2, (log 1.5 - log 1.25)/2]); with cuts only, between about 0.95 and 1.05 times it. The
    simulator then rounds lines to whole hundreds of CNY and clips them to the product's
    ``[min_line, max_line]``, so a target beyond ``max_line`` stops there. A target below 1 is a cut in the
    first month, which the simulator's attrition model treats like any other cut.

    Args:
        target: the line as a multiple of the origination line; any positive number (1.0 is StaticHold).
        continuous: return Box actions instead of indices.
    """

    def __init__(self, target: float, continuous: bool = False):
        super().__init__(continuous)
        if not isinstance(target, (int, float, np.floating, np.integer)) or not math.isfinite(target) or target <= 0:
            raise ValueError(f"BestStatic target must be a positive finite number, got {target!r}")
        self.target = float(target)
        self._allowed = _RAISES if self.target > 1.0 else _CUTS
        self._allowed = self._allowed.copy()
        self._allowed[HOLD_ACTION] = True

    def _actions(self, obs: np.ndarray) -> np.ndarray:
        col = obs_index()
        line = obs[:, col["line"]].astype(np.float64)
        origination = obs[:, col["origination_line"]].astype(np.float64)
        error = np.log(line / (self.target * origination))  # [log units] > 0: above target
        after = np.abs(error[:, None] + _LOG_MULTIPLIERS[None, :])  # distance after each action
        after[:, ~self._allowed] = np.inf
        # Hold wins ties: a move must strictly improve on staying where we are.
        best = np.argmin(after, axis=1)
        improves = after[np.arange(len(obs)), best] < after[:, HOLD_ACTION]
        return np.where(improves, best, HOLD_ACTION)

    def __repr__(self) -> str:
        return f"BestStatic({self.target:g})"


@dataclass(frozen=True)
class RuleParams:
    """Parameters of the "low and grow" rule; defaults are a plausible bank policy, not tuned values.

    Args:
        raise_multiplier: line step on a raise, one of LIMIT_MULTIPLIERS above 1.
        good_months: on-time months (and months without a line change) before a raise [months].
        min_utilisation: raise only when balance / line is at least this (a line nobody uses earns nothing).
        cut_multiplier: line step on a cut, one of LIMIT_MULTIPLIERS below 1.
        cut_score: cut when the behaviour score is below this [points, 300..900]; no raise either.
        line_cap: raise no further than this multiple of the origination line (None: product maximum only).
        line_floor: cut no further than this multiple of the origination line, in (0, 1].
    """

    raise_multiplier: float = 1.25
    good_months: int = 6
    min_utilisation: float = 0.5
    cut_multiplier: float = 0.75
    cut_score: float = 500.0
    line_cap: float | None = 3.0
    line_floor: float = 0.5

    def __post_init__(self) -> None:
        for name in ("raise_multiplier", "min_utilisation", "cut_multiplier", "cut_score", "line_floor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if self.line_cap is not None and (
            isinstance(self.line_cap, bool) or not isinstance(self.line_cap, (int, float, np.integer, np.floating))
        ):
            raise ValueError(f"line_cap must be a number or None, got {self.line_cap!r}")
        raises = [m for m in LIMIT_MULTIPLIERS if m > 1.0]
        cuts = [m for m in LIMIT_MULTIPLIERS if m < 1.0]
        if self.raise_multiplier not in raises:
            raise ValueError(f"raise_multiplier must be one of {raises}, got {self.raise_multiplier!r}")
        if self.cut_multiplier not in cuts:
            raise ValueError(f"cut_multiplier must be one of {cuts}, got {self.cut_multiplier!r}")
        if not isinstance(self.good_months, (int, np.integer)) or self.good_months < 1:
            raise ValueError(f"good_months must be a positive integer, got {self.good_months!r}")
        if not 0.0 <= self.min_utilisation <= 10.0:
            raise ValueError(f"min_utilisation must be in [0, 10], got {self.min_utilisation!r}")
        if not SCORE_RANGE[0] <= self.cut_score <= SCORE_RANGE[1]:
            raise ValueError(f"cut_score must be in {list(SCORE_RANGE)}, got {self.cut_score!r}")
        if self.line_cap is not None and not self.line_cap >= 1.0:
            raise ValueError(f"line_cap must be at least 1 (or None), got {self.line_cap!r}")
        if not 0.0 < self.line_floor <= 1.0:
            raise ValueError(f"line_floor must be in (0, 1], got {self.line_floor!r}")


class RuleBased(_Baseline):
    """The bank's "low and grow" line-management rule, applied to every account each month.

    - **Cut** by ``cut_multiplier`` when the account is delinquent (``months_past_due >= 1``) or its
      behaviour score is below ``cut_score``, unless the cut would take the line below
      ``line_floor x origination_line``. A cut takes precedence over everything.
    - **Raise** by ``raise_multiplier`` after ``good_months`` on-time months: the account is current, its
      line has not changed for ``good_months`` months (the count starts at origination, so the account has
      also been on book that long), and none of the
      observed payment ratios of the last ``min(good_months, 3)`` months is zero (a zero is a missed or
      rolled payment; an on-time payer pays at least what is due, a zero balance shows 1). Only three months
      of payments are observable; older misses are covered because the rule cuts on every delinquency,
      which restarts ``months_since_line_change``. Also required: utilisation at least
      ``min_utilisation`` and the raised line within ``line_cap x origination_line``.
    - Otherwise **hold**.

    Args:
        params: a :class:`RuleParams` (defaults if None).
        continuous: return Box actions instead of indices.
    """

    def __init__(self, params: RuleParams | None = None, continuous: bool = False):
        super().__init__(continuous)
        if params is None:
            params = RuleParams()
        if not isinstance(params, RuleParams):
            raise TypeError(f"params must be a RuleParams, got {type(params).__name__}")
        self.params = params
        self._raise = LIMIT_MULTIPLIERS.index(params.raise_multiplier)
        self._cut = LIMIT_MULTIPLIERS.index(params.cut_multiplier)

    def _actions(self, obs: np.ndarray) -> np.ndarray:
        p, col = self.params, obs_index()
        line = obs[:, col["line"]].astype(np.float64)
        origination = obs[:, col["origination_line"]].astype(np.float64)
        mpd = obs[:, col["months_past_due"]]
        score = obs[:, col["behaviour_score"]]
        # 1% slack: lines are rounded to whole hundreds of CNY, so "at the floor" is never exact.
        slack = 1.01
        cut = ((mpd >= 1) | (score < p.cut_score)) & (line * p.cut_multiplier * slack >= p.line_floor * origination)

        lags = [col[f"payment_ratio_{k}"] for k in range(1, min(p.good_months, 3) + 1)]
        paid = np.all(obs[:, lags] > 0.0, axis=1)
        # months_since_line_change is 0 at origination, so it also bounds months on book.
        good = (mpd == 0) & paid & (obs[:, col["months_since_line_change"]] >= p.good_months)
        grow = good & (obs[:, col["utilisation"]] >= p.min_utilisation) & (score >= p.cut_score)
        if p.line_cap is not None:
            grow &= line * p.raise_multiplier <= p.line_cap * origination * slack
        return np.where(cut, self._cut, np.where(grow, self._raise, HOLD_ACTION))

    def __repr__(self) -> str:
        return f"RuleBased({self.params})"


class RandomPolicy(_Baseline):
    """Uniformly random actions from the policy's own seeded generator: the floor any policy should beat.

    The generator advances with every call, so evaluating the same instance twice gives different actions;
    build a new ``RandomPolicy(seed)`` to reproduce a run.

    Args:
        seed: seed of the policy's ``numpy.random.Generator``.
        continuous: draw Box actions uniformly in [-1, 1] instead of indices.
    """

    def __init__(self, seed: int = 0, continuous: bool = False):
        super().__init__(continuous)
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"RandomPolicy seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)

    def _actions(self, obs: np.ndarray) -> np.ndarray:
        return self._rng.integers(0, len(LIMIT_MULTIPLIERS), size=len(obs))

    def _continuous_actions(self, obs: np.ndarray) -> np.ndarray:
        return self._rng.uniform(-1.0, 1.0, size=(len(obs), 1)).astype(np.float32)

    def __repr__(self) -> str:
        return f"RandomPolicy({self.seed})"
