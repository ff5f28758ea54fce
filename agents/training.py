"""Training Stable-Baselines3 agents on a portfolio under the M3+ cap, and loading them back.

``train`` builds ``make_portfolio`` (one account per parallel env) -> ``VecMonitor`` -> the cost penalty of
:mod:`agents.lagrangian` -> ``VecNormalize`` (observations mix CNY lines with 0/1 flags; rewards are tens
of CNY), and trains PPO (default), A2C or DQN on ``CreditLine-v0`` actions, or SAC on the continuous
variant. Hyperparameters live in ``configs/agents/<algo>.yaml`` (schema: :mod:`agents.agent_config`). Files, in
``<run_dir>/agents/<algo>/``:

    policy.pt, vecnormalize.npz, policy.json       the final actor as data (:mod:`agents.policy_export`):
                                                   what evaluation reads; safe to receive from others
    model.zip                                      the final SB3 model: unpickles when loaded (trust needed)
    constraint.json                                lambda state at the end
    agent_config.yaml, training.json, env_config.yaml   what was trained, with which seeds
    checkpoints/{model,vecnormalize,constraint}_<step>  periodic (.zip, .npz, .json), written atomically,
                                                   constraint last; ``resume`` loads the SB3 zip: trust needed
    progress.csv, events.out.tfevents.*            SB3 logger: timesteps, revenue, cost, m3plus_rate, lambda

Seeds: training seed ``s`` uses the account block ``agents.evaluation.portfolio_seed(s)`` and macro path
``s``, the same mapping the evaluator uses, so disjoint seed labels give disjoint accounts and macro paths.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from stable_baselines3 import A2C, DQN, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize
from tqdm.auto import tqdm

import envs
from agents.agent_config import (
    ALGORITHM_NAMES,
    CONTINUOUS,
    AgentConfig,
    check_algo,
    deep_merge,
    load_agent_config,
    validate_agent_config,
)
from agents.agent_files import (
    AgentPaths,
    _checkpoint_files,
    _export,
    _restore_normalisation,
    _save_agent,
    agent_paths,
    check_resumable,
    latest_checkpoint,
    save_checkpoint,
)
from agents.agent_files import load_agent as load_agent  # re-exported: training and loading in one place
from agents.atomic_io import write_json, write_yaml
from agents.evaluation import check_disjoint, portfolio_seed
from agents.lagrangian import CONSTRAINTS, CostPenaltyVecEnv, LagrangianCallback, LambdaHolder, make_controller
from agents.model_selection import SelectionCallback
from agents.multibook import make_multibook
from agents.policy_export import ALGORITHMS as EXPORTABLE
from envs.config import Config, resolve_config

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN, "sac": SAC}
assert tuple(ALGORITHMS) == ALGORITHM_NAMES == EXPORTABLE
DEFAULT_TRAINING_SEED = 1000


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
        kept = [
            row
            for row in lines[1:]
            if col is None or not row.split(",")[col] or float(row.split(",")[col]) <= keep_until
        ]
        filename.write_text("\n".join([lines[0], *kept]) + "\n", encoding="utf-8")
        self.file = open(filename, "r+")  # noqa: SIM115 (SB3 closes it in close())
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
        self.bar = tqdm(
            total=self.total,
            initial=self.num_timesteps,
            unit="step",
            unit_scale=True,
            desc="training",
            disable=self.disable,
            dynamic_ncols=True,
        )

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

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """SB3's ``predict`` on raw observations of shape ``(17,)`` or ``(n, 17)``."""
        obs = np.asarray(observation, dtype=np.float32)
        normalised = np.asarray(self.vecnormalize.normalize_obs(obs), dtype=np.float32)
        return self.model.predict(normalised, state, episode_start, deterministic)

    def __repr__(self) -> str:
        return f"TrainedAgent({self.algo!r}, {self.model.num_timesteps} timesteps, {str(self.paths.folder)!r})"


def _build_env(
    config: Config,
    num_accounts: int,
    seed: int,
    continuous: bool,
    agent: AgentConfig,
    holder: LambdaHolder,
    book_seeds: Sequence[int] | None = None,
    offset: int = 0,
) -> tuple[CostPenaltyVecEnv, VecNormalize]:
    """One portfolio keyed ``seed`` (an account-block start), or with ``book_seeds`` one sub-book per seed
    label (agents.multibook: its own accounts, macro path and, if enabled, randomised parameters)."""
    if book_seeds:
        portfolio: Any = make_multibook(
            config,
            book_seeds,
            num_accounts // len(book_seeds),
            continuous,
            agent.training.randomisation,
            offset,
        )
    else:
        portfolio = envs.make_portfolio(config, num_accounts, seed=seed, continuous=continuous)
    penalised = CostPenaltyVecEnv(
        VecMonitor(portfolio),
        holder,
        config.env.m3plus_cap,
        agent.constraint.penalty_scale,
        agent.training.horizon_is_terminal,
        agent.training.objective,
    )
    t = agent.training
    vecnorm = VecNormalize(
        penalised,
        norm_obs=t.normalize_obs,
        norm_reward=t.normalize_reward,
        clip_obs=t.clip_obs,
        gamma=agent.hyperparameters.gamma,
    )
    return penalised, vecnorm


