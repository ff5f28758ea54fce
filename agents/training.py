"""Training Stable-Baselines3 agents on a portfolio under the M3+ cap, and loading them back.

``train`` builds ``make_portfolio`` (one account per parallel env) -> ``VecMonitor`` -> the cost penalty of
:mod:`agents.lagrangian` -> ``VecNormalize`` (observations mix CNY lines with 0/1 flags; rewards are tens
of CNY), and trains PPO (default), A2C or DQN on ``CreditLine-v0`` actions, or SAC on the continuous
variant. Hyperparameters live in ``configs/agents/<algo>.yaml`` (schema: :class:`AgentConfig`). Files, in
``<run_dir>/agents/<algo>/``:

    model.zip, vecnormalize.pkl, constraint.json   the final agent (observation statistics and lambda too)
    agent_config.yaml, training.json, env_config.yaml   what was trained, with which seeds
    checkpoints/{model,vecnormalize,constraint}_<step>  periodic, written atomically, constraint last
    progress.csv, events.out.tfevents.*            SB3 logger: timesteps, revenue, cost, m3plus_rate, lambda

Seeds: training seed ``s`` uses the account block ``agents.evaluation.portfolio_seed(s)`` and macro path
``s``, the same mapping the evaluator uses, so disjoint seed labels give disjoint accounts and macro paths.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import Any, Literal, Mapping, NamedTuple

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from stable_baselines3 import A2C, DQN, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize
from tqdm.auto import tqdm

import envs
from agents.evaluation import portfolio_seed
from agents.lagrangian import (CONSTRAINTS, ConstraintConfig, CostPenaltyVecEnv, LagrangianCallback, LambdaHolder,
                               make_controller)
from agents.results import atomic_write, write_json, write_yaml
from envs.config import CONFIG_DIR, Config, ConfigError, available_presets, read_yaml, resolve_config

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN, "sac": SAC}
CONTINUOUS = {"sac"}  # algorithms that act on CreditLineContinuous-v0's Box(-1, 1, (1,))
AGENT_CONFIG_DIR = CONFIG_DIR / "agents"
DEFAULT_TRAINING_SEED = 1000


# -- configuration ------------------------------------------------------------------------------------
class _Section(BaseModel):
    # Lax types (numbers from --agent-set arrive as YAML, "1e-4" as a string), but no unknown keys.
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class PolicySettings(_Section):
    net_arch: list[int] = Field(min_length=1)
    activation: Literal["tanh", "relu"] = "tanh"
    # Start from the bank's status quo: this logit is added to "hold" in the initial policy (PPO and A2C),
    # so early exploration perturbs a sensible book instead of cutting lines at random (a random policy
    # churns a third of the book a year through cut-driven closures).
    hold_bias: float = Field(0.0, ge=0.0)


class PPOHyper(_Section):
    learning_rate: float = Field(gt=0)
    n_steps: int = Field(ge=1)  # [months] per account per rollout
    batch_size: int = Field(ge=2)
    n_epochs: int = Field(ge=1)
    gamma: float = Field(gt=0, le=1)  # per month
    gae_lambda: float = Field(ge=0, le=1)
    clip_range: float = Field(gt=0)
    ent_coef: float = Field(ge=0)
    vf_coef: float = Field(ge=0)
    max_grad_norm: float = Field(gt=0)
    target_kl: float | None = None


class A2CHyper(_Section):
    learning_rate: float = Field(gt=0)
    n_steps: int = Field(ge=1)
    gamma: float = Field(gt=0, le=1)
    gae_lambda: float = Field(ge=0, le=1)
    ent_coef: float = Field(ge=0)
    vf_coef: float = Field(ge=0)
    max_grad_norm: float = Field(gt=0)
    normalize_advantage: bool = False


class DQNHyper(_Section):
    learning_rate: float = Field(gt=0)
    buffer_size: int = Field(ge=1)  # [transitions]
    learning_starts: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    tau: float = Field(gt=0, le=1)
    gamma: float = Field(gt=0, le=1)
    train_freq: int = Field(ge=1)  # [vec steps], each n accounts
    gradient_steps: int = Field(ge=1)
    target_update_interval: int = Field(ge=1)
    exploration_fraction: float = Field(gt=0, le=1)
    exploration_initial_eps: float = Field(ge=0, le=1)
    exploration_final_eps: float = Field(ge=0, le=1)
    max_grad_norm: float = Field(gt=0)


class SACHyper(_Section):
    learning_rate: float = Field(gt=0)
    buffer_size: int = Field(ge=1)
    learning_starts: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    tau: float = Field(gt=0, le=1)
    gamma: float = Field(gt=0, le=1)
    train_freq: int = Field(ge=1)
    gradient_steps: int = Field(ge=1)
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


_HYPER = {"ppo": PPOHyper, "a2c": A2CHyper, "dqn": DQNHyper, "sac": SACHyper}
_SECTIONS = ("training", "policy", "hyperparameters", "constraint")


def _check_algo(algo: str) -> str:
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm '{algo}'; choose one of {', '.join(ALGORITHMS)}")
    return algo


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, Mapping) and isinstance(
            merged.get(key), dict) else value
    return merged


def _set_key(data: dict[str, Any], key: str, value: Any) -> None:
    """Dotted ``section.field``, or a bare field name found in exactly one section."""
    parts = key.split(".")
    if len(parts) == 1:
        owners = [s for s in _SECTIONS if key in _field_names(data["algo"], s)]
        if len(owners) != 1:
            raise ConfigError(f"unknown agent config key '{key}'; use section.field with a section in "
                              f"{list(_SECTIONS)}, e.g. hyperparameters.learning_rate")
        parts = [owners[0], key]
    section, *rest = parts
    if section not in _SECTIONS or len(rest) != 1 or rest[0] not in _field_names(data["algo"], section):
        allowed = sorted(_field_names(data["algo"], section)) if section in _SECTIONS else list(_SECTIONS)
        raise ConfigError(f"unknown agent config key '{key}' for {data['algo']}; allowed in "
                          f"{section if section in _SECTIONS else 'the top level'}: {allowed}")
    data.setdefault(section, {})[rest[0]] = value


def _field_names(algo: str, section: str) -> set[str]:
    model = {"training": TrainingSettings, "policy": PolicySettings, "constraint": ConstraintConfig,
             "hyperparameters": _HYPER[algo]}[section]
    return set(model.model_fields)


def _validate(data: Mapping[str, Any], source: str) -> AgentConfig:
    algo = _check_algo(data.get("algo"))
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


def load_agent_config(algo: str, preset: str | None = None, overrides: Mapping[str, Any] | None = None,
                      path: str | Path | None = None) -> AgentConfig:
    """Read ``configs/agents/<algo>.yaml``, merge its ``presets.<preset>`` section, apply overrides, validate.

    Args:
        algo: ppo, a2c, dqn or sac.
        preset: the env preset's name (``config.name``); its section, if the file has one, is merged in.
        overrides: ``{"hyperparameters.learning_rate": 1e-4, "n_steps": 64, ...}``: dotted keys, or a bare
            field name that exists in one section only.
        path: another YAML file instead of ``configs/agents/<algo>.yaml``.
    """
    _check_algo(algo)
    path = Path(path) if path is not None else AGENT_CONFIG_DIR / f"{algo}.yaml"
    data = read_yaml(path)
    if data.get("algo") != algo:
        raise ConfigError(f"{path} is for algo '{data.get('algo')}', expected '{algo}'")
    presets = data.pop("presets", None) or {}
    unknown = sorted(set(presets) - set(available_presets()))
    if unknown:
        raise ConfigError(f"{path}: presets section names unknown presets {unknown}; "
                          f"available: {available_presets()}")
    for name, section in presets.items():  # validate every preset's section, not only the one used
        _validate(_merge(data, section or {}), f"{path.name}, preset '{name}'")
    if preset in presets:
        data = _merge(data, presets[preset] or {})
    for key, value in (overrides or {}).items():
        _set_key(data, key, value)
    return _validate(data, f"{path.name}" + (f", preset '{preset}'" if preset in presets else "")
                     + (" with overrides" if overrides else ""))


# -- files --------------------------------------------------------------------------------------------
class AgentPaths(NamedTuple):
    folder: Path
    model: Path
    vecnormalize: Path
    constraint: Path
    checkpoints: Path
    progress: Path


def agent_paths(run_dir: str | Path, algo: str) -> AgentPaths:
    """Where ``train`` writes algorithm ``algo`` of the run at ``run_dir``."""
    folder = Path(run_dir) / "agents" / algo
    return AgentPaths(folder, folder / "model.zip", folder / "vecnormalize.pkl", folder / "constraint.json",
                      folder / "checkpoints", folder / "progress.csv")


def _save_agent(model: BaseAlgorithm, vecnorm: VecNormalize, controller: Any, model_path: Path,
                vecnorm_path: Path, constraint_path: Path) -> None:
    """Model, observation statistics, then lambda state (the last file marks a complete save)."""
    buffer = io.BytesIO()
    model.save(buffer)
    atomic_write(model_path, lambda f: f.write(buffer.getvalue()))
    atomic_write(vecnorm_path, lambda f: pickle.dump(vecnorm, f))
    write_json(constraint_path, {**controller.state_dict(), "num_timesteps": int(model.num_timesteps)})


def _checkpoint_files(folder: Path, step: int) -> tuple[Path, Path, Path]:
    return (folder / f"model_{step}.zip", folder / f"vecnormalize_{step}.pkl", folder / f"constraint_{step}.json")


def latest_checkpoint(folder: str | Path) -> int | None:
    """The step of the newest complete checkpoint in ``folder`` (None if there is none)."""
    steps = []
    for marker in Path(folder).glob("constraint_*.json"):
        step = marker.stem.removeprefix("constraint_")
        if step.isdigit() and all(p.is_file() for p in _checkpoint_files(Path(folder), int(step))):
            steps.append(int(step))
    return max(steps, default=None)


def save_checkpoint(folder: Path, model: BaseAlgorithm, vecnorm: VecNormalize, controller: Any,
                    keep: int) -> int:
    """Write a checkpoint at the model's step; keep the newest ``keep``. Returns the step."""
    step = int(model.num_timesteps)
    _save_agent(model, vecnorm, controller, *_checkpoint_files(folder, step))
    older = sorted(int(p.stem.removeprefix("constraint_")) for p in folder.glob("constraint_*.json")
                   if p.stem.removeprefix("constraint_").isdigit())
    for old in older[:-keep]:
        for path in reversed(_checkpoint_files(folder, old)):  # marker first: never a half checkpoint
            path.unlink(missing_ok=True)
    return step


