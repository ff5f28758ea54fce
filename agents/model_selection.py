"""Model selection during training: checkpoints scored on the tuning seeds by the evaluator itself.

The last checkpoint of a run is whatever the optimiser and the multiplier happened to leave; the agent
kept is instead the checkpoint with the highest per-user revenue among those whose mean pooled M3+ rate on
the *tuning* seeds meets the cap, measured by :func:`agents.evaluation.evaluate` exactly as the final
comparison measures it (on other seeds). If no checkpoint meets the cap, the one with the lowest M3+ rate
is kept, with a warning in the table's ``kept`` column. The evaluation seeds are never used here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecNormalize

from agents.evaluation import evaluate
from envs.config import Config


class _CurrentPolicy:
    """The policy being trained, with the current observation statistics: ``predict`` on raw observations."""

    def __init__(self, model: Any, vecnorm: VecNormalize):
        self.model, self.vecnorm = model, vecnorm
        self.observation_space, self.action_space = model.observation_space, model.action_space

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        normalised = np.asarray(self.vecnorm.normalize_obs(np.asarray(observation, dtype=np.float32)), np.float32)
        return self.model.predict(normalised, state, episode_start, deterministic)


class SelectionCallback(BaseCallback):
    """Every ``every`` timesteps (at a rollout start) and at the end, score the policy on ``seeds``.

    Args:
        vecnorm: the training ``VecNormalize`` (its current statistics are the policy's input scaling).
        config: the preset (its ``env.m3plus_cap`` is the cap).
        seeds: tuning seed labels.
        accounts: accounts per tuning portfolio.
        every: [timesteps] between checks.
    """

    def __init__(self, vecnorm: VecNormalize, config: Config, seeds: Sequence[int], accounts: int, every: int):
        super().__init__()
        self.vecnorm, self.config, self.seeds = vecnorm, config, list(seeds)
        self.accounts, self.every = accounts, every
        self.rows: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None  # policy state_dict, obs statistics, step, metrics
        self._last = 0

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps

    def _on_rollout_start(self) -> None:
        if self.num_timesteps - self._last >= self.every:
            self.check()
            self._last = self.num_timesteps

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if not self.rows or self.rows[-1]["timesteps"] != self.num_timesteps:
            self.check()

    def check(self) -> None:
        """Score the current policy on the tuning seeds; keep it if it is the best meeting the cap so far."""
        summary = evaluate(
            {"candidate": _CurrentPolicy(self.model, self.vecnorm)},
            self.config,
            self.accounts,
            self.seeds,
            progress=False,
            reference=None,
            n_boot=10,
        ).summary.iloc[0]
        cap = self.config.env.m3plus_cap
        revenue, m3 = float(summary["per_user_revenue"]), float(summary["m3plus_rate"])
        meets = m3 <= cap
        better = self.best is None or (
            (meets, revenue if meets else -m3) > (self.best["meets_cap"], self.best["score"])
        )
        if better:
            self.best = {
                "policy": copy.deepcopy(self.model.policy.state_dict()),
                "obs_rms": copy.deepcopy(self.vecnorm.obs_rms),
                "timesteps": int(self.num_timesteps),
                "meets_cap": meets,
                "score": revenue if meets else -m3,
            }
        self.logger.record("tuning/per_user_revenue", revenue)
        self.logger.record("tuning/m3plus_rate", m3)
        self.rows.append(
            {"timesteps": int(self.num_timesteps), "per_user_revenue": revenue, "m3plus_rate": m3, "meets_cap": meets}
        )

    def restore_best(self) -> dict[str, Any]:
        """Put the kept policy back into the model and its statistics into ``vecnorm``; what was kept."""
        if self.best is None:
            raise RuntimeError("no checkpoint was scored")
        self.model.policy.load_state_dict(self.best["policy"])
        self.vecnorm.obs_rms = copy.deepcopy(self.best["obs_rms"])
        return {"timesteps": self.best["timesteps"], "meets_cap": self.best["meets_cap"]}

    def table(self) -> pd.DataFrame:
        """One row per check, ``kept`` marking the checkpoint kept."""
        table = pd.DataFrame(self.rows)
        table["kept"] = table["timesteps"] == (self.best or {}).get("timesteps")
        return table
