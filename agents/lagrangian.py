"""The M3+ cap as a constraint for Stable-Baselines3: a cost-penalised reward and a Lagrange multiplier.

SB3 has no constrained algorithm (DOMAIN.md section 5), so the constrained MDP "maximise reward subject to
M3+ rate <= cap" is solved the Lagrangian way: the agent trains on ``reward - lambda x penalty`` and a
controller raises ``lambda`` while the measured M3+ rate exceeds the cap and lowers it (never below 0)
when the rate is under it. Three pieces:

- :class:`CostPenaltyVecEnv`, a ``VecEnvWrapper`` over ``make_portfolio`` that subtracts the penalty from the
  reward, keeps the raw reward and cost of the last step, and pools rollout statistics;
- a controller: :class:`PIDLagrangian` (Stooke, Achiam & Abbeel 2020), :class:`FixedLambda` (a constant
  penalty, for comparison) or ``FixedLambda(0)`` for no constraint;
- :class:`LagrangianCallback`, which updates the controller at each rollout end and logs ``lambda``,
  ``m3plus_rate``, ``revenue``, ``cost``, ``reward`` and ``penalty`` to SB3's logger.

Scale (why the gains of the paper make sense here): rewards are CNY per account-month (tens), the M3+ rate
is a fraction (~0.01). Two config values put both on the controller's natural O(1) scale:

- the error is relative to the cap, ``e = (rate - cap) / cap`` (``relative_error``): 0 at the cap, +1 at
  twice the cap, -1 at a clean book, the same for every preset;
- the penalty of one account-month is ``lambda x penalty_scale x cost / cap`` [CNY], where ``cost`` is the
  account's M3+ balance / ``accounting.reference_balance``. Averaged over a portfolio, ``cost / cap`` is
  about ``(rate / cap) x (mean balance / reference balance)``, of order 1 at the cap (0.6-0.8 measured on
  wechat), so ``lambda = 1`` charges a book at the cap roughly ``penalty_scale`` CNY per account-month.

``penalty_scale`` (configs/agents/ppo.yaml: 100 CNY) puts reward and penalty on one scale once lambda is
read in tenths: ``lambda = 0.1`` charges a book at the cap about 10 CNY per account-month, roughly its
monthly revenue (~11 CNY on wechat), and the PID settles at lambda ~0.03-0.08 (a penalty of 3-8 CNY). The
gains Kp 0.1, Ki 0.01, Kd 0.01 of Stooke et al. (DOMAIN.md section 5) move lambda by ~0.01 a rollout under
a persistent error of one cap. (A scale of 10 with the same gains is the same penalty at a lambda ten times
larger, reached ten times more slowly: measured, PPO then drifted to M3+ 3.6-4.1% before lambda caught up.)
The training figure shows lambda beside revenue and the M3+ rate.

The M3+ rate fed to the controller is pooled over the rollout as the evaluator pools it (balance in
M3..M5 over the month-end balance); with ``training.sub_books`` sub-books (agents.multibook) each rollout
pools that many independent macro paths, so the rate no longer swings with one path's regime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs

from envs.config import CHARGE_OFF_MONTHS

CONSTRAINTS = ("pid", "fixed", "none")
M3PLUS_MONTHS = 3  # months past due from which a balance counts as M3+ (DOMAIN.md section 2)


class ConstraintConfig(BaseModel):
    """The ``constraint`` section of ``configs/agents/<algo>.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kp: float = Field(0.1, ge=0.0)  # Stooke, Achiam & Abbeel 2020 (DOMAIN.md section 5)
    ki: float = Field(0.01, ge=0.0)  # idem
    kd: float = Field(0.01, ge=0.0)  # idem
    lambda_init: float = Field(0.001, ge=0.0)  # OmniSafe's initial multiplier (DOMAIN.md section 5)
    lambda_max: float = Field(100.0, gt=0.0)  # guard against wind-up when the cap cannot be met
    relative_error: bool = True  # error (rate - cap) / cap instead of rate - cap
    # The controller aims at this share of the cap. Evaluation runs other accounts and macro paths than
    # training, so a policy trained to sit exactly at the cap lands above it about half the time.
    target_share: float = Field(1.0, gt=0.0, le=1.0)
    penalty_scale: float = Field(100.0, gt=0.0)  # [CNY/account-month] penalty at lambda 1 and the cap
    fixed_lambda: float = Field(1.0, ge=0.0)  # the constant of the "fixed" variant
    # Account-months pooled before the PID updates: off-policy algorithms end a "rollout" every few steps,
    # so they accumulate this many samples first (0: update at every rollout end, as on-policy does).
    min_update_samples: int = Field(0, ge=0)


