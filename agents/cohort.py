"""One policy on one seed: the initial cohort's whole lives, the evaluation window and then the run-off.

The initial cohort (the accounts open at the start) is followed under the policy for the evaluation window
(``months``, default ``env.horizon``). Then its accounts still on the book **run off**: their lines are
frozen, they draw nothing more and repay under the product's schedule, and they can still miss, roll and be
charged off, until each is repaid or charged off (``Simulator.start_run_off``, the simulator's own
``closing`` state, so the run-off has the dynamics of every other month). Revenue, credit losses and M3+
count over these whole lives.

Why: with a window alone, risk created near its end is never booked (a miss takes three months to reach M3
and six to be charged off, and the balances left at the end vanish with the accounts), so a policy that
raises every line a year before the end earns the extra interest while its losses fall outside the window;
with the run-off, a late raise carries the risk it creates (``tests/agents/test_evaluation.py`` checks it
against the same raise at origination). Why not a steady-state book: it needs a burn-in longer than the
window for every policy and seed, and a policy's whole-life value per acquired account is what the lender
prices.

The run-off is bounded by ``run_off_months`` (:data:`RUN_OFF_MONTHS`, far longer than a repayment takes: a
balance at least halves each month at the default adjustment rate, and a delinquent account is charged off
within six months); the share of the cohort still open at the bound is reported as ``run_off_left``.
Accounts that replace ended ones keep the simulated book going but are not counted: they are acquired at
different ages under different policies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from agents.policies import Policy, obs_index
from envs.actions import HOLD_ACTION, continuous_to_multiplier, discrete_to_multiplier
from envs.config import AGE_BANDS, CITY_TIERS

if TYPE_CHECKING:  # the SB3 face is imported where portfolios are made, not here
    from envs.portfolio import PortfolioVecEnv

SEGMENTS: dict[str, tuple[str, ...]] = {"age_band": AGE_BANDS, "city_tier": CITY_TIERS, "thin_file": ("no", "yes")}
M3PLUS_BUCKETS = (3, 5)  # months past due counted as M3+ (6 is charged off and off the book)
CHARGED_OFF = 6  # months_past_due reported for a charge-off
RUN_OFF_MONTHS = 120  # [months] bound on the run-off (a design choice, see the docstring; 50 the longest seen)
METRICS = (
    "per_user_revenue",
    "credit_loss_per_user",
    "m3plus_rate",
    "m3plus_rate_accounts",
    "m3plus_rate_normal",
    "m3plus_rate_stress",
    "utilisation",
    "average_line",
    "attrition_rate",
    "charge_off_rate",
    "run_off_revenue",
    "run_off_left",
)


def segment_groups(obs: np.ndarray) -> np.ndarray:
    """Indicator matrix (n, groups): column 0 is every account, then one column per segment level."""
    col, offset = obs_index(), 1
    member = np.zeros((len(obs), _NUM_GROUPS))
    member[:, 0] = 1.0
    rows = np.arange(len(obs))
    for name, levels in SEGMENTS.items():
        member[rows, offset + obs[:, col[name]].astype(np.int64)] = 1.0
        offset += len(levels)
    return member


_NUM_GROUPS = 1 + sum(len(levels) for levels in SEGMENTS.values())
_SUMS = (
    "revenue",  # [CNY]
    "credit_loss",  # [CNY] charged off net of recoveries (positive), part of the revenue
    "m3_balance",
    "balance",
    "m3_accounts",
    "open_accounts",
    "line",
    "closures",
    "charge_offs",
    "account_months",
)


@dataclass
class CohortRun:
    """Monthly sums of one policy on one seed over the cohort's lives: window months, then run-off months.

    ``sums[name]`` has shape (months, groups) (column 0 every account, then each segment level).
    """

    sums: dict[str, np.ndarray]
    stress: np.ndarray  # (months,) the month's macro regime (True: stress)
    window: int  # months under the policy; the rest is run-off
    cohort_size: np.ndarray  # (groups,)
    left: np.ndarray  # (groups,) cohort accounts still open when the run-off bound was reached
    first_obs: np.ndarray  # the observation at reset (for checks that every policy saw the same accounts)
    simulated: int = 0  # months simulated (the run-off stops once every cohort account has ended)

    @classmethod
    def empty(cls, months: int, window: int, groups: np.ndarray, first_obs: np.ndarray) -> CohortRun:
        sums = {name: np.zeros((months, _NUM_GROUPS)) for name in _SUMS}
        size = groups.sum(axis=0)
        return cls(sums, np.zeros(months, bool), window, size, size, first_obs)

    def record(
        self,
        t: int,
        groups: np.ndarray,
        members: np.ndarray,
        revenue: np.ndarray,
        components: Mapping[str, np.ndarray],
        mpd: np.ndarray,
        balance: np.ndarray,
        line: np.ndarray,
        ended: np.ndarray,
        stress: bool,
    ) -> None:
        """Month ``t`` of the accounts in ``members`` (bool), as the month's end left them."""
        i = np.flatnonzero(members)
        mpd, balance, ended = mpd[i], balance[i], ended[i]
        charged_off = ended & (mpd == CHARGED_OFF)
        is_open = ~ended
        m3 = (mpd >= M3PLUS_BUCKETS[0]) & (mpd <= M3PLUS_BUCKETS[1]) & (balance > 0)
        # A closure in the window is attrition; in the run-off it is a balance repaid, not counted as one.
        closed = ended & ~charged_off if t < self.window else np.zeros_like(ended)
        weights = np.column_stack(
            [revenue[i], -components["credit_loss"][i], np.where(m3, balance, 0.0), balance, m3 & is_open]
            + [is_open, np.where(is_open, line[i], 0.0), closed, charged_off, np.ones(len(i))]
        )
        for name, total in zip(_SUMS, (groups[i].T @ weights).T, strict=True):  # one product sums every group
            self.sums[name][t] = total
        self.stress[t] = stress

    def ended(self, simulated: int, running: np.ndarray, groups: np.ndarray) -> CohortRun:
        """The run after ``simulated`` months, with the accounts still ``running`` counted as left. The
        months after the last cohort account ended are kept as zeros (nothing left to earn or to count),
        so that every run of an evaluation has the same months."""
        self.simulated, self.left = simulated, groups.T @ running.astype(np.float64)
        return self


