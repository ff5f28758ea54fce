"""Credit-line portfolio simulator and its Gymnasium / Stable-Baselines3 faces.

``import envs`` registers ``CreditLine-v0`` and ``CreditLineContinuous-v0``.
"""

from gymnasium.envs.registration import register, registry

from envs.actions import HOLD_ACTION, LIMIT_MULTIPLIERS
from envs.config import Config, ConfigError, available_presets, load_config
from envs.credit_line_env import CreditLineContinuousEnv, CreditLineEnv
from envs.portfolio import PortfolioVecEnv, make_portfolio
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
