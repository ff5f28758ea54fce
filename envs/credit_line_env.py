"""``CreditLine-v0`` and ``CreditLineContinuous-v0``: one account over its life, as a Gymnasium env."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.accounting import REWARD_COMPONENTS
from envs.actions import LIMIT_MULTIPLIERS, check_seed, continuous_to_multiplier, discrete_to_multiplier
from envs.config import Config, resolve_config
from envs.dynamics import MonthResult
from envs.observation import observation_space, observe
from envs.simulator import Simulator

INFO_KEYS = ("reward_components", "cost", "balance", "line", "months_past_due", "revenue")


def month_info(result: MonthResult, sim: Simulator, index: Any = slice(None)) -> dict[str, Any]:
    """The info of the month just simulated, for the accounts at ``index`` (arrays, or scalars for an int)."""
    s = sim.state
    return {
        "reward_components": {name: value[index] for name, value in result.components.items()},
        "cost": result.cost[index],
        "balance": s.balance[index],
        "line": s.line[index],
        "months_past_due": s.months_past_due[index],
        "revenue": result.revenue[index],
    }


class CreditLineEnv(gym.Env):
    """One revolving credit account, month by month, from origination to closure, charge-off or horizon.

    ## Description
    A borrower acquired from the preset's segment mix draws on a line, repays under the product's
    repayment mode, may lose a job, fall behind through the buckets M1..M5 and be charged off at six
    months past due, or close the account. Each month the lender chooses the line. Hidden traits (latent
    risk, income, credit need, revolver or transactor, employment) are never observed.

    ## Action Space
    ``Discrete(7)``: index into ``envs.LIMIT_MULTIPLIERS``; the new line is ``round(line * m, -2)``
    clipped to ``[product.min_line, product.max_line]``.

    | action | 0 | 1 | 2 | 3 | 4 | 5 | 6 |
    |---|---|---|---|---|---|---|---|
    | multiplier | 0.5 | 0.75 | 0.9 | 1.0 (hold) | 1.1 | 1.25 | 1.5 |

    ``CreditLineContinuous-v0`` takes ``Box(-1, 1, (1,))`` instead: -1 is x0.5, 0 hold, +1 x1.5, on a log scale.

    ## Observation Space
    ``Box(17,)`` float32, every entry clipped to its bounds:

    | index | name | unit | min | max | meaning |
    |---|---|---|---|---|---|
    | 0 | line | CNY | 0 | product.max_line | current credit line |
    | 1 | origination_line | CNY | 0 | product.max_line | line granted at origination |
    | 2 | balance | CNY | 0 | 2 x max_line | outstanding balance at month end |
    | 3 | utilisation | ratio | 0 | 10 | balance / line |
    | 4 | months_past_due | months | 0 | 6 | 0 current, k in bucket Mk, 6 charged off |
    | 5 | months_on_book | months | 0 | 600 | months since origination |
    | 6 | payment_ratio_1 | ratio | 0 | 1 | share of last month's statement paid |
    | 7 | payment_ratio_2 | ratio | 0 | 1 | same, two months ago |
    | 8 | payment_ratio_3 | ratio | 0 | 1 | same, three months ago |
    | 9 | behaviour_score | points | 300 | 900 | lender's score, higher is safer |
    | 10 | apr | per year | 0 | 0.36 | contract rate, inside the product's band |
    | 11 | age_band | index | 0 | 3 | 18-24, 25-35, 36-45, 46+ |
    | 12 | city_tier | index | 0 | 2 | tier1, tier2, lower |
    | 13 | thin_file | flag | 0 | 1 | thin data file (e.g. self-employed) |
    | 14 | repayment_mode | index | 0 | 2 | revolving, equal_principal, interest_first |
    | 15 | months_since_line_change | months | 0 | 600 | months since the line last changed |
    | 16 | macro_stress | flag | 0 | 1 | stress regime (public information) |

    ## Rewards
    The month's net result for the lender in CNY, the sum of ``info["reward_components"]``:
    ``interest`` + ``fees`` (penalty interest) + ``funding_cost`` + ``credit_loss`` (charge-off net of
    recovery) + ``provision_change`` (minus the change in PD x LGD x (drawn + CCF x undrawn)) +
    ``operating_cost`` + ``acquisition_cost`` (first month only, when ``accounting.book_acquisition_cost``).
    ``info["revenue"]`` is the per-user-revenue part: the reward without provisions and operating cost.
    ``info["cost"]`` is the account's M3+ balance divided by ``accounting.reference_balance``: averaged over
    a portfolio it approximates the balance-based M3+ rate, the quantity the cap constrains.

    ## Starting State
    A new account: line and APR from its score and income, zero balance (it draws in the first month).

    ## Episode End
    - Termination: charge-off (six months past due) or voluntary closure. A borrower who decides to close
      stops drawing and runs the balance off; the account leaves the book once 100 CNY or less is left
      (the observation does not flag the decision; the falling balance shows it).
    - Truncation: ``env.horizon`` months on book (36 by default).

    ## Arguments
    ``gym.make("CreditLine-v0", preset="wechat", **overrides)``: ``preset`` names a file in
    ``configs/presets`` (or a YAML path); ``config`` passes a ready ``envs.config.Config``; overrides are
    dotted config keys (``**{"env.horizon": 24}``) or ``__``-separated keywords (``env__horizon=24``).

    ## Randomness
    ``reset(seed=s)`` keys the account's counter-based stream on ``s`` and restarts the calendar (macro
    path keyed on ``macro.seed``); a later ``reset()`` acquires the next account of the same stream.
    A seed is an integer in [0, 2**63 - 1] (``envs.actions.check_seed``, the rule ``make_portfolio`` follows).

    ## Info
    ``step`` and ``reset`` return the same keys: at reset the month's flows (``reward_components``,
    ``cost``, ``revenue``) are zero and ``balance``, ``line``, ``months_past_due`` describe the new account.
    Stepping after termination or truncation raises ``RuntimeError``: call ``reset()`` first.

    ## Version History
    - v0: initial release.
    """

    metadata = {"render_modes": []}

    def __init__(
        self, preset: str = "wechat", config: Config | None = None, render_mode: str | None = None, **overrides: Any
    ):
        self.config = resolve_config(config if config is not None else preset, overrides)
        self.render_mode = render_mode
        self.sim = Simulator(self.config, 1)
        self._box = observation_space(self.config)
        self.observation_space = self._box
        self.action_space = spaces.Discrete(len(LIMIT_MULTIPLIERS))
        self._seeded = False
        self._ended = False
        self._index = np.zeros(1, dtype=np.int64)

    def _multiplier(self, action: Any) -> np.ndarray:
        return discrete_to_multiplier(np.asarray(action))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            seed = check_seed(seed)
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            account_seed = seed if seed is not None else int(self.np_random.integers(2**63))
            self.sim.seed_accounts(self._index, np.array([account_seed], dtype=np.uint64))
            self.sim.restart_calendar()
            self._seeded = True
        else:
            self.sim.renew(self._index)
        self._ended = False
        s = self.sim.state
        info = {
            "reward_components": dict.fromkeys(REWARD_COMPONENTS, 0.0),
            "cost": 0.0,
            "balance": float(s.balance[0]),
            "line": float(s.line[0]),
            "months_past_due": int(s.months_past_due[0]),
            "revenue": 0.0,
        }
        return self._observe(), info

    def step(self, action: Any):
        if not self._seeded:
            raise RuntimeError("call reset() before step()")
        if self._ended:
            raise RuntimeError("the episode has ended (terminated or truncated): call reset() before step()")
        if np.size(action) != 1:
            raise ValueError(f"expected one action for one account, got shape {np.shape(action)}: {action!r}")
        result = self.sim.step(self._multiplier(action))
        info = month_info(result, self.sim, 0)
        info = {
            **info,
            "reward_components": {k: float(v) for k, v in info["reward_components"].items()},
            "cost": float(info["cost"]),
            "balance": float(info["balance"]),
            "line": float(info["line"]),
            "months_past_due": int(info["months_past_due"]),
            "revenue": float(info["revenue"]),
        }
        terminated, truncated = bool(result.terminated[0]), bool(result.truncated[0])
        self._ended = terminated or truncated
        return (self._observe(), float(result.reward[0]), terminated, truncated, info)

    def _observe(self) -> np.ndarray:
        return observe(self.sim.state, self.sim.stress, self._box)[:, 0]


class CreditLineContinuousEnv(CreditLineEnv):
    """``CreditLine-v0`` with a ``Box(-1, 1, (1,))`` action for SAC / TD3; see :class:`CreditLineEnv`."""

    def __init__(
        self, preset: str = "wechat", config: Config | None = None, render_mode: str | None = None, **overrides: Any
    ):
        super().__init__(preset, config, render_mode, **overrides)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def _multiplier(self, action: Any) -> np.ndarray:
        return continuous_to_multiplier(action)