def check_trainable(agent: AgentConfig, config: Config, constraint: str, num_accounts: int | None = None) -> None:
    """What would stop training after it started, found before any file is written (``ValueError``).

    Args:
        agent: the agent config to train with.
        config: the env config (its M3+ cap feeds the constraint).
        constraint: "pid", "fixed" or "none".
        num_accounts: parallel accounts (default: the agent config's).
    """
    accounts = _positive("num_accounts", num_accounts, agent.training.num_accounts)
    cap = config.env.m3plus_cap
    if not 0.0 < cap < 1.0:
        raise ValueError(f"env.m3plus_cap = {cap}: training under the cap needs a fraction in (0, 1)")
    hyper = agent.hyperparameters.model_dump()
    if agent.algo == "ppo" and hyper["batch_size"] > hyper["n_steps"] * accounts:
        raise ValueError(
            f"ppo batch_size {hyper['batch_size']} exceeds the rollout, n_steps x num_accounts = "
            f"{hyper['n_steps']} x {accounts} = {hyper['n_steps'] * accounts}"
        )
    try:
        make_controller(constraint, agent.constraint, config.env.m3plus_cap)
    except ValueError as exc:
        raise ValueError(f"env.m3plus_cap = {config.env.m3plus_cap} cannot be trained under: {exc}") from None


def _new_model(agent: AgentConfig, env: VecNormalize, seed: int) -> BaseAlgorithm:
    activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[agent.policy.activation]
    policy_kwargs = {"net_arch": list(agent.policy.net_arch), "activation_fn": activation}
    hyper = agent.hyperparameters.model_dump()
    model = ALGORITHMS[agent.algo](
        "MlpPolicy", env, policy_kwargs=policy_kwargs, seed=seed, device="cpu", verbose=0, **hyper
    )
    action_net = getattr(model.policy, "action_net", None)
    if (
        agent.policy.hold_bias
        and isinstance(action_net, torch.nn.Linear)
        and action_net.out_features == len(envs.LIMIT_MULTIPLIERS)
    ):
        with torch.no_grad():
            action_net.bias[envs.HOLD_ACTION] += agent.policy.hold_bias
    return model