class _ResumableCSV(CSVOutputFormat):
    """SB3's CSV writer, but continuing an existing ``progress.csv`` instead of truncating it."""

    def __init__(self, filename: Path, keep_until: int | None):
        if keep_until is None or not filename.is_file() or filename.stat().st_size == 0:
            super().__init__(str(filename))
            return
        lines = filename.read_text(encoding="utf-8").splitlines()
        keys = lines[0].split(",")
        col = keys.index("timesteps") if "timesteps" in keys else None
        # Rows logged after the checkpoint we resume from are dropped: they will be logged again.
        kept = [row for row in lines[1:] if col is None or not row.split(",")[col]
                or float(row.split(",")[col]) <= keep_until]
        filename.write_text("\n".join([lines[0], *kept]) + "\n", encoding="utf-8")
        self.file = open(filename, "r+")
        self.file.seek(0, io.SEEK_END)
        self.keys, self.separator, self.quotechar = keys, ",", '"'


# -- callbacks ------------------------------------------------------------------------------------------
class _CheckpointCallback(BaseCallback):
    """Checkpoint every ``every`` timesteps, at a rollout start (the model has trained on all it saw)."""

    def __init__(self, folder: Path, vecnorm: VecNormalize, controller: Any, every: int, keep: int):
        super().__init__()
        self.folder, self.vecnorm, self.controller, self.every, self.keep = folder, vecnorm, controller, every, keep
        self._last = 0

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps

    def _on_rollout_start(self) -> None:
        if self.num_timesteps - self._last >= self.every:
            save_checkpoint(self.folder, self.model, self.vecnorm, self.controller, self.keep)
            self._last = self.num_timesteps

    def _on_step(self) -> bool:
        return True


