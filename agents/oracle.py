"""The privileged oracle: an UPPER BOUND that sets lines from the simulator's hidden state. Not deployable.

No lender observes a borrower's true default hazard, income, credit need or employment; the oracle does,
so what it earns bounds what a policy on the observations could earn with the same kind of rule. Every
study reports it beside the baselines, as the denominator of ``oracle_share`` = (policy - best static) /
(oracle - best static): how much of the room to win a policy takes.

How it reads the hidden state (interfaces item 2): the evaluator calls :meth:`Oracle.bind_simulator` with
the run's ``Simulator`` right after ``reset()``; each ``predict`` then reads :func:`hidden_state` of that
simulator, whose rows are the rows of the observation batch. :func:`hidden_state` uses the simulator's own
``hidden_state()`` where it has one (simulator v2: distress and the true miss probability as the dynamics
compute it), and otherwise computes the same quantities from what the simulator keeps today.

The rule (random-searched by :func:`agents.tuning.tune_oracle` under the cap, with the rule's budget):

- **cut** by ``cut_multiplier`` when the true probability of missing next month is at least
  ``cut_probability`` (a job loss, a distress episode, a risky borrower deep in debt), down to
  ``line_floor x origination line``;
- **raise** by ``raise_multiplier`` when that probability is at most ``raise_probability`` and the line is
  below the *useful line*: the line at which the borrower's own credit need is met (beyond it more line
  only adds exposure), within ``line_cap x origination line``;
- otherwise hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.policies import _Baseline, obs_index
from envs.actions import HOLD_ACTION, LIMIT_MULTIPLIERS
from envs.simulator import Simulator

UPPER_BOUND_LABEL = "oracle (upper bound: sees hidden state, not deployable)"
_HIDDEN_KEYS = ("unemployed", "distress", "miss_probability")  # besides the traits (interfaces item 1)


def hidden_state(sim: Simulator) -> dict[str, np.ndarray]:
    """Every account's hidden state: the traits, ``unemployed``, ``distress`` and ``miss_probability``.

    ``miss_probability`` is the probability that a current account misses its next payment at its current
    balance if the line is held (the monthly dynamics' logistic hazard without the random draw; the balloon
    month's extra burden is left out). A simulator without ``hidden_state()`` (before simulator v2) has no
    distress state: ``distress`` is 0 there.
    """
    own = getattr(sim, "hidden_state", None)
    if callable(own):
        state = own()
        missing = [k for k in _HIDDEN_KEYS if k not in state]
        if missing:
            raise KeyError(f"Simulator.hidden_state() lacks {missing} (interfaces item 1)")
        return state
    s, dflt = sim.state, sim.config.default
    logit = s.miss_per_cny * s.balance.astype(np.float32) + s.miss_logit_base  # as envs.dynamics step 5
    logit += dflt.history_effect * s.missed_payments
    logit[s.unemployed] += dflt.unemployed_effect
    if sim.stress:
        logit += dflt.stress_effect
    return {
        **sim.hidden_traits(),
        "unemployed": s.unemployed.copy(),
        "distress": np.zeros(len(s)),
        "miss_probability": 1.0 / (1.0 + np.exp(-logit.astype(np.float64))),
    }


def useful_line(sim: Simulator, traits: dict[str, np.ndarray]) -> np.ndarray:
    """[CNY] The line beyond which a borrower draws no more: where the balance reaches the credit need.

    A revolver's wanted balance is its target share of the original line plus ``line_response`` per CNY of
    line above it, up to its need (envs.dynamics step 6); a transactor's does not follow the line, but a
    line short of the need raises its odds of closing (step 8), so its useful line is the need.
    """
    s = sim.state
    headroom = np.maximum(traits["need"] - s.target_balance, 0.0)
    response = s.line_response
    with np.errstate(divide="ignore", invalid="ignore"):
        revolver_line = np.where(response > 1e-6, s.origination_line + headroom / response, 0.0)
    return np.maximum(traits["need"], revolver_line)


@dataclass(frozen=True)
class OracleParams:
    """Thresholds of the oracle's rule; defaults are a reasonable start, not tuned values.

    Args:
        cut_probability: cut when the true monthly miss probability is at least this, in (0, 1].
        cut_multiplier: line step on a cut, one of LIMIT_MULTIPLIERS below 1.
        line_floor: cut no further than this multiple of the origination line, in (0, 1].
        raise_probability: raise only when the miss probability is at most this, in [0, 1).
        raise_multiplier: line step on a raise, one of LIMIT_MULTIPLIERS above 1.
        line_cap: raise no further than this multiple of the origination line (None: product maximum only).
    """

    cut_probability: float = 0.3
    cut_multiplier: float = 0.5
    line_floor: float = 0.5
    raise_probability: float = 0.05
    raise_multiplier: float = 1.25
    line_cap: float | None = 3.0

    def __post_init__(self) -> None:
        for name in ("cut_probability", "raise_probability", "line_floor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if not 0.0 < self.cut_probability <= 1.0:
            raise ValueError(f"cut_probability must be in (0, 1], got {self.cut_probability!r}")
        if not 0.0 <= self.raise_probability < 1.0:
            raise ValueError(f"raise_probability must be in [0, 1), got {self.raise_probability!r}")
        if not 0.0 < self.line_floor <= 1.0:
            raise ValueError(f"line_floor must be in (0, 1], got {self.line_floor!r}")
        cuts = [m for m in LIMIT_MULTIPLIERS if m < 1.0]
        raises = [m for m in LIMIT_MULTIPLIERS if m > 1.0]
        if self.cut_multiplier not in cuts:
            raise ValueError(f"cut_multiplier must be one of {cuts}, got {self.cut_multiplier!r}")
        if self.raise_multiplier not in raises:
            raise ValueError(f"raise_multiplier must be one of {raises}, got {self.raise_multiplier!r}")
        if self.line_cap is not None and not (isinstance(self.line_cap, (int, float)) and self.line_cap >= 1.0):
            raise ValueError(f"line_cap must be a number >= 1 or None, got {self.line_cap!r}")


class Oracle(_Baseline):
    """Line decisions from the hidden state of the bound simulator (see the module docstring).

    An upper bound, never a deployable policy: ``privileged`` is True and ``label`` says so. ``predict``
    without a bound simulator, or on a batch that is not the simulator's accounts, is an error.

    Args:
        params: an :class:`OracleParams` (defaults if None).
        continuous: return Box actions instead of indices.
    """

    privileged = True
    label = UPPER_BOUND_LABEL

    def __init__(self, params: OracleParams | None = None, continuous: bool = False):
        super().__init__(continuous)
        params = OracleParams() if params is None else params
        if not isinstance(params, OracleParams):
            raise TypeError(f"params must be an OracleParams, got {type(params).__name__}")
        self.params = params
        self._cut = LIMIT_MULTIPLIERS.index(params.cut_multiplier)
        self._raise = LIMIT_MULTIPLIERS.index(params.raise_multiplier)
        self.sim: Simulator | None = None

    def bind_simulator(self, sim: Simulator) -> None:
        """Read hidden state from ``sim`` from now on (the evaluator calls this after every reset)."""
        self.sim = sim

    def _hidden(self, sim: Simulator) -> dict[str, np.ndarray]:
        """The hidden state the rule reads (a test replaces it by noise to show the oracle depends on it)."""
        return hidden_state(sim)

    def _actions(self, obs: np.ndarray) -> np.ndarray:
        sim = self.sim
        if sim is None:
            raise RuntimeError("the oracle reads hidden state: call bind_simulator(sim) before predict")
        if len(obs) != sim.num_accounts:
            raise ValueError(f"the oracle acts on the bound simulator's {sim.num_accounts} accounts, got {len(obs)}")
        p, col = self.params, obs_index()
        hidden = self._hidden(sim)
        miss = np.asarray(hidden["miss_probability"], dtype=np.float64)
        line = obs[:, col["line"]].astype(np.float64)
        origination = obs[:, col["origination_line"]].astype(np.float64)
        current = obs[:, col["months_past_due"]] == 0
        slack = 1.01  # lines are rounded to whole hundreds of CNY: "at the floor / cap" is never exact
        cut = (miss >= p.cut_probability) & (line * p.cut_multiplier * slack >= p.line_floor * origination)
        grow = current & (miss <= p.raise_probability) & (line < useful_line(sim, hidden))
        if p.line_cap is not None:
            grow &= line * p.raise_multiplier <= p.line_cap * origination * slack
        return np.where(cut, self._cut, np.where(grow, self._raise, HOLD_ACTION))

    def __repr__(self) -> str:
        return f"Oracle({self.params})"


def sample_oracle_params(rng: np.random.Generator) -> OracleParams:
    """One random draw from :data:`ORACLE_SPACE` (probabilities log-uniform: they span decades)."""
    values: dict[str, Any] = {}
    for name, options in ORACLE_SPACE.items():
        if name in _LOG_RANGES:
            low, high = options
            values[name] = float(math.exp(rng.uniform(math.log(low), math.log(high))))
        else:
            values[name] = options[int(rng.integers(len(options)))]
    return OracleParams(**values)


# Line floors of the rule's and the oracle's random searches [multiple of the origination line]: from no
# cut at all down to 1/32, below product.min_line / origination line for most accounts (500 CNY is 0.041 to
# 0.051 of the median origination line on the four presets), so the lowest floor is the product's own;
# repeated cuts of x0.5 or x0.75 reach any of them.
LINE_FLOORS: tuple[float, ...] = (0.03125, 0.0625, 0.125, 0.25, 0.5, 0.75, 1.0)

# Random-search space: choices uniform, (low, high) of a probability log-uniform. Monthly miss
# probabilities run from about 1% (the 10th percentile on wechat) to over 50% (the out of work).
ORACLE_SPACE: dict[str, tuple] = {
    "cut_probability": (0.05, 0.9),
    "cut_multiplier": tuple(m for m in LIMIT_MULTIPLIERS if m < 1.0),
    "line_floor": LINE_FLOORS,
    "raise_probability": (0.003, 0.2),
    "raise_multiplier": tuple(m for m in LIMIT_MULTIPLIERS if m > 1.0),
    "line_cap": (1.25, 1.5, 2.0, 3.0, 5.0, None),
}
_LOG_RANGES = ("cut_probability", "raise_probability")
