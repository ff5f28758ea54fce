"""Credit-line portfolio simulator and its Gymnasium / Stable-Baselines3 faces.

``import envs`` registers ``CreditLine-v0`` and ``CreditLineContinuous-v0`` and loads numpy, Gymnasium
and pydantic only: the Stable-Baselines3 face (``make_portfolio``, ``PortfolioVecEnv``) is imported on first
use, so a user of the simulator alone never pays for torch.
"""

from typing import Any

from gymnasium.envs.registration import register, registry

from envs.actions import HOLD_ACTION, LIMIT_MULTIPLIERS
from envs.config import Config, ConfigError, available_presets, load_config
from envs.credit_line_env import CreditLineContinuousEnv, CreditLineEnv
from envs.simulator import Simulator

for _env_id, _entry in (
    ("CreditLine-v0", "envs.credit_line_env:CreditLineEnv"),
    ("CreditLineContinuous-v0", "envs.credit_line_env:CreditLineContinuousEnv"),
):
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry)

__all__ = [
    "LIMIT_MULTIPLIERS",
    "HOLD_ACTION",
    "Config",
    "ConfigError",
    "available_presets",
    "load_config",
    "CreditLineEnv",
    "CreditLineContinuousEnv",
    "PortfolioVecEnv",
    "make_portfolio",
    "Simulator",
]


_LAZY = {"PortfolioVecEnv", "make_portfolio", "StepInfos"}  # in envs.portfolio, which imports SB3 and torch


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from envs import portfolio

        return getattr(portfolio, name)
    raise AttributeError(f"module 'envs' has no attribute '{name}'")