class _ProgressBar(BaseCallback):
    """A tqdm bar over timesteps with the current lambda (SB3's own bar needs ``rich``)."""

    def __init__(self, total: int, holder: LambdaHolder, disable: bool):
        super().__init__()
        self.total, self.holder, self.disable = total, holder, disable
        self.bar: Any = None

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, initial=self.num_timesteps, unit="step", unit_scale=True,
                        desc="training", disable=self.disable, dynamic_ncols=True)

    def _on_step(self) -> bool:
        self.bar.update(self.num_timesteps - self.bar.n)
        return True

    def _on_rollout_end(self) -> None:
        self.bar.set_postfix(lam=f"{self.holder.value:.3g}", refresh=False)

    def _on_training_end(self) -> None:
        self.bar.close()


# -- training ---------------------------------------------------------------------------------------------
class TrainedAgent:
    """A trained model with its observation normalisation: ``predict`` takes raw observations.

    Args:
        algo: ppo, a2c, dqn or sac.
        model: the SB3 model.
        vecnormalize: the training ``VecNormalize`` (its statistics are applied, never updated here).
        paths: where the agent's files are.
    """

    def __init__(self, algo: str, model: BaseAlgorithm, vecnormalize: VecNormalize, paths: AgentPaths):
        self.algo, self.model, self.vecnormalize, self.paths = algo, model, vecnormalize, paths
        self.continuous = algo in CONTINUOUS
        self.observation_space, self.action_space = model.observation_space, model.action_space

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """SB3's ``predict`` on raw observations of shape ``(17,)`` or ``(n, 17)``."""
        obs = np.asarray(observation, dtype=np.float32)
        normalised = self.vecnormalize.normalize_obs(obs).astype(np.float32)
        return self.model.predict(normalised, state, episode_start, deterministic)

    def __repr__(self) -> str:
        return f"TrainedAgent({self.algo!r}, {self.model.num_timesteps} timesteps, {str(self.paths.folder)!r})"