def train(
    algo: str,
    config: Config | str,
    run_dir: str | Path,
    total_timesteps: int | None = None,
    seed: int = DEFAULT_TRAINING_SEED,
    num_accounts: int | None = None,
    agent_overrides: Mapping[str, Any] | None = None,
    constraint: str = "pid",
    resume: bool = False,
    progress: bool = True,
    book_seeds: Sequence[int] | None = None,
    tuning_seeds: Sequence[int] | None = None,
    holdout_seeds: Sequence[int] = (),
) -> TrainedAgent:
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
        book_seeds: training seed labels of the sub-books (agents.multibook), ``training.sub_books`` of them:
            each rollout then spans that many macro paths. None: one portfolio on ``seed``.
        tuning_seeds: seed labels for model selection (agents.model_selection): the checkpoint kept and
            saved as the agent is the best meeting the cap there, every ``training.selection_every``
            timesteps (a resumed run selects among the checkpoints after the resume). None: the last.
        holdout_seeds: the evaluation seeds; an overlap with the training or tuning seeds is an error.
    """
    check_algo(algo)
    if constraint not in CONSTRAINTS:
        raise ValueError(f"unknown constraint '{constraint}'; choose one of {', '.join(CONSTRAINTS)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    check_disjoint(training=book_seeds or [seed], tuning=tuning_seeds or [], evaluation=holdout_seeds)
    config = resolve_config(config, {"macro.seed": int(seed)})
    paths = agent_paths(run_dir, algo)
    start = _resume_point(paths, algo, constraint, seed, agent_overrides) if resume else None
    if start is None and (paths.model.exists() or latest_checkpoint(paths.checkpoints) is not None):
        raise FileExistsError(
            f"{paths.folder} already holds a trained {algo}; pass resume to continue it or choose another run folder"
        )
    if start is None:
        agent = load_agent_config(algo, config.name, agent_overrides)
    else:
        saved = yaml.safe_load((paths.folder / "agent_config.yaml").read_text())
        agent = validate_agent_config(saved, "saved agent config")
        if num_accounts not in (None, agent.training.num_accounts):
            raise ValueError(
                f"cannot resume with num_accounts={num_accounts}: the run trains {agent.training.num_accounts} accounts"
            )
    num_accounts = _positive("num_accounts", num_accounts, agent.training.num_accounts)
    if book_seeds is not None and len(book_seeds) != agent.training.sub_books:
        raise ValueError(f"{len(book_seeds)} book seeds given for training.sub_books = {agent.training.sub_books}")
    if book_seeds is not None and num_accounts % len(book_seeds):
        raise ValueError(f"num_accounts {num_accounts} does not split evenly into {len(book_seeds)} sub-books")
    total = _positive("total_timesteps", total_timesteps, agent.training.total_timesteps)
    # What is saved is what ran: the budget and portfolio size actually used.
    used = {"training": {"num_accounts": num_accounts, "total_timesteps": total}}
    agent = validate_agent_config(deep_merge(agent.to_dict(), used), "agent config")
    if start is None:
        check_trainable(agent, config, constraint, num_accounts)
    torch.set_num_threads(agent.training.torch_threads)

    holder = LambdaHolder()
    controller = make_controller(constraint, agent.constraint, config.env.m3plus_cap)
    # A resumed run continues with accounts it has not seen: the block of the seed, offset by the step.
    account_seed = portfolio_seed(seed) + (start or 0)
    penalised, vecnorm = _build_env(
        config, num_accounts, account_seed, algo in CONTINUOUS, agent, holder, book_seeds, start or 0
    )
    if start is None:
        paths.checkpoints.mkdir(parents=True, exist_ok=True)
        write_yaml(paths.folder / "agent_config.yaml", agent.to_dict())
        write_yaml(paths.folder / "env_config.yaml", config.to_dict())
        write_json(
            paths.folder / "training.json",
            {
                "algo": algo,
                "seed": int(seed),
                "constraint": constraint,
                "num_accounts": num_accounts,
                "account_seed": account_seed,
                "macro_seed": int(seed),
                "book_seeds": [int(b) for b in book_seeds] if book_seeds else None,
                "tuning_seeds": [int(t) for t in tuning_seeds] if tuning_seeds else None,
            },
        )
        model = _new_model(agent, vecnorm, int(seed))
    else:
        model_file, vecnorm_file, constraint_file = _checkpoint_files(paths.checkpoints, start)
        _restore_normalisation(vecnorm_file, vecnorm)
        # SB3's zip unpickles entries when loaded: resuming needs a run folder one trusts (see --help).
        model = ALGORITHMS[algo].load(model_file, env=vecnorm, device="cpu")
        model.set_random_seed(int(seed) + start)
        controller.load_state_dict(json.loads(constraint_file.read_text(encoding="utf-8")))
        holder.value = controller.value
    logger = Logger(
        str(paths.folder), [_ResumableCSV(paths.progress, start), TensorBoardOutputFormat(str(paths.folder))]
    )
    model.set_logger(logger)
    callbacks = CallbackList(
        [
            LagrangianCallback(penalised, controller, agent.constraint.min_update_samples),
            _CheckpointCallback(
                paths.checkpoints, vecnorm, controller, agent.training.checkpoint_every, agent.training.keep_checkpoints
            ),
            _ProgressBar(total, holder, disable=not progress),
        ]
    )
    selection = None
    if tuning_seeds:
        t = agent.training
        selection = SelectionCallback(vecnorm, config, tuning_seeds, t.selection_accounts, t.selection_every)
        callbacks.callbacks.append(selection)
    remaining = total - model.num_timesteps
    try:
        if remaining > 0:
            # Off-policy SB3 logs every log_interval *episodes*; with hundreds of accounts ending lives each
            # month that would be every step, so log about once per few account lifetimes instead.
            log_interval = 1 if algo in ("ppo", "a2c") else 4 * num_accounts
            model.learn(remaining, callback=callbacks, log_interval=log_interval, reset_num_timesteps=start is None)
    finally:
        logger.close()
    save_checkpoint(paths.checkpoints, model, vecnorm, controller, agent.training.keep_checkpoints)
    if selection is not None and selection.best is not None:  # save the checkpoint kept on the tuning seeds
        kept = selection.restore_best()
        selection.table().to_csv(paths.folder / "selection.csv", index=False)
        write_json(paths.folder / "selection.json", {**kept, "tuning_seeds": [int(t) for t in tuning_seeds or []]})
    _export(model, vecnorm, algo, agent, paths.folder)
    _save_agent(model, vecnorm, controller, paths.model, paths.vecnormalize, paths.constraint)
    vecnorm.training, vecnorm.norm_reward = False, False
    return TrainedAgent(algo, model, vecnorm, paths)


def _positive(name: str, value: int | None, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _resume_point(paths: AgentPaths, algo: str, constraint: str, seed: int, overrides: Mapping[str, Any] | None) -> int:
    if overrides:
        raise ValueError("agent overrides cannot change a run being resumed; it keeps its saved agent config")
    return check_resumable(paths.folder.parent.parent, algo, constraint, seed)
