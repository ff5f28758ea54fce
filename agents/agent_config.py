"""The agents' configuration: the schema of ``configs/agents/<algo>.yaml`` and how it is read.

Each file holds one algorithm's training settings, policy, hyperparameters and M3+ constraint, with an
optional ``presets.<name>`` section merged in for one preset. Values are validated strictly (unknown keys
and impossible values are errors naming the key); any value can be overridden with a dotted key.
No torch or Stable-Baselines3 here: reading a config is cheap (``agents.training`` trains with it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.lagrangian import ConstraintConfig
from envs.config import CONFIG_DIR, ConfigError, available_presets, read_yaml

ALGORITHM_NAMES = ("ppo", "a2c", "dqn", "sac")
CONTINUOUS = {"sac"}  # algorithms that act on CreditLineContinuous-v0's Box(-1, 1, (1,))
AGENT_CONFIG_DIR = CONFIG_DIR / "agents"


class _Section(BaseModel):
    # Lax types (numbers from --agent-set arrive as YAML, "1e-4" as a string), but no unknown keys.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Randomisation(_Section):
    """Domain randomisation of the sub-books (``training.randomisation``; see agents.multibook).

    Multipliers scale the preset's value, drawn log-uniformly in ``[low, high]`` once per sub-book (ranges
    symmetric in log, so the preset is the median draw; measured: ranges with means above 1 made the
    training books harsher than the preset, where even holding broke the cap); all ranges are
    assumptions, wide enough to include recessions twice as frequent and twice as long as the preset's.
    ``apr_high_share``: the product's top APR moves to ``apr_low + share x (apr_high - apr_low)``, so every
    price stays inside the document's band (DOMAIN.md section 1).
    """

    enabled: bool = False
    job_loss: tuple[float, float] = (0.75, 1.333)  # x default.job_loss_rate
    stress_frequency: tuple[float, float] = (0.5, 2.0)  # x macro.enter_stress
    stress_length: tuple[float, float] = (0.5, 2.0)  # x mean months in stress (1 / macro.exit_stress)
    stress_job_loss: tuple[float, float] = (0.8, 1.25)  # x macro.stress_job_loss_multiplier
    apr_high_share: tuple[float, float] = (0.7, 1.0)  # of the band above apr_low
    draw_seed: int = Field(0, ge=0)  # seed of the draws (with the sub-book's training seed)


class TrainingSettings(_Section):
    num_accounts: int = Field(ge=1)  # parallel envs: accounts in the training portfolio
    total_timesteps: int = Field(ge=1)  # [account-months] default budget
    normalize_obs: bool = True
    normalize_reward: bool = True
    clip_obs: float = Field(10.0, gt=0)  # [sd]
    checkpoint_every: int = Field(ge=1)  # [timesteps]
    keep_checkpoints: int = Field(2, ge=1)
    torch_threads: int = Field(1, ge=1)  # 1: on 2 cores a second thread mostly waits (see the README)
    horizon_is_terminal: bool = True  # see agents.lagrangian.CostPenaltyVecEnv
    objective: Literal["reward", "revenue"] = "revenue"  # idem: env reward or per-user revenue
    # Several macro paths per rollout (agents.multibook): the accounts are split over this many sub-books,
    # each on its own training seed, when train() is given that many book seeds.
    sub_books: int = Field(1, ge=1)
    randomisation: Randomisation = Randomisation()
    # Model selection (train() given tuning seeds): every this many timesteps the current policy is
    # evaluated on the tuning seeds by agents.evaluation.evaluate; the best meeting the cap is kept.
    selection_every: int = Field(1_000_000, ge=1)  # [account-months]
    selection_accounts: int = Field(2000, ge=1)  # accounts per tuning portfolio


class PolicySettings(_Section):
    net_arch: list[int] = Field(min_length=1)
    activation: Literal["tanh", "relu"] = "tanh"
    # Start from the bank's status quo: this logit is added to "hold" in the initial policy (PPO and A2C),
    # so early exploration perturbs a sensible book instead of cutting lines at random (a random policy
    # churns a third of the book a year through cut-driven closures).
    hold_bias: float = Field(0.0, ge=0.0)


class _OnPolicyHyper(_Section):  # what PPO and A2C share
    learning_rate: float = Field(gt=0)
    n_steps: int = Field(ge=1)  # [months] per account per rollout
    gamma: float = Field(gt=0, le=1)  # per month
    gae_lambda: float = Field(ge=0, le=1)
    ent_coef: float = Field(ge=0)
    vf_coef: float = Field(ge=0)
    max_grad_norm: float = Field(gt=0)


class PPOHyper(_OnPolicyHyper):
    batch_size: int = Field(ge=2)
    n_epochs: int = Field(ge=1)
    clip_range: float = Field(gt=0)
    target_kl: float | None = None


class A2CHyper(_OnPolicyHyper):
    normalize_advantage: bool = False


class _OffPolicyHyper(_Section):  # what DQN and SAC share
    learning_rate: float = Field(gt=0)
    buffer_size: int = Field(ge=1)  # [transitions]
    learning_starts: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    tau: float = Field(gt=0, le=1)
    gamma: float = Field(gt=0, le=1)
    train_freq: int = Field(ge=1)  # [vec steps], each n accounts
    gradient_steps: int = Field(ge=1)


class DQNHyper(_OffPolicyHyper):
    target_update_interval: int = Field(ge=1)
    exploration_fraction: float = Field(gt=0, le=1)
    exploration_initial_eps: float = Field(ge=0, le=1)
    exploration_final_eps: float = Field(ge=0, le=1)
    max_grad_norm: float = Field(gt=0)


class SACHyper(_OffPolicyHyper):
    ent_coef: str | float = "auto"


class AgentConfig(_Section):
    """One ``configs/agents/<algo>.yaml`` after its preset section is merged in."""

    algo: Literal["ppo", "a2c", "dqn", "sac"]
    training: TrainingSettings
    policy: PolicySettings
    hyperparameters: PPOHyper | A2CHyper | DQNHyper | SACHyper
    constraint: ConstraintConfig = ConstraintConfig()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


_HYPER: dict[str, type[_Section]] = {"ppo": PPOHyper, "a2c": A2CHyper, "dqn": DQNHyper, "sac": SACHyper}
_SECTIONS = ("training", "policy", "hyperparameters", "constraint")


def check_algo(algo: object) -> str:
    """``algo`` if it is one of ALGORITHM_NAMES, else a ConfigError listing them."""
    if not isinstance(algo, str) or algo not in ALGORITHM_NAMES:
        raise ConfigError(f"unknown algorithm '{algo}'; choose one of {', '.join(ALGORITHM_NAMES)}")
    return algo


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, nested sections key by key (a new dict; inputs untouched)."""
    merged = dict(base)
    for key, value in update.items():
        merged[key] = (
            deep_merge(merged[key], value)
            if isinstance(value, Mapping) and isinstance(merged.get(key), dict)
            else value
        )
    return merged