# -- the multiplier -----------------------------------------------------------------------------------
class LambdaHolder:
    """The current multiplier, shared by the wrapper (reads it) and the controller's callback (writes it).

    Args:
        value: initial lambda, >= 0.
    """

    def __init__(self, value: float = 0.0):
        self.value = value

    @property
    def value(self) -> float:
        return self._value

    @value.setter
    def value(self, value: float) -> None:
        value = float(value)
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"lambda must be a finite number >= 0, got {value}")
        self._value = value


class Controller(Protocol):
    """Anything that turns a measured M3+ rate into a multiplier."""

    @property
    def value(self) -> float: ...

    def update(self, rate: float) -> float: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class PIDLagrangian:
    """PID control of the Lagrange multiplier (Stooke, Achiam & Abbeel 2020, "Responsive safety in RL by
    PID Lagrangian methods", ICML; gains from DOMAIN.md section 5).

    Each update, from the pooled M3+ rate of the last rollout, with error ``e`` (see the module docstring):
    ``I <- max(0, I + ki e)``; ``D = max(0, e - e_prev)`` (only a rising cost pushes lambda up);
    ``lambda = clip(kp e + I + kd D, 0, lambda_max)``. The integral starts at ``lambda_init`` and is
    kept >= 0, so below the cap lambda falls to 0 and stays there instead of winding up negative.

    Args:
        cap: the M3+ cap [fraction], e.g. ``config.env.m3plus_cap`` (0.018 for wechat).
        kp, ki, kd: proportional, integral and derivative gains.
        lambda_init: the multiplier before the first update (also the integral's start).
        relative_error: error ``(rate - cap) / cap`` (True) or ``rate - cap``.
        lambda_max: upper clip of lambda.
    """

    kind = "pid"

    def __init__(
        self,
        cap: float,
        kp: float = 0.1,
        ki: float = 0.01,
        kd: float = 0.01,
        lambda_init: float = 0.001,
        relative_error: bool = True,
        lambda_max: float = 100.0,
    ):
        if not 0.0 < cap < 1.0:
            raise ValueError(f"cap must be a fraction in (0, 1), got {cap}")
        for name, gain in (("kp", kp), ("ki", ki), ("kd", kd), ("lambda_init", lambda_init)):
            if not np.isfinite(gain) or gain < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {gain}")
        if not lambda_max > 0:
            raise ValueError(f"lambda_max must be > 0, got {lambda_max}")
        self.cap, self.kp, self.ki, self.kd = float(cap), float(kp), float(ki), float(kd)
        self.relative_error, self.lambda_max = relative_error, float(lambda_max)
        self.integral = float(lambda_init)
        self.previous_error: float | None = None
        self._value = min(float(lambda_init), self.lambda_max)

    @property
    def value(self) -> float:
        return self._value

    def error(self, rate: float) -> float:
        """Distance of ``rate`` above the cap, in caps if ``relative_error``."""
        gap = rate - self.cap
        return gap / self.cap if self.relative_error else gap

    def update(self, rate: float) -> float:
        """Update from the measured M3+ rate [fraction]; returns the new lambda."""
        if not np.isfinite(rate) or rate < 0:
            raise ValueError(f"the measured M3+ rate must be a finite number >= 0, got {rate}")
        e = self.error(rate)
        self.integral = max(0.0, self.integral + self.ki * e)
        derivative = 0.0 if self.previous_error is None else max(0.0, e - self.previous_error)
        self.previous_error = e
        self._value = float(np.clip(self.kp * e + self.integral + self.kd * derivative, 0.0, self.lambda_max))
        return self._value

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "value": self._value,
            "integral": self.integral,
            "previous_error": self.previous_error,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_kind(state, self.kind)
        self._value, self.integral = float(state["value"]), float(state["integral"])
        self.previous_error = None if state["previous_error"] is None else float(state["previous_error"])