def _build_env(config: Config, num_accounts: int, seed: int, continuous: bool, agent: AgentConfig,
               holder: LambdaHolder) -> tuple[CostPenaltyVecEnv, VecNormalize]:
    portfolio = envs.make_portfolio(config, num_accounts, seed=seed, continuous=continuous)
    penalised = CostPenaltyVecEnv(VecMonitor(portfolio), holder, config.env.m3plus_cap,
                                  agent.constraint.penalty_scale, agent.training.horizon_is_terminal,
                                  agent.training.objective)
    t = agent.training
    vecnorm = VecNormalize(penalised, norm_obs=t.normalize_obs, norm_reward=t.normalize_reward,
                           clip_obs=t.clip_obs, gamma=agent.hyperparameters.gamma)
    return penalised, vecnorm


def _new_model(agent: AgentConfig, env: VecNormalize, seed: int) -> BaseAlgorithm:
    activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[agent.policy.activation]
    policy_kwargs = {"net_arch": list(agent.policy.net_arch), "activation_fn": activation}
    hyper = agent.hyperparameters.model_dump()
    if agent.algo == "ppo" and hyper["batch_size"] > hyper["n_steps"] * env.num_envs:
        raise ValueError(f"ppo batch_size {hyper['batch_size']} exceeds the rollout, n_steps x num_accounts = "
                         f"{hyper['n_steps'] * env.num_envs}")
    model = ALGORITHMS[agent.algo]("MlpPolicy", env, policy_kwargs=policy_kwargs, seed=seed, device="cpu",
                                   verbose=0, **hyper)
    action_net = getattr(model.policy, "action_net", None)
    if agent.policy.hold_bias and isinstance(action_net, torch.nn.Linear) and action_net.out_features == len(
            envs.LIMIT_MULTIPLIERS):
        with torch.no_grad():
            action_net.bias[envs.HOLD_ACTION] += agent.policy.hold_bias
    return model


