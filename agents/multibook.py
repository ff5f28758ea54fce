"""Training portfolios that span several macro paths, with macro and product parameters randomised.

A single portfolio follows one macro path, so the M3+ rate of a rollout swings with that path's regime
(1% to 3.5% on wechat) whatever the policy does, and a Lagrange multiplier fed by it chases noise.
:class:`MultiBookVecEnv` joins ``K`` sub-books, each a ``make_portfolio`` on its own training seed (its own
accounts and macro path), into one ``VecEnv``: every rollout pools all ``K`` paths, at different points of
their own regime cycles, and the constraint is estimated from all of them.

Domain randomisation (:func:`randomised_config`): each sub-book may also draw its own macro and product
parameters inside the ranges of :class:`agents.agent_config.Randomisation` (documented there, all assumptions around the
preset's values), so that the agent meets recessions more frequent, longer and harsher than the preset's
and prices elsewhere in the product's band, and must hold the cap under conditions it did not see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

import envs
from agents.agent_config import Randomisation
from agents.evaluation import portfolio_seed
from envs.config import Config, resolve_config
from envs.portfolio import PortfolioVecEnv


def randomised_config(config: Config, rand: Randomisation, seed: int) -> Config:
    """``config`` with the macro and product parameters drawn for training seed ``seed`` (itself if disabled)."""
    if not rand.enabled:
        return config
    rng = np.random.default_rng([rand.draw_seed, int(seed)])
    # log-uniform: a range symmetric in log (0.5-2) has median 1, so the preset is the typical draw
    u = lambda bounds: float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))  # noqa: E731
    mac, prod = config.macro, config.product
    exit_stress = min(1.0, mac.exit_stress / u(rand.stress_length))
    share = float(rng.uniform(*rand.apr_high_share))  # of the band: uniform
    return resolve_config(
        config,
        {
            "default.job_loss_rate": config.default.job_loss_rate * u(rand.job_loss),
            "macro.enter_stress": min(1.0, mac.enter_stress * u(rand.stress_frequency)),
            "macro.exit_stress": exit_stress,
            "macro.stress_job_loss_multiplier": mac.stress_job_loss_multiplier * u(rand.stress_job_loss),
            "product.apr_high": prod.apr_low + share * (prod.apr_high - prod.apr_low),
        },
    )


class MultiBookVecEnv(VecEnv):
    """``K`` portfolios side by side as one VecEnv: slots ``[j x n, (j + 1) x n)`` are sub-book ``j``.

    ``last_info`` joins the sub-books' ``last_info`` (what :class:`agents.lagrangian.CostPenaltyVecEnv`
    reads); ``books`` are the sub-books (each with its own ``sim``).

    Args:
        books: the sub-books, all of one observation and action space.
    """

    def __init__(self, books: Sequence[PortfolioVecEnv]):
        if not books:
            raise ValueError("a multi-book portfolio needs at least one sub-book")
        self.books = list(books)
        first = self.books[0]
        self.render_mode = None
        super().__init__(sum(b.num_envs for b in self.books), first.observation_space, first.action_space)
        self._bounds = np.cumsum([0] + [b.num_envs for b in self.books])
        self._actions: np.ndarray | None = None
        self.last_info: dict[str, Any] = {}

    def reset(self) -> np.ndarray:
        return np.concatenate([b.reset() for b in self.books])

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        if self._actions is None:
            raise RuntimeError("step_async must come before step_wait")
        parts = [
            b.step(self._actions[lo:hi])
            for b, lo, hi in zip(self.books, self._bounds[:-1], self._bounds[1:], strict=True)
        ]
        obs = np.concatenate([p[0] for p in parts])
        rewards = np.concatenate([p[1] for p in parts])
        dones = np.concatenate([p[2] for p in parts])
        infos = [info for p in parts for info in p[3]]
        self.last_info = _join([b.last_info for b in self.books])
        return obs, rewards, dones, infos

    def close(self) -> None:
        for b in self.books:
            b.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list:
        raise NotImplementedError("a portfolio has no per-account env objects to call methods on")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices: Any) -> Sequence[int] | range:
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else indices


def _join(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate dicts of per-account arrays (nested dicts key by key)."""
    out: dict[str, Any] = {}
    for key, value in infos[0].items():
        if isinstance(value, dict):
            out[key] = _join([i[key] for i in infos])
        else:
            out[key] = np.concatenate([np.broadcast_to(i[key], np.shape(i[key])) for i in infos])
    return out


def make_multibook(
    config: Config,
    seeds: Sequence[int],
    accounts_per_book: int,
    continuous: bool = False,
    randomisation: Randomisation | None = None,
    offset: int = 0,
) -> MultiBookVecEnv:
    """One sub-book per training seed label: its accounts (``portfolio_seed(seed) + offset``), its macro path
    (``macro.seed = seed``) and, if enabled, its own randomised parameters.

    Args:
        config: the preset.
        seeds: training seed labels, one per sub-book (keep them apart from tuning and evaluation seeds).
        accounts_per_book: accounts in each sub-book.
        continuous: Box actions.
        randomisation: per-sub-book parameter draws (None: the preset as it is).
        offset: added to every sub-book's account keys (a resumed run continues with unseen accounts).
    """
    rand = randomisation or Randomisation()
    books = []
    for seed in seeds:
        book_config = randomised_config(resolve_config(config, {"macro.seed": int(seed)}), rand, int(seed))
        books.append(
            envs.make_portfolio(
                book_config, accounts_per_book, seed=portfolio_seed(int(seed)) + offset, continuous=continuous
            )
        )
    return MultiBookVecEnv(books)