def run_cohort(policy: Policy, venv: PortfolioVecEnv, months: int, run_off_months: int) -> CohortRun:
    """Run ``policy`` on the fresh portfolio ``venv`` for ``months`` months, then the run-off.

    Args:
        policy: anything with SB3's ``predict``; ``bind_simulator(sim)``, if it has one, is called after the
            reset, before the first ``predict``.
        venv: a portfolio not yet reset, seeded by the caller.
        months: the window, at most ``env.horizon`` (the venv would replace accounts at the horizon).
        run_off_months: bound on the run-off [months].
    """
    num_accounts = venv.num_envs
    obs = venv.reset()
    sim = venv.sim
    bind = getattr(policy, "bind_simulator", None)
    if callable(bind):  # a privileged policy (the oracle) reads hidden state from this run's simulator
        bind(sim)
    groups = segment_groups(obs)  # the cohort's segments (fixed over an account's life)
    run = CohortRun.empty(months + run_off_months, months, groups, obs.copy())
    alive = np.ones(num_accounts, dtype=bool)  # slot still holds its cohort account
    state, episode_start = None, np.ones(num_accounts, dtype=bool)
    # A policy whose action for an account depends on that account's observation alone (``rowwise``, as
    # an exported actor's) acts only on the cohort's accounts: the replacements' lines are held, which
    # changes nothing counted (accounts are independent; only the cohort is recorded) and spares the
    # network's cost on the accounts no one counts.
    rowwise = getattr(policy, "rowwise", False) is True
    for t in range(months):
        if rowwise and not alive.all():
            actions = _act_on_cohort(policy, obs, alive, venv.continuous)
        else:
            actions, state = policy.predict(obs, state=state, episode_start=episode_start, deterministic=True)
        stress = sim.stress  # the regime this month is simulated in (the observation's macro_stress)
        if t < months - 1:
            obs, _, dones, _ = venv.step(actions)  # type: ignore[assignment]  # SB3's VecEnvStepReturn
            info = venv.last_info
            revenue, components = info["revenue"], info["reward_components"]
            mpd, balance, line = info["months_past_due"], info["balance"], info["line"]
        else:  # the last month on the simulator itself: the venv would replace the accounts at the horizon
            result = sim.step(_multipliers(venv, actions))
            dones = result.terminated  # (reaching the horizon is not an end here: the cohort runs off)
            revenue, components = result.revenue, result.components
            mpd, balance, line = sim.state.months_past_due, sim.state.balance, sim.state.line
        run.record(t, groups, alive, revenue, components, mpd, balance, line, dones, stress)
        alive &= ~dones
        episode_start = dones

    # Run-off: lines frozen (multiplier 1), no drawing, until every cohort account is repaid or charged off.
    running = alive
    sim.start_run_off(np.flatnonzero(running))
    hold, t = np.ones(num_accounts), months
    while t < months + run_off_months and running.any():
        stress = sim.stress
        result = sim.step(hold)
        s = sim.state
        run.record(
            t,
            groups,
            running,
            result.revenue,
            result.components,
            s.months_past_due,
            s.balance,
            s.line,
            result.terminated,
            stress,
        )
        running &= ~result.terminated
        t += 1
    return run.ended(t, running, groups)