class FixedLambda:
    """A constant multiplier: a fixed penalty (``kind="fixed"``) or none at all (``value=0``, ``"none"``).

    Args:
        value: the constant lambda, >= 0.
        kind: label written to checkpoints ("fixed" or "none").
    """

    def __init__(self, value: float, kind: str = "fixed"):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"a fixed lambda must be a finite number >= 0, got {value}")
        self._value, self.kind = float(value), kind

    @property
    def value(self) -> float:
        return self._value

    def update(self, rate: float) -> float:
        return self._value

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self._value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_kind(state, self.kind)
        self._value = float(state["value"])


def _check_kind(state: dict[str, Any], kind: str) -> None:
    if state.get("kind") != kind:
        raise ValueError(
            f"saved constraint state is for '{state.get('kind')}', not '{kind}'; resume with "
            f"the constraint the run was trained with"
        )


def make_controller(kind: str, config: ConstraintConfig, cap: float) -> Controller:
    """The controller of a constraint kind: "pid", "fixed" (``config.fixed_lambda``) or "none" (lambda 0)."""
    if kind == "pid":
        return PIDLagrangian(
            cap * config.target_share,
            config.kp,
            config.ki,
            config.kd,
            config.lambda_init,
            config.relative_error,
            config.lambda_max,
        )
    if kind == "fixed":
        return FixedLambda(config.fixed_lambda, "fixed")
    if kind == "none":
        return FixedLambda(0.0, "none")
    raise ValueError(f"unknown constraint '{kind}'; choose one of {', '.join(CONSTRAINTS)}")


# -- the reward wrapper -------------------------------------------------------------------------------
@dataclass
class RolloutStats:
    """Sums over the account-months since the last :meth:`CostPenaltyVecEnv.pop_stats`."""

    samples: int = 0  # account-months
    m3plus_balance: float = 0.0  # [CNY] month-end balance in M3..M5 (M6 is charged off, off the book)
    balance: float = 0.0  # [CNY] month-end balance
    reward: float = 0.0  # [CNY] raw env reward
    revenue: float = 0.0  # [CNY] per-user-revenue part of the reward
    cost: float = 0.0  # M3+ balance / reference balance
    penalty: float = 0.0  # [CNY] lambda x penalty_scale x cost / cap

    @property
    def m3plus_rate(self) -> float:
        """Pooled balance-based M3+ rate (NaN with no balance)."""
        return self.m3plus_balance / self.balance if self.balance > 0 else float("nan")

    def mean(self, name: str) -> float:
        """Mean of a summed field per account-month."""
        return getattr(self, name) / self.samples if self.samples else float("nan")


class PenalisedStep(NamedTuple):
    """The last step's raw signals, one entry per account (the learner gets objective - penalty)."""

    reward: np.ndarray  # [CNY] raw env reward
    cost: np.ndarray  # M3+ balance / reference balance
    penalty: np.ndarray  # [CNY] what was subtracted


