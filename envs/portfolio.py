"""``make_portfolio``: many accounts as one Stable-Baselines3 ``VecEnv``, vectorised with numpy.

Account i of ``make_portfolio(..., seed=s)`` is, step for step, the single ``CreditLine-v0`` env that
``DummyVecEnv(...).seed(s)`` would seed with ``s + i``: same observations, rewards and dones through
auto-resets. An account that closes, is charged off or reaches the horizon is replaced in the same step
by a newly acquired one, with ``terminal_observation`` and ``TimeLimit.truncated`` in its info.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from envs.actions import LIMIT_MULTIPLIERS, continuous_to_multiplier, discrete_to_multiplier
from envs.config import Config, resolve_config
from envs.credit_line_env import month_info
from envs.observation import observation_space, observe
from envs.simulator import Simulator


class PortfolioVecEnv(VecEnv):
    """A portfolio of ``num_accounts`` accounts; see :func:`make_portfolio`.

    After each step, ``last_info`` is a dict of arrays of shape ``(num_accounts,)`` with the keys of the
    single env's info (``reward_components`` a dict of such arrays), describing the month just simulated
    (before any replacement). The per-account ``infos`` list carries only what SB3 needs; its dicts are
    reused between steps, so copy one if you keep it.
    """

    def __init__(self, config: Config, num_accounts: int, continuous: bool = False):
        self.config = config
        self.sim = Simulator(config, num_accounts)
        self.continuous = continuous
        self.render_mode = None
        action_space = (spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32) if continuous
                        else spaces.Discrete(len(LIMIT_MULTIPLIERS)))
        super().__init__(num_accounts, observation_space(config), action_space)
        self._all = np.arange(num_accounts)
        self._actions: np.ndarray | None = None
        self._infos: list[dict[str, Any]] = [{} for _ in range(num_accounts)]
        self._dirty = np.zeros(0, dtype=np.int64)  # infos filled last step, to clear
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
            self.sim.seed_accounts(self._all, np.array([s % 2**64 for s in seeds], dtype=np.uint64))
            self.sim.restart_calendar()
            self._started = True
        else:
            self.sim.renew(self._all)
        self._reset_seeds()
        self._reset_options()
        return self._observe()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        to_multiplier = continuous_to_multiplier if self.continuous else discrete_to_multiplier
        multiplier = to_multiplier(self._actions)
        if multiplier.shape != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} actions, got {multiplier.shape[0]}")
        result = self.sim.step(multiplier)
        self.last_info = month_info(result, self.sim)
        self.last_info = {**self.last_info, "balance": self.last_info["balance"].copy(),
                          "line": self.last_info["line"].copy(),
                          "months_past_due": self.last_info["months_past_due"].copy()}
        dones = result.terminated | result.truncated
        obs = self._observe()
        for i in self._dirty:
            self._infos[i].clear()
        done_idx = np.flatnonzero(dones)
        if done_idx.size:
            terminal = obs[done_idx]  # one gather; each info gets a row of it
            for k, (i, truncated) in enumerate(zip(done_idx.tolist(), result.truncated[done_idx].tolist())):
                info = self._infos[i]
                info["terminal_observation"] = terminal[k]
                info["TimeLimit.truncated"] = truncated
            self.sim.renew(done_idx)
            obs[done_idx] = observe(self.sim.state, self.sim.stress, self.observation_space, done_idx)
        self._dirty = done_idx
        return obs, result.reward.astype(np.float32), dones, self._infos

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

    def _indices(self, indices: Any) -> Sequence[int] | Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return indices

    def _observe(self) -> np.ndarray:
        return observe(self.sim.state, self.sim.stress, self.observation_space)


def make_portfolio(preset: str | Config = "wechat", num_accounts: int = 1000, seed: int | None = None,
                   continuous: bool = False, **overrides: Any) -> PortfolioVecEnv:
    """A ``VecEnv`` over ``num_accounts`` accounts of a preset.

    Args:
        preset: preset name (``wechat``, ``alipay``, ``jd``, ``douyin``), a YAML path, or a ``Config``.
        num_accounts: accounts in the portfolio (the VecEnv's ``num_envs``).
        seed: account i is keyed on ``seed + i``; ``None`` draws fresh entropy.
        continuous: ``Box(-1, 1, (1,))`` actions as ``CreditLineContinuous-v0`` instead of ``Discrete(7)``.
        **overrides: dotted config keys (``**{"env.horizon": 24}``) or ``env__horizon=24``.
    """
    if not isinstance(num_accounts, (int, np.integer)) or num_accounts < 1:
        raise ValueError(f"num_accounts must be a positive integer, got {num_accounts!r}")
    venv = PortfolioVecEnv(resolve_config(preset, overrides), int(num_accounts), continuous)
    if seed is not None:
        venv.seed(seed)
    return venv