def _act_on_cohort(policy: Policy, obs: np.ndarray, alive: np.ndarray, continuous: bool) -> np.ndarray:
    """The actions of a ``rowwise`` policy for the accounts ``alive``, the hold action for the others."""
    rows = np.flatnonzero(alive)
    by_rows = getattr(policy, "predict_rows", None)  # the exported actor reads the rows in place (no copy)
    acted = np.asarray(by_rows(obs, rows) if callable(by_rows) else policy.predict(obs[rows], deterministic=True)[0])
    actions = np.full((len(obs), *acted.shape[1:]), 0.0 if continuous else HOLD_ACTION, dtype=acted.dtype)
    actions[rows] = acted
    return actions


def _multipliers(venv: PortfolioVecEnv, actions: np.ndarray) -> np.ndarray:
    """The line multipliers of a batch of actions, as ``venv.step`` would apply them."""
    multiplier = (continuous_to_multiplier if venv.continuous else discrete_to_multiplier)(actions)
    if multiplier.shape != (venv.num_envs,):
        raise ValueError(f"expected {venv.num_envs} actions, got {multiplier.shape[0]}")
    return multiplier


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(np.shape(num), np.nan), where=np.asarray(den) > 0)


def cohort_metrics(run: CohortRun) -> dict[str, np.ndarray]:
    """Metrics of a run, one value per group (all accounts, then each segment level).

    Revenue, losses and M3+ over the whole lives (window and run-off); the book's shape (line,
    utilisation, attrition) over the window, where the policy sets the lines.
    """
    total = {name: s.sum(axis=0) for name, s in run.sums.items()}
    window = {name: s[: run.window].sum(axis=0) for name, s in run.sums.items()}
    regime = {
        flag: {k: run.sums[k][run.stress == flag].sum(axis=0) for k in ("m3_balance", "balance")}
        for flag in (False, True)
    }
    return {
        "per_user_revenue": _ratio(total["revenue"], run.cohort_size),
        "credit_loss_per_user": _ratio(total["credit_loss"], run.cohort_size),
        "m3plus_rate": _ratio(total["m3_balance"], total["balance"]),
        "m3plus_rate_accounts": _ratio(total["m3_accounts"], total["open_accounts"]),
        "m3plus_rate_normal": _ratio(regime[False]["m3_balance"], regime[False]["balance"]),
        "m3plus_rate_stress": _ratio(regime[True]["m3_balance"], regime[True]["balance"]),
        "utilisation": _ratio(window["balance"], window["line"]),
        "average_line": _ratio(window["line"], window["open_accounts"]),
        "attrition_rate": _ratio(window["closures"], window["account_months"] / 12),
        "charge_off_rate": _ratio(total["charge_offs"], total["account_months"] / 12),
        "run_off_revenue": _ratio(total["revenue"] - window["revenue"], run.cohort_size),
        "run_off_left": _ratio(run.left, run.cohort_size),
    }


def monthly_table(name: str, seed: int, run: CohortRun, num_accounts: int) -> pd.DataFrame:
    """One row per month of the run (see ``agents.evaluation.Evaluation``); cohort totals, column 0."""
    s, n = run.sums, len(run.stress)
    stress = pd.array(run.stress, dtype="boolean")
    stress[run.simulated :] = pd.NA  # months after the cohort had ended were not simulated
    return pd.DataFrame(
        {
            "policy": name,
            "seed": seed,
            "month": np.arange(1, n + 1),
            "phase": np.where(np.arange(n) < run.window, "window", "run_off"),
            "revenue_per_user": s["revenue"][:, 0] / num_accounts,
            "m3plus_rate": _ratio(s["m3_balance"][:, 0], s["balance"][:, 0]),
            "m3plus_rate_accounts": _ratio(s["m3_accounts"][:, 0], s["open_accounts"][:, 0]),
            "average_line": _ratio(s["line"][:, 0], s["open_accounts"][:, 0]),
            "utilisation": _ratio(s["balance"][:, 0], s["line"][:, 0]),
            "macro_stress": stress,
        }
    )
