"""``make_portfolio``: many accounts as one Stable-Baselines3 ``VecEnv``, vectorised with numpy.

Account i of ``make_portfolio(..., seed=s)`` is, step for step, the single ``CreditLine-v0`` env that
``DummyVecEnv(...).seed(s)`` would seed with ``s + i``: same observations, rewards and dones through
auto-resets. An account that closes, is charged off or reaches the horizon is replaced in the same step
by a newly acquired one, with ``terminal_observation`` and ``TimeLimit.truncated`` in its info.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from envs.accounting import REWARD_COMPONENTS
from envs.actions import (
    LIMIT_MULTIPLIERS,
    check_num_accounts,
    check_seed,
    continuous_to_multiplier,
    discrete_to_multiplier,
)
from envs.config import Config, resolve_config
from envs.credit_line_env import month_info
from envs.observation import observation_space, observe
from envs.simulator import Simulator


class _NoInfo(dict):
    """The info of an account that did not end this step: empty, shared by all such accounts, read-only.

    Shared so that a step does not build a dict per account; read-only so that a write meant for one
    account cannot silently reach all of them (per-account values belong in ``venv.last_info``). Copies
    and pickles are ordinary empty dicts.
    """

    __slots__ = ()

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            "this account did not end this step: its info is a shared read-only empty dict; "
            "per-account values are in venv.last_info"
        )

    __setitem__ = __delitem__ = setdefault = update = pop = popitem = clear = __ior__ = _read_only  # type: ignore[assignment]

    def __reduce__(self):
        return dict, ()

    def __copy__(self) -> dict:
        return {}

    def __deepcopy__(self, memo: dict) -> dict:
        return {}


_NO_INFO = _NoInfo()


class PortfolioVecEnv(VecEnv):
    """A portfolio of ``num_accounts`` accounts; see :func:`make_portfolio`.

    After each step, ``last_info`` is a dict of arrays of shape ``(num_accounts,)`` with the keys of the
    single env's info (``reward_components`` a dict of such arrays), describing the month just simulated
    (before any replacement); after ``reset`` it has the same keys, the flows zero;
    ``reward_components["operating_cost"]`` is a read-only row of one value.
    The per-account ``infos`` (a :class:`StepInfos` sequence, new each step)
    carry only what SB3 needs: a dict with ``terminal_observation`` and ``TimeLimit.truncated`` for each
    account that ended, and for the others one shared read-only empty dict (writing into it raises).
    """

    def __init__(self, config: Config, num_accounts: int, continuous: bool = False):
        self.config = config
        self.sim = Simulator(config, num_accounts)
        self.continuous = continuous
        self.render_mode = None
        action_space = (
            spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
            if continuous
            else spaces.Discrete(len(LIMIT_MULTIPLIERS))
        )
        self._box = observation_space(config)  # the Box itself (VecEnv types it as any Space)
        super().__init__(num_accounts, self._box, action_space)
        self._all = np.arange(num_accounts)
        self._actions: np.ndarray | None = None
        # Accounts that did not end share one read-only empty info (a copy of this list is one pointer each).
        self._blank_infos: list[Any] = [_NO_INFO] * num_accounts
        self._started = False
        self.last_info: dict[str, Any] = {}

    # -- VecEnv API ---------------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        seeds = self._seeds
        if seeds[0] is not None or not self._started:
            if seeds[0] is None:
                base = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
                seeds = [base + i for i in range(self.num_envs)]
            # Seeds come from VecEnv.seed() as seed + index: account i gets seed + i.
            self.sim.seed_accounts(self._all, np.array(seeds, dtype=np.uint64))
            self.sim.restart_calendar()
            self._started = True
        else:
            self.sim.renew(self._all)
        self._reset_seeds()
        self._reset_options()
        # the keys of a step's last_info: no month simulated yet (flows zero), the accounts as they start
        s, zeros = self.sim.state, np.zeros(self.num_envs)
        self.last_info = {
            "reward_components": {name: zeros.copy() for name in REWARD_COMPONENTS},
            "cost": zeros.copy(),
            "balance": s.balance.copy(),
            "line": s.line.copy(),
            "months_past_due": s.months_past_due.copy(),
            "revenue": zeros.copy(),
        }
        return self._observe()

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        """Key account i on ``seed + i`` at the next reset; a seed follows ``envs.actions.check_seed``."""
        return super().seed(None if seed is None else check_seed(seed))

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        to_multiplier = continuous_to_multiplier if self.continuous else discrete_to_multiplier
        if self._actions is None:
            raise RuntimeError("call step_async(actions) before step_wait()")
        multiplier = to_multiplier(self._actions)
        if multiplier.shape != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} actions, got {multiplier.shape[0]}")
        result = self.sim.step(multiplier)
        info = month_info(result, self.sim)
        # renew() below overwrites the state arrays in place: keep the month's values
        self.last_info = {
            **info,
            "balance": info["balance"].copy(),
            "line": info["line"].copy(),
            "months_past_due": info["months_past_due"].copy(),
        }
        dones = result.terminated | result.truncated
        done_idx = np.flatnonzero(dones)
        # The last observation of each account that ended, then its replacement, then everyone's.
        terminal = observe(self.sim.state, self.sim.stress, self._box, done_idx).T
        if done_idx.size:
            self.sim.renew(done_idx)
        infos = StepInfos(self._blank_infos, done_idx, terminal, result.truncated[done_idx])
        return self._observe(), result.reward.astype(np.float32), dones, infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list:
        raise NotImplementedError("a portfolio has no per-account env objects to call methods on")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices: Any) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return indices

    def _observe(self) -> np.ndarray:
        return observe(self.sim.state, self.sim.stress, self._box).T


class StepInfos(Sequence):
    """One step's per-account infos as SB3 reads them (``infos[i]``, iteration, slices), built on first read.

    An account that ended has ``{"terminal_observation": ..., "TimeLimit.truncated": ...}``; every other
    account shares one read-only empty dict. Building a dict per ended account is a Python loop, so it
    waits until someone reads the infos: SB3's algorithms do, code that reads ``last_info`` need not.
    The dicts, once built, are kept: wrappers that edit them in place (``VecNormalize``) see their edits.
    """

    __slots__ = ("_blank", "_ended", "_terminal", "_truncated", "_items")

    def __init__(self, blank: list[Any], ended: np.ndarray, terminal: np.ndarray, truncated: np.ndarray):
        self._blank, self._ended, self._terminal, self._truncated = blank, ended, terminal, truncated
        self._items: list[Any] | None = None

    def _built(self) -> list[Any]:
        if self._items is None:
            items = self._blank.copy()
            # What is built here holds no reference cycles: pausing the cyclic collector, which would
            # otherwise run every few hundred new objects, makes the build about a third faster.
            collecting = gc.isenabled()
            gc.disable()
            try:
                ended = zip(self._ended.tolist(), self._terminal, self._truncated.tolist(), strict=True)
                for i, final_obs, truncated in ended:
                    items[i] = {"terminal_observation": final_obs, "TimeLimit.truncated": truncated}
            finally:
                if collecting:
                    gc.enable()
            self._items = items
        return self._items

    def __getitem__(self, index):
        return self._built()[index]

    def __len__(self) -> int:
        return len(self._blank)

    def __iter__(self):
        return iter(self._built())

    def __repr__(self) -> str:
        return f"StepInfos({len(self)} accounts, {len(self._ended)} ended)"

    def __reduce__(self):  # pickles and deep-copies as the plain list it stands for
        return list, (self._built(),)


def make_portfolio(
    preset: str | Config = "wechat",
    num_accounts: int = 1000,
    seed: int | None = None,
    continuous: bool = False,
    **overrides: Any,
) -> PortfolioVecEnv:
    """A ``VecEnv`` over ``num_accounts`` accounts of a preset.

    Args:
        preset: preset name (``wechat``, ``alipay``, ``jd``, ``douyin``), a YAML path, or a ``Config``.
        num_accounts: accounts in the portfolio (the VecEnv's ``num_envs``).
        seed: account i is keyed on ``seed + i``; ``None`` draws fresh entropy. An integer in
            [0, 2**63 - 1], as for ``CreditLine-v0`` (``envs.actions.check_seed``); anything else raises.
        continuous: ``Box(-1, 1, (1,))`` actions as ``CreditLineContinuous-v0`` instead of ``Discrete(7)``.
        **overrides: dotted config keys (``**{"env.horizon": 24}``) or ``env__horizon=24``.
    """
    venv = PortfolioVecEnv(resolve_config(preset, overrides), check_num_accounts(num_accounts), continuous)
    if seed is not None:
        venv.seed(seed)
    return venv