def _set_key(data: dict[str, Any], key: str, value: Any) -> None:
    """Dotted ``section.field``, or a bare field name found in exactly one section."""
    parts = key.split(".")
    if len(parts) == 1:
        owners = [s for s in _SECTIONS if key in _field_names(data["algo"], s)]
        if len(owners) != 1:
            raise ConfigError(
                f"unknown agent config key '{key}'; use section.field with a section in "
                f"{list(_SECTIONS)}, e.g. hyperparameters.learning_rate"
            )
        parts = [owners[0], key]
    section, *rest = parts
    if section not in _SECTIONS or len(rest) != 1 or rest[0] not in _field_names(data["algo"], section):
        allowed = sorted(_field_names(data["algo"], section)) if section in _SECTIONS else list(_SECTIONS)
        raise ConfigError(
            f"unknown agent config key '{key}' for {data['algo']}; allowed in "
            f"{section if section in _SECTIONS else 'the top level'}: {allowed}"
        )
    data.setdefault(section, {})[rest[0]] = value


def _field_names(algo: str, section: str) -> set[str]:
    models: dict[str, type[BaseModel]] = {
        "training": TrainingSettings,
        "policy": PolicySettings,
        "constraint": ConstraintConfig,
        "hyperparameters": _HYPER[algo],
    }
    return set(models[section].model_fields)


def validate_agent_config(data: Mapping[str, Any], source: str) -> AgentConfig:
    """The AgentConfig of ``data``, or one ConfigError listing every invalid key (``source`` names the file)."""
    algo = check_algo(data.get("algo"))
    errors: list[str] = []
    try:
        hyper = _HYPER[algo].model_validate(data.get("hyperparameters", {}))
    except ValidationError as exc:
        errors += _describe(exc, "hyperparameters.")
        hyper = None
    try:
        config = AgentConfig.model_validate({**data, "hyperparameters": hyper or _HYPER[algo].model_construct()})
    except ValidationError as exc:
        errors += _describe(exc, "")
    if errors:
        raise ConfigError("\n".join([f"invalid agent config ({source}):", *errors]))
    return config


def _describe(exc: ValidationError, prefix: str) -> list[str]:
    lines = []
    for err in exc.errors():
        key = prefix + ".".join(str(p) for p in err["loc"])
        shown = "missing" if err["type"] == "missing" else repr(err.get("input"))
        lines.append(f"  {key} = {shown}: {err['msg']}")
    return lines


def load_agent_config(
    algo: str, preset: str | None = None, overrides: Mapping[str, Any] | None = None, path: str | Path | None = None
) -> AgentConfig:
    """Read ``configs/agents/<algo>.yaml``, merge its ``presets.<preset>`` section, apply overrides, validate.

    Args:
        algo: ppo, a2c, dqn or sac.
        preset: the env preset's name (``config.name``); its section, if the file has one, is merged in.
        overrides: ``{"hyperparameters.learning_rate": 1e-4, "n_steps": 64, ...}``: dotted keys, or a bare
            field name that exists in one section only.
        path: another YAML file instead of ``configs/agents/<algo>.yaml``.
    """
    check_algo(algo)
    path = Path(path) if path is not None else AGENT_CONFIG_DIR / f"{algo}.yaml"
    data = read_yaml(path)
    if data.get("algo") != algo:
        raise ConfigError(f"{path} is for algo '{data.get('algo')}', expected '{algo}'")
    presets = data.pop("presets", None) or {}
    unknown = sorted(set(presets) - set(available_presets()))
    if unknown:
        raise ConfigError(f"{path}: presets section names unknown presets {unknown}; available: {available_presets()}")
    for name, section in presets.items():  # validate every preset's section, not only the one used
        validate_agent_config(deep_merge(data, section or {}), f"{path.name}, preset '{name}'")
    if preset in presets:
        data = deep_merge(data, presets[preset] or {})
    for key, value in (overrides or {}).items():
        _set_key(data, key, value)
    return validate_agent_config(
        data,
        f"{path.name}"
        + (f", preset '{preset}'" if preset in presets else "")
        + (" with overrides" if overrides else ""),
    )
