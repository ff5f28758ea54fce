"""A trained agent's files in ``<run>/agents/<algo>/``: where they are, how they are saved and read back.

    policy.pt, vecnormalize.npz, policy.json       the final actor as data (:mod:`agents.policy_export`):
                                                   what evaluation reads; safe to receive from others
    model.zip                                      the final SB3 model: unpickles when loaded (trust needed)
    constraint.json                                lambda state and step count; written last (marks a save)
    checkpoints/{model,vecnormalize,constraint}_<step>  periodic (.zip, .npz, .json), written atomically

Reading an agent (:func:`load_agent`) needs neither Stable-Baselines3 nor any pickle; only resuming
training loads an SB3 zip (``agents.training``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import numpy as np
import yaml

from agents.atomic_io import atomic_write, write_json
from agents.policy_export import ALGORITHMS, NORMALISATION_FILE, ExportedPolicy, export_policy, normalisation_arrays
from envs.config import ConfigError

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecNormalize

    from agents.agent_config import AgentConfig


def check_algo(algo: str) -> str:
    """``algo`` if it is a known algorithm (``agents.agent_config.check_algo``'s rule, without importing SB3)."""
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm '{algo}'; choose one of {', '.join(ALGORITHMS)}")
    return algo


# -- paths --------------------------------------------------------------------------------------------
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
    return AgentPaths(
        folder,
        folder / "model.zip",
        folder / NORMALISATION_FILE,
        folder / "constraint.json",
        folder / "checkpoints",
        folder / "progress.csv",
    )


def _save_normalisation(path: Path, vecnorm: VecNormalize) -> None:
    """Observation and return statistics as ``.npz`` (data, never a pickle): all a resumed run needs."""
    obs: Any = vecnorm.obs_rms  # a RunningMeanStd for Box observations
    ret: Any = vecnorm.ret_rms
    arrays: dict[str, Any] = {
        **normalisation_arrays(obs.mean, obs.var, vecnorm.epsilon, vecnorm.clip_obs, vecnorm.norm_obs),
        "count": np.float64(obs.count),
        "ret_mean": ret.mean,
        "ret_var": ret.var,
        "ret_count": np.float64(ret.count),
    }
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _restore_normalisation(path: Path, vecnorm: VecNormalize) -> None:
    try:
        with np.load(path, allow_pickle=False) as data:
            state = {key: data[key] for key in data.files}
        obs: Any = vecnorm.obs_rms
        ret: Any = vecnorm.ret_rms
        obs.mean, obs.var, obs.count = state["mean"], state["var"], float(state["count"])
        ret.mean, ret.var, ret.count = state["ret_mean"], state["ret_var"], float(state["ret_count"])
    except (ValueError, OSError, KeyError, EOFError) as exc:
        raise ValueError(f"{path} is not a checkpoint's normalisation statistics: {exc}") from None


def _save_agent(
    model: BaseAlgorithm,
    vecnorm: VecNormalize,
    controller: Any,
    model_path: Path,
    vecnorm_path: Path,
    constraint_path: Path,
) -> None:
    """Model, observation statistics, then lambda state (the last file marks a complete save)."""
    buffer = io.BytesIO()
    model.save(buffer)
    atomic_write(model_path, lambda f: _write_all(f, buffer.getvalue()))
    _save_normalisation(vecnorm_path, vecnorm)
    write_json(constraint_path, {**controller.state_dict(), "num_timesteps": int(model.num_timesteps)})


def _write_all(handle: IO[bytes], data: bytes) -> None:
    handle.write(data)


def _export(model: BaseAlgorithm, vecnorm: VecNormalize, algo: str, agent: AgentConfig, folder: Path) -> None:
    """The final actor as data files (policy.pt, policy.json; vecnormalize.npz by _save_agent)."""
    export_policy(folder, algo, model.policy.state_dict(), agent.policy.activation, int(model.num_timesteps))


def _checkpoint_files(folder: Path, step: int) -> tuple[Path, Path, Path]:
    return (folder / f"model_{step}.zip", folder / f"vecnormalize_{step}.npz", folder / f"constraint_{step}.json")


def latest_checkpoint(folder: str | Path) -> int | None:
    """The step of the newest complete checkpoint in ``folder`` (None if there is none)."""
    steps = []
    for marker in Path(folder).glob("constraint_*.json"):
        step = marker.stem.removeprefix("constraint_")
        if step.isdigit() and all(p.is_file() for p in _checkpoint_files(Path(folder), int(step))):
            steps.append(int(step))
    return max(steps, default=None)


def save_checkpoint(folder: Path, model: BaseAlgorithm, vecnorm: VecNormalize, controller: Any, keep: int) -> int:
    """Write a checkpoint at the model's step; keep the newest ``keep``. Returns the step."""
    step = int(model.num_timesteps)
    _save_agent(model, vecnorm, controller, *_checkpoint_files(folder, step))
    older = sorted(
        int(p.stem.removeprefix("constraint_"))
        for p in folder.glob("constraint_*.json")
        if p.stem.removeprefix("constraint_").isdigit()
    )
    for old in older[:-keep]:
        for path in reversed(_checkpoint_files(folder, old)):  # marker first: never a half checkpoint
            path.unlink(missing_ok=True)
    return step


def check_resumable(run_dir: str | Path, algo: str, constraint: str, seed: int, num_accounts: int | None = None) -> int:
    """The step ``train(..., resume=True)`` would continue from; an error naming what does not match.

    Reads only JSON and YAML (no model): safe to call before anything is written.
    """
    check_algo(algo)
    paths = agent_paths(run_dir, algo)
    step = latest_checkpoint(paths.checkpoints)
    if step is None:
        trained = sorted(p.name for p in (Path(run_dir) / "agents").glob("*") if p.is_dir())
        raise FileNotFoundError(
            f"nothing to resume: no complete checkpoint in {paths.checkpoints}"
            + (f" (the run has agents {trained}; pick one with --algo)" if trained else "")
        )
    record = paths.folder / "training.json"
    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
        agent_file = paths.folder / "agent_config.yaml"
        saved_accounts = yaml.safe_load(agent_file.read_text(encoding="utf-8"))["training"]["num_accounts"]
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot resume: the records in {paths.folder} are unreadable: {exc}") from None
    for name, value in (("algo", algo), ("constraint", constraint), ("seed", seed)):
        if saved.get(name) != value:
            raise ValueError(f"cannot resume: the run was trained with {name}={saved.get(name)!r}, not {value!r}")
    if num_accounts not in (None, saved_accounts):
        raise ValueError(f"cannot resume with num_accounts={num_accounts}: the run trains {saved_accounts} accounts")
    return step


def check_fits(agent: ExportedPolicy, config: Any, where: str) -> None:
    """``ValueError`` naming ``where`` if ``agent`` was trained on observations of another size than ``config``'s."""
    from envs.observation import observation_space

    expected = observation_space(config).shape
    if agent.observation_space.shape != expected:
        raise ValueError(
            f"{where}: the {agent.algo} agent takes observations of shape {agent.observation_space.shape}, "
            f"the env gives {expected} (trained with another version of the simulator?)"
        )


def load_agent(run_dir: str | Path, algo: str) -> ExportedPolicy:
    """The agent ``train`` saved in ``run_dir/agents/<algo>/``, ready for ``predict`` on raw observations.

    Reads only data files (``policy.pt`` with ``torch.load(weights_only=True)``, ``vecnormalize.npz``,
    ``policy.json``): a run folder received from someone else runs no code when its agents are loaded.
    """
    check_algo(algo)
    paths = agent_paths(run_dir, algo)
    for name in ("policy.pt", NORMALISATION_FILE, "policy.json"):
        if not (paths.folder / name).is_file():
            raise FileNotFoundError(f"no trained {algo} in {run_dir}: {paths.folder / name} is missing")
    return ExportedPolicy(paths.folder)
