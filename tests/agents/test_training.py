"""Training: agent configs are validated, runs resume where they stopped, saved agents predict on raw obs,
and (slow) PPO learns something on a small portfolio."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import envs
from agents.agent_config import AGENT_CONFIG_DIR, load_agent_config
from agents.evaluation import portfolio_seed
from agents.lagrangian import make_controller
from agents.policies import RandomPolicy, StaticHold
from agents.training import ALGORITHMS, latest_checkpoint, load_agent, train
from envs.config import ConfigError, available_presets

REPO = Path(__file__).resolve().parents[2]
# A tiny PPO: 32 accounts x 8 months a rollout (256 account-months), two minibatches.
TINY = {"n_steps": 8, "batch_size": 128, "n_epochs": 2, "net_arch": [16], "checkpoint_every": 256}


# -- agent configs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_shipped_agent_configs_are_valid_for_every_preset(algo):
    for preset in available_presets():
        config = load_agent_config(algo, preset)
        assert config.algo == algo
        assert config.constraint.kp == 0.1 and config.constraint.ki == 0.01  # Stooke et al. gains


def test_unknown_algorithm_is_named():
    with pytest.raises(ConfigError, match="unknown algorithm 'trpo'.*ppo, a2c, dqn, sac"):
        load_agent_config("trpo")
    with pytest.raises(ConfigError, match="unknown algorithm 'trpo'"):
        train("trpo", "wechat", "/nonexistent", total_timesteps=1)


def test_unknown_override_key_is_named_with_what_is_allowed():
    with pytest.raises(ConfigError, match="'hyperparameters.lerning_rate'.*learning_rate"):
        load_agent_config("ppo", overrides={"hyperparameters.lerning_rate": 0.001})
    with pytest.raises(ConfigError, match="unknown agent config key 'lr'"):
        load_agent_config("ppo", overrides={"lr": 0.001})
    with pytest.raises(ConfigError, match="'optimizer.learning_rate'"):
        load_agent_config("ppo", overrides={"optimizer.learning_rate": 0.001})


def test_out_of_range_and_mistyped_values_are_named():
    with pytest.raises(ConfigError, match="hyperparameters.gamma = 1.5"):
        load_agent_config("ppo", overrides={"gamma": 1.5})
    with pytest.raises(ConfigError, match="training.num_accounts = 'many'"):
        load_agent_config("ppo", overrides={"training.num_accounts": "many"})


def test_bare_keys_and_cli_strings_resolve():
    config = load_agent_config("ppo", overrides={"n_steps": 64, "learning_rate": "1e-4", "net_arch": [32, 32]})
    assert config.hyperparameters.n_steps == 64
    assert config.hyperparameters.learning_rate == 1e-4  # PyYAML reads "1e-4" as a string
    assert config.policy.net_arch == [32, 32]


def _write_config(tmp_path: Path, algo: str = "ppo", **changes) -> Path:
    data = yaml.safe_load((AGENT_CONFIG_DIR / f"{algo}.yaml").read_text())
    data.update(changes)
    path = tmp_path / f"{algo}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_key_in_a_yaml_file_is_named(tmp_path):
    data = yaml.safe_load((AGENT_CONFIG_DIR / "ppo.yaml").read_text())
    data["hyperparameters"]["clip_rnage"] = 0.3
    path = tmp_path / "ppo.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="hyperparameters.clip_rnage.*Extra inputs are not permitted"):
        load_agent_config("ppo", path=path)


def test_preset_section_overrides_only_its_preset(tmp_path):
    path = _write_config(tmp_path, presets={"douyin": {"hyperparameters": {"learning_rate": 0.0002}}})
    base = yaml.safe_load(path.read_text())["hyperparameters"]["learning_rate"]
    assert load_agent_config("ppo", "douyin", path=path).hyperparameters.learning_rate == 0.0002
    assert load_agent_config("ppo", "wechat", path=path).hyperparameters.learning_rate == base != 0.0002


def test_preset_sections_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="unknown presets \\['tiktok'\\]"):
        load_agent_config("ppo", path=_write_config(tmp_path, presets={"tiktok": {}}))
    bad = _write_config(tmp_path, presets={"jd": {"hyperparameters": {"n_step": 8}}})
    with pytest.raises(ConfigError, match="(?s)preset 'jd'.*n_step"):
        load_agent_config("ppo", "wechat", path=bad)  # a typo in another preset's section is still found


# -- training, checkpoints, resume -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    agent = train(
        "ppo", "wechat", run, total_timesteps=512, seed=1000, num_accounts=32, agent_overrides=TINY, progress=False
    )
    return run, agent


def test_training_writes_the_agent_and_its_records(tiny_run):
    run, agent = tiny_run
    folder = run / "agents" / "ppo"
    for name in (
        "model.zip",
        "policy.pt",
        "vecnormalize.npz",
        "policy.json",
        "constraint.json",
        "agent_config.yaml",
        "env_config.yaml",
        "training.json",
        "progress.csv",
    ):
        assert (folder / name).is_file(), name
    assert list(folder.glob("events.out.tfevents.*"))  # TensorBoard
    progress = pd.read_csv(folder / "progress.csv")
    for column in ("timesteps", "revenue", "cost", "m3plus_rate", "lambda"):
        assert column in progress.columns
    assert list(progress["timesteps"]) == [256, 512]  # one row per rollout
    record = json.loads((folder / "training.json").read_text())
    assert record["seed"] == 1000 and record["account_seed"] == portfolio_seed(1000)
    assert yaml.safe_load((folder / "env_config.yaml").read_text())["macro"]["seed"] == 1000
    assert latest_checkpoint(folder / "checkpoints") == 512
    assert not list(folder.rglob("*.tmp"))  # atomic writes leave no temporary files


def test_loaded_agent_predicts_like_the_trained_one_on_raw_observations(tiny_run):
    run, agent = tiny_run
    loaded = load_agent(run, "ppo")
    assert type(loaded).__name__ == "ExportedPolicy"  # read from data files, not SB3's pickled zip
    obs = envs.make_portfolio("wechat", 50, seed=portfolio_seed(3)).reset()
    np.testing.assert_array_equal(loaded.normalize_obs(obs), agent.vecnormalize.normalize_obs(obs).astype(np.float32))
    actions, _ = loaded.predict(obs, deterministic=True)
    assert actions.shape == (50,) and actions.dtype.kind in "iu"
    np.testing.assert_array_equal(actions, agent.predict(obs, deterministic=True)[0])
    np.testing.assert_array_equal(loaded.predict(obs[0])[0], actions[0])  # one account at a time too
    # The observation statistics are really applied: the raw CNY-scale obs differ from what the net sees.
    assert not np.allclose(loaded.normalize_obs(obs), obs)


def test_resume_continues_from_the_checkpoint_step_and_lambda(tmp_path):
    train(
        "ppo", "wechat", tmp_path, total_timesteps=512, seed=1000, num_accounts=32, agent_overrides=TINY, progress=False
    )
    folder = tmp_path / "agents" / "ppo"
    saved = json.loads((folder / "constraint.json").read_text())
    assert saved["num_timesteps"] == 512

    resumed = train("ppo", "wechat", tmp_path, total_timesteps=1024, seed=1000, resume=True, progress=False)
    assert resumed.model._num_timesteps_at_start == 512  # continued, not restarted
    assert resumed.model.num_timesteps == 1024
    assert latest_checkpoint(folder / "checkpoints") == 1024
    progress = pd.read_csv(folder / "progress.csv")
    assert list(progress["timesteps"]) == [256, 512, 768, 1024]  # the first run's rows are kept
    # The first update after the resume starts from the saved PID state, not from lambda_init.
    # (the controller as training builds it: it aims at constraint.target_share of the cap)
    pid = make_controller("pid", load_agent_config("ppo", "wechat").constraint, 0.018)
    pid.load_state_dict({k: v for k, v in saved.items() if k != "num_timesteps"})
    assert progress["lambda"].iloc[2] == pytest.approx(pid.update(progress["m3plus_rate"].iloc[2]))


def test_training_refuses_to_overwrite_or_resume_what_is_not_there(tiny_run, tmp_path):
    run, _ = tiny_run
    with pytest.raises(FileExistsError, match="already holds a trained ppo"):
        train("ppo", "wechat", run, total_timesteps=256, num_accounts=32, agent_overrides=TINY, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train("ppo", "wechat", tmp_path, total_timesteps=256, resume=True, progress=False)
    with pytest.raises(ValueError, match="constraint='pid', not 'fixed'"):
        train("ppo", "wechat", run, total_timesteps=1024, constraint="fixed", resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="no trained dqn"):
        load_agent(run, "dqn")


def test_fixed_constraint_keeps_lambda_constant_during_training(tmp_path):
    train(
        "ppo",
        "wechat",
        tmp_path,
        total_timesteps=768,
        num_accounts=32,
        constraint="fixed",
        agent_overrides={**TINY, "fixed_lambda": 0.25},
        progress=False,
    )
    progress = pd.read_csv(tmp_path / "agents" / "ppo" / "progress.csv")
    assert len(progress) == 3 and (progress["lambda"] == 0.25).all()
    assert (progress["penalty"] > 0).any()  # the constant penalty was charged


@pytest.mark.parametrize("algo", ["a2c", "dqn", "sac"])
def test_other_algorithms_train_save_and_load(algo, tmp_path):
    overrides = {
        "a2c": {"n_steps": 8},
        "dqn": {"learning_starts": 64, "buffer_size": 4096, "batch_size": 32},
        "sac": {"learning_starts": 64, "buffer_size": 4096, "batch_size": 32},
    }[algo]
    trained = train(
        algo,
        "wechat",
        tmp_path,
        total_timesteps=512,
        num_accounts=16,
        progress=False,
        agent_overrides={**overrides, "net_arch": [16], "min_update_samples": 0, "checkpoint_every": 256},
    )
    agent = load_agent(tmp_path, algo)
    obs = envs.make_portfolio("wechat", 8, seed=1, continuous=algo == "sac").reset()
    actions, _ = agent.predict(obs)
    # the actor read from policy.pt acts exactly as the SB3 model it was exported from
    np.testing.assert_array_equal(actions, trained.predict(obs, deterministic=True)[0])
    if algo == "sac":
        assert agent.continuous and actions.shape == (8, 1) and np.all(np.abs(actions) <= 1)
    else:
        assert actions.shape == (8,) and set(actions.tolist()) <= set(range(7))


# -- the script -----------------------------------------------------------------------------------------
def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def _load_script():
    spec = importlib.util.spec_from_file_location("train_script", REPO / "scripts" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_help_and_bad_input(capsys):
    script = _load_script()
    with pytest.raises(SystemExit) as exit_:
        script.main(["--help"])
    assert exit_.value.code == 0 and "--agent-set" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        script.main(["--algo", "trpo"])
    assert exit_.value.code == 2 and "invalid choice: 'trpo'" in capsys.readouterr().err
    bad_input = (
        (["--agent-set", "hyperparameters.gama=0.9"], "unknown agent config key 'hyperparameters.gama'"),
        (["--set", "env.horizn=12"], "env.horizn"),
        (["--resume"], "--resume needs the --name"),
    )
    for argv, message in bad_input:
        assert script.run_main(script.main, [*argv, "--out", "/nonexistent"]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_script_trains_and_resumes_a_run_folder(tmp_path):
    common = ["--out", str(tmp_path), "--name", "tiny", "--no-progress"]
    done = _script(
        "--timesteps",
        "256",
        "--accounts",
        "32",
        "--agent-set",
        "n_steps=8",
        "--agent-set",
        "batch_size=128",
        "--agent-set",
        "checkpoint_every=256",
        *common,
    )
    assert done.returncode == 0, done.stderr
    run = tmp_path / "tiny"
    assert json.loads((run / "seeds.json").read_text())["train"] == [1000]
    assert (run / "config.yaml").is_file() and (run / "agents" / "ppo" / "model.zip").is_file()
    done = _script("--timesteps", "512", "--resume", *common)
    assert done.returncode == 0, done.stderr
    assert latest_checkpoint(run / "agents" / "ppo" / "checkpoints") == 512


# -- learning -------------------------------------------------------------------------------------------
def _mean_reward(policy, seed: int, num_accounts: int = 1000, months: int = 24) -> float:
    """Mean env reward per account-month, the objective the learning test trains on."""
    venv = envs.make_portfolio("wechat", num_accounts, seed=portfolio_seed(seed), **{"macro.seed": seed})
    obs, total = venv.reset(), 0.0
    for _ in range(months):
        actions, _ = policy.predict(obs, deterministic=True)
        obs, reward, _, _ = venv.step(actions)
        total += float(reward.mean())
    return total / months


@pytest.mark.slow
def test_ppo_learns_to_beat_a_random_policy(tmp_path):
    agent = train(
        "ppo",
        "wechat",
        tmp_path,
        total_timesteps=300_000,
        seed=1000,
        num_accounts=512,
        constraint="none",
        agent_overrides={
            "n_steps": 16,
            "batch_size": 2048,
            "ent_coef": 0.0,
            "checkpoint_every": 10**9,
            "objective": "reward",
        },
        progress=False,
    )
    seeds = (1, 2, 3)  # held out: training used seed 1000's accounts and macro path
    trained = np.mean([_mean_reward(agent, s) for s in seeds])
    random = np.mean([_mean_reward(RandomPolicy(s), s) for s in seeds])
    hold = np.mean([_mean_reward(StaticHold(), s) for s in seeds])
    assert trained > random, (trained, random)
    # Stronger: a barely trained network (one rollout) beats random too, but not "always hold"; 300k
    # account-months of PPO do. (Deterministic given the seed; may need revisiting if the reward is recalibrated.)
    assert trained > hold, (trained, hold)