def train(algo: str, config: Config | str, run_dir: str | Path, total_timesteps: int | None = None,
          seed: int = DEFAULT_TRAINING_SEED, num_accounts: int | None = None,
          agent_overrides: Mapping[str, Any] | None = None, constraint: str = "pid", resume: bool = False,
          progress: bool = True) -> TrainedAgent:
    """Train ``algo`` on a portfolio of ``config`` under the M3+ cap; write it to ``run_dir/agents/<algo>/``.

    Args:
        algo: ppo, a2c, dqn (``CreditLine-v0`` actions) or sac (``CreditLineContinuous-v0``).
        config: env ``Config`` or preset name. ``macro.seed`` is set to ``seed`` (see the module docstring).
        run_dir: the run folder (created if missing).
        total_timesteps: budget [account-months], counted from 0 also when resuming (default: the agent
            config's ``training.total_timesteps``).
        seed: training seed label; keep it disjoint from evaluation seeds. Recorded in training.json.
        num_accounts: parallel accounts (default: ``training.num_accounts``).
        agent_overrides: agent config overrides, see :func:`load_agent_config` (not allowed with resume).
        constraint: "pid" (PID-Lagrangian), "fixed" (constant lambda) or "none".
        resume: continue from the newest checkpoint: its step count, observation statistics and lambda.
        progress: show a tqdm progress bar.
    """
    _check_algo(algo)
    if constraint not in CONSTRAINTS:
        raise ValueError(f"unknown constraint '{constraint}'; choose one of {', '.join(CONSTRAINTS)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    config = resolve_config(config, {"macro.seed": int(seed)})
    paths = agent_paths(run_dir, algo)
    start = _resume_point(paths, algo, constraint, seed, agent_overrides) if resume else None
    if start is None and (paths.model.exists() or latest_checkpoint(paths.checkpoints) is not None):
        raise FileExistsError(f"{paths.folder} already holds a trained {algo}; pass resume to continue it "
                              "or choose another run folder")
    if start is None:
        agent = load_agent_config(algo, config.name, agent_overrides)
    else:
        agent = _validate(yaml.safe_load((paths.folder / "agent_config.yaml").read_text()), "saved agent config")
        if num_accounts not in (None, agent.training.num_accounts):
            raise ValueError(f"cannot resume with num_accounts={num_accounts}: the run trains "
                             f"{agent.training.num_accounts} accounts")
    num_accounts = _positive("num_accounts", num_accounts, agent.training.num_accounts)
    total = _positive("total_timesteps", total_timesteps, agent.training.total_timesteps)
    # What is saved is what ran: the budget and portfolio size actually used.
    agent = _validate(_merge(agent.to_dict(), {"training": {"num_accounts": num_accounts, "total_timesteps": total}}),
                      "agent config")
    torch.set_num_threads(agent.training.torch_threads)

    holder = LambdaHolder()
    controller = make_controller(constraint, agent.constraint, config.env.m3plus_cap)
    # A resumed run continues with accounts it has not seen: the block of the seed, offset by the step.
    account_seed = portfolio_seed(seed) + (start or 0)
    penalised, vecnorm = _build_env(config, num_accounts, account_seed, algo in CONTINUOUS, agent, holder)
    if start is None:
        paths.checkpoints.mkdir(parents=True, exist_ok=True)
        write_yaml(paths.folder / "agent_config.yaml", agent.to_dict())
        write_yaml(paths.folder / "env_config.yaml", config.to_dict())
        write_json(paths.folder / "training.json", {"algo": algo, "seed": int(seed), "constraint": constraint,
                                                    "num_accounts": num_accounts, "account_seed": account_seed,
                                                    "macro_seed": int(seed)})
        model = _new_model(agent, vecnorm, int(seed))
    else:
        model_file, vecnorm_file, constraint_file = _checkpoint_files(paths.checkpoints, start)
        vecnorm = VecNormalize.load(str(vecnorm_file), penalised)
        model = ALGORITHMS[algo].load(model_file, env=vecnorm, device="cpu")
        model.set_random_seed(int(seed) + start)
        controller.load_state_dict(json.loads(constraint_file.read_text(encoding="utf-8")))
        holder.value = controller.value
    logger = Logger(str(paths.folder), [_ResumableCSV(paths.progress, start),
                                        TensorBoardOutputFormat(str(paths.folder))])
    model.set_logger(logger)
    callbacks = CallbackList([
        LagrangianCallback(penalised, controller, agent.constraint.min_update_samples),
        _CheckpointCallback(paths.checkpoints, vecnorm, controller, agent.training.checkpoint_every,
                            agent.training.keep_checkpoints),
        _ProgressBar(total, holder, disable=not progress),
    ])
    remaining = total - model.num_timesteps
    try:
        if remaining > 0:
            # Off-policy SB3 logs every log_interval *episodes*; with hundreds of accounts ending lives each
            # month that would be every step, so log about once per few account lifetimes instead.
            log_interval = 1 if algo in ("ppo", "a2c") else 4 * num_accounts
            model.learn(remaining, callback=callbacks, log_interval=log_interval,
                        reset_num_timesteps=start is None)
    finally:
        logger.close()
    save_checkpoint(paths.checkpoints, model, vecnorm, controller, agent.training.keep_checkpoints)
    _save_agent(model, vecnorm, controller, paths.model, paths.vecnormalize, paths.constraint)
    vecnorm.training, vecnorm.norm_reward = False, False
    return TrainedAgent(algo, model, vecnorm, paths)


def _positive(name: str, value: int | None, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _resume_point(paths: AgentPaths, algo: str, constraint: str, seed: int,
                  overrides: Mapping[str, Any] | None) -> int:
    step = latest_checkpoint(paths.checkpoints)
    if step is None:
        raise FileNotFoundError(f"nothing to resume: no complete checkpoint in {paths.checkpoints}")
    if overrides:
        raise ValueError("agent overrides cannot change a run being resumed; it keeps its saved agent config")
    saved = json.loads((paths.folder / "training.json").read_text(encoding="utf-8"))
    for name, value in (("algo", algo), ("constraint", constraint), ("seed", seed)):
        if saved[name] != value:
            raise ValueError(f"cannot resume: the run was trained with {name}={saved[name]!r}, not {value!r}")
    return step


def load_agent(run_dir: str | Path, algo: str) -> TrainedAgent:
    """The agent ``train`` saved in ``run_dir/agents/<algo>/``, ready for ``predict`` on raw observations."""
    _check_algo(algo)
    paths = agent_paths(run_dir, algo)
    for path in (paths.model, paths.vecnormalize):
        if not path.is_file():
            raise FileNotFoundError(f"no trained {algo} in {run_dir}: {path} is missing")
    model = ALGORITHMS[algo].load(paths.model, device="cpu")
    with open(paths.vecnormalize, "rb") as handle:
        vecnorm = pickle.load(handle)
    if not isinstance(vecnorm, VecNormalize):
        raise ValueError(f"{paths.vecnormalize} does not hold VecNormalize statistics")
    vecnorm.training, vecnorm.norm_reward = False, False
    return TrainedAgent(algo, model, vecnorm, paths)