class CostPenaltyVecEnv(VecEnvWrapper):
    """Trains on ``reward - lambda x penalty_scale x cost / cap``, lambda read from ``holder`` each step.

    Must wrap a ``make_portfolio`` VecEnv (possibly under a ``VecMonitor``): it reads ``venv.last_info``.
    After each step ``last_step`` holds the raw reward, cost and penalty; :meth:`pop_stats` returns and
    clears the sums since the last call (what the callback pools for the controller).

    Args:
        venv: the portfolio VecEnv.
        holder: the shared lambda.
        cap: the M3+ cap [fraction] (``config.env.m3plus_cap``).
        penalty_scale: [CNY/account-month] see the module docstring.
        horizon_is_terminal: report reaching ``env.horizon`` as a termination to the learner (True), not a
            truncation to bootstrap through. The account really leaves the book then and the objective is
            revenue over the horizon, so there is no value beyond it; ``months_on_book`` is observed, so the
            problem stays Markov.
        objective: what is penalised: the env ``reward`` (accounting result, provisions and servicing
            included) or ``revenue`` (``info["revenue"]``, the per-user-revenue part the evaluator reports).
    """

    def __init__(
        self,
        venv: VecEnv,
        holder: LambdaHolder,
        cap: float,
        penalty_scale: float,
        horizon_is_terminal: bool = True,
        objective: Literal["reward", "revenue"] = "reward",
    ):
        super().__init__(venv)
        if not 0.0 < cap < 1.0:
            raise ValueError(f"cap must be a fraction in (0, 1), got {cap}")
        if not penalty_scale > 0:
            raise ValueError(f"penalty_scale must be > 0, got {penalty_scale}")
        self.holder, self.cap, self.penalty_scale = holder, float(cap), float(penalty_scale)
        if objective not in ("reward", "revenue"):
            raise ValueError(f"objective must be 'reward' or 'revenue', got {objective!r}")
        self.horizon_is_terminal, self.objective = horizon_is_terminal, objective
        self.stats = RolloutStats()
        self.last_step: PenalisedStep | None = None

    def reset(self) -> VecEnvObs:
        return self.venv.reset()

    def step_wait(self):
        obs, reward, dones, infos = self.venv.step_wait()
        # a make_portfolio VecEnv's attribute, reached through any VecEnvWrapper's __getattr__ (VecEnv has none)
        info: dict[str, Any] = cast(Any, self.venv).last_info
        cost = np.asarray(info["cost"], dtype=np.float64)
        penalty = self.holder.value * self.penalty_scale * cost / self.cap
        raw = np.asarray(reward, dtype=np.float64)
        self.last_step = PenalisedStep(raw.copy(), cost.copy(), penalty)
        self._accumulate(info, raw, cost, penalty)
        if self.horizon_is_terminal:
            for i in np.flatnonzero(dones):
                infos[i]["TimeLimit.truncated"] = False
        base = raw if self.objective == "reward" else np.asarray(info["revenue"], dtype=np.float64)
        return obs, (base - penalty).astype(np.float32), dones, infos

    def _accumulate(self, info: dict[str, Any], reward: np.ndarray, cost: np.ndarray, penalty: np.ndarray) -> None:
        balance, mpd = info["balance"], info["months_past_due"]
        m3 = (mpd >= M3PLUS_MONTHS) & (mpd < CHARGE_OFF_MONTHS)
        s = self.stats
        s.samples += len(reward)
        s.m3plus_balance += float(balance[m3].sum())
        s.balance += float(balance.sum())
        s.reward += float(reward.sum())
        s.revenue += float(np.sum(info["revenue"]))
        s.cost += float(cost.sum())
        s.penalty += float(penalty.sum())

    def pop_stats(self) -> RolloutStats:
        """The sums since the last call; starts new ones."""
        stats, self.stats = self.stats, RolloutStats()
        return stats


# -- the callback ---------------------------------------------------------------------------------------
class LagrangianCallback(BaseCallback):
    """At each rollout end: pool the wrapper's statistics, update the controller, publish lambda, log.

    Logged (SB3 logger, so progress.csv and TensorBoard): ``timesteps``, ``lambda``, ``m3plus_rate``
    (pooled balance-based rate of the rollout), ``revenue``, ``reward``, ``penalty`` [CNY/account-month]
    and ``cost`` (mean M3+ balance / reference balance per account-month).

    Args:
        wrapper: the :class:`CostPenaltyVecEnv` the model trains through.
        controller: a :class:`PIDLagrangian` or :class:`FixedLambda`.
        min_update_samples: account-months to pool before an update (see :class:`ConstraintConfig`).
    """

    def __init__(
        self, wrapper: CostPenaltyVecEnv, controller: Controller, min_update_samples: int = 0, verbose: int = 0
    ):
        super().__init__(verbose)
        self.wrapper, self.controller, self.min_update_samples = wrapper, controller, min_update_samples
        self.updates = 0
        self._pooled = RolloutStats()

    def _on_training_start(self) -> None:
        # A resumed controller publishes its saved lambda before the first step.
        self.wrapper.holder.value = self.controller.value
        self.wrapper.pop_stats()  # drop anything collected outside learn() (e.g. a test's manual step)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        stats = self.wrapper.pop_stats()
        pooled = self._pooled
        for name in ("samples", "m3plus_balance", "balance", "reward", "revenue", "cost", "penalty"):
            setattr(pooled, name, getattr(pooled, name) + getattr(stats, name))
        if pooled.samples == 0 or pooled.samples < self.min_update_samples:
            return
        rate = pooled.m3plus_rate
        if np.isfinite(rate):
            self.wrapper.holder.value = self.controller.update(rate)
            self.updates += 1
        self.logger.record("timesteps", self.num_timesteps)
        self.logger.record("lambda", self.controller.value)
        self.logger.record("m3plus_rate", rate)
        self.logger.record("revenue", pooled.mean("revenue"))
        self.logger.record("reward", pooled.mean("reward"))
        self.logger.record("penalty", pooled.mean("penalty"))
        self.logger.record("cost", pooled.mean("cost"))
        self._pooled = RolloutStats()
