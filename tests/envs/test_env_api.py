"""API contracts: the Gymnasium and SB3 checkers, batched equals single, auto-reset infos, determinism."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv

import envs
from envs.accounting import REWARD_COMPONENTS
from envs.credit_line_env import INFO_KEYS

PRESETS = envs.available_presets()
ENV_IDS = {False: "CreditLine-v0", True: "CreditLineContinuous-v0"}
SHORT = {"env.horizon": 5}  # short lives, so that auto-resets happen within a few steps


def _actions(rng: np.random.Generator, n: int, continuous: bool) -> np.ndarray:
    if continuous:
        return rng.uniform(-1.0, 1.0, size=(n, 1)).astype(np.float32)
    return rng.integers(0, len(envs.LIMIT_MULTIPLIERS), size=n)


def _dummy(preset: str, n: int, seed: int, continuous: bool, **overrides) -> DummyVecEnv:
    venv = DummyVecEnv([lambda: gym.make(ENV_IDS[continuous], preset=preset, **overrides) for _ in range(n)])
    venv.seed(seed)
    return venv


def _rollout(venv, steps: int, continuous: bool, action_seed: int = 0) -> list[tuple]:
    """Observations, rewards, dones and (terminal_observation, truncated) of done accounts, step by step."""
    rng = np.random.default_rng(action_seed)
    out = [(venv.reset().copy(),)]
    for _ in range(steps):
        obs, rewards, dones, infos = venv.step(_actions(rng, venv.num_envs, continuous))
        ends = {
            i: (infos[i]["terminal_observation"].copy(), infos[i]["TimeLimit.truncated"]) for i in np.flatnonzero(dones)
        }
        out.append((obs.copy(), rewards.copy(), dones.copy(), ends))
    return out


# -- checkers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("env_id", list(ENV_IDS.values()))
def test_checkers_pass_without_warnings(env_id, preset):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(gym.make(env_id, preset=preset).unwrapped)
        sb3_check_env(gym.make(env_id, preset=preset).unwrapped, warn=True)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("env_id", list(ENV_IDS.values()))
def test_made_env_runs_through_the_passive_checker_without_warnings(env_id):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym.make(env_id, preset="douyin", **SHORT)
        env.action_space.seed(0)
        env.reset(seed=0)
        for _ in range(12):
            *_, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
    assert [str(w.message) for w in caught] == []


def test_spaces_match_the_documented_layout():
    env = gym.make("CreditLine-v0").unwrapped
    assert env.observation_space.shape == (17,) and env.observation_space.dtype == np.float32
    assert env.action_space == gym.spaces.Discrete(7)
    cont = gym.make("CreditLineContinuous-v0").unwrapped
    assert cont.action_space == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    assert envs.LIMIT_MULTIPLIERS[envs.HOLD_ACTION] == 1.0


# -- batched equals single ----------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("continuous", [False, True])
def test_portfolio_equals_single_envs(preset, continuous):
    n, seed, steps = 6, 1234, 30
    batched = _rollout(envs.make_portfolio(preset, n, seed=seed, continuous=continuous, **SHORT), steps, continuous)
    single = _rollout(_dummy(preset, n, seed, continuous, **SHORT), steps, continuous)
    resets = 0
    for t, (b, s) in enumerate(zip(batched, single, strict=False)):
        np.testing.assert_array_equal(b[0], s[0], err_msg=f"observations differ at step {t}")
        if t == 0:
            continue
        np.testing.assert_array_equal(b[1], s[1], err_msg=f"rewards differ at step {t}")
        np.testing.assert_array_equal(b[2], s[2], err_msg=f"dones differ at step {t}")
        assert b[3].keys() == s[3].keys()
        for i, (terminal, truncated) in b[3].items():
            np.testing.assert_array_equal(terminal, s[3][i][0], err_msg=f"terminal_observation, step {t}")
            assert truncated == s[3][i][1], f"TimeLimit.truncated differs at step {t}, account {i}"
        resets += len(b[3])
    assert resets >= n  # horizon 5 over 30 steps: every account was replaced at least once


@pytest.mark.parametrize("continuous", [False, True])
def test_account_i_is_the_single_env_seeded_s_plus_i(continuous):
    """Without DummyVecEnv: drive one env by hand, resetting it (unseeded) whenever it ends."""
    n, seed, i = 5, 900, 3
    port = envs.make_portfolio("alipay", n, seed=seed, continuous=continuous, **SHORT)
    env = gym.make(ENV_IDS[continuous], preset="alipay", **SHORT)
    np.testing.assert_array_equal(port.reset()[i], env.reset(seed=seed + i)[0])
    rng = np.random.default_rng(5)
    for t in range(25):
        actions = _actions(rng, n, continuous)
        obs, rewards, dones, infos = port.step(actions)
        single_obs, reward, terminated, truncated, _ = env.step(actions[i])
        assert dones[i] == (terminated or truncated) and rewards[i] == np.float32(reward), f"step {t}"
        if dones[i]:
            np.testing.assert_array_equal(infos[i]["terminal_observation"], single_obs)
            assert infos[i]["TimeLimit.truncated"] == (truncated and not terminated)
            single_obs, _ = env.reset()
        np.testing.assert_array_equal(obs[i], single_obs, err_msg=f"step {t}")


def test_last_info_equals_single_env_info():
    n, seed = 4, 77
    port = envs.make_portfolio("alipay", n, seed=seed, **SHORT)
    single = _dummy("alipay", n, seed, False, **SHORT)
    port.reset(), single.reset()
    rng = np.random.default_rng(3)
    for _ in range(12):
        actions = _actions(rng, n, False)
        port.step(actions)
        _, _, _, infos = single.step(actions)
        for i in range(n):
            for key in INFO_KEYS:
                if key == "reward_components":
                    for name in REWARD_COMPONENTS:
                        assert port.last_info[key][name][i] == infos[i][key][name], (key, name, i)
                else:
                    assert port.last_info[key][i] == infos[i][key], (key, i)


def test_unseeded_reset_acquires_the_next_accounts_in_both_faces():
    port = envs.make_portfolio("jd", 3, seed=50)
    single = _dummy("jd", 3, 50, False)
    np.testing.assert_array_equal(port.reset(), single.reset())
    second = port.reset()
    np.testing.assert_array_equal(second, single.reset())  # both renew: next life of each account
    assert np.all(port.sim.state.episode == 1)


# -- auto-reset infos ---------------------------------------------------------------------------------


def test_terminal_observation_and_truncation_flags():
    n, horizon = 300, 4
    venv = envs.make_portfolio("douyin", n, seed=8, **{"env.horizon": horizon, "attrition.base_rate": 0.2})
    obs = venv.reset()
    rng = np.random.default_rng(0)
    seen_truncated = seen_terminated = 0
    for _ in range(3 * horizon):
        previous = obs.copy()
        obs, _, dones, infos = venv.step(_actions(rng, n, False))
        for i in range(n):
            if not dones[i]:
                assert "terminal_observation" not in infos[i] and "TimeLimit.truncated" not in infos[i]
                assert obs[i, 5] == previous[i, 5] + 1  # months on book advance by one
                continue
            terminal, truncated = infos[i]["terminal_observation"], infos[i]["TimeLimit.truncated"]
            assert venv.observation_space.contains(terminal)
            assert terminal[5] == previous[i, 5] + 1
            if truncated:
                seen_truncated += 1
                assert terminal[5] == horizon  # truncation is the horizon, never earlier
            else:
                seen_terminated += 1
                assert terminal[4] in (0, 6)  # closed (current) or charged off (six months past due)
                assert venv.last_info["months_past_due"][i] == terminal[4]
            # The returned observation is a newly acquired account.
            assert obs[i, 5] == 0 and obs[i, 2] == 0 and obs[i, 15] == 0
    assert seen_truncated > 0 and seen_terminated > 0


def test_last_info_keys_and_shapes():
    n = 7
    venv = envs.make_portfolio("wechat", n, seed=0)
    venv.reset()
    venv.step(np.full(n, envs.HOLD_ACTION))
    info = venv.last_info
    assert set(info) == set(INFO_KEYS)
    assert set(info["reward_components"]) == set(REWARD_COMPONENTS)
    for key in INFO_KEYS:
        arrays = info[key].values() if key == "reward_components" else [info[key]]
        for value in arrays:
            assert isinstance(value, np.ndarray) and value.shape == (n,), key


def test_last_info_is_not_overwritten_by_the_next_step():
    venv = envs.make_portfolio("wechat", 5, seed=0)
    venv.reset()
    venv.step(np.full(5, envs.HOLD_ACTION))
    kept = venv.last_info
    snapshot = {
        k: (v.copy() if isinstance(v, np.ndarray) else {n: a.copy() for n, a in v.items()}) for k, v in kept.items()
    }
    for _ in range(3):
        venv.step(np.full(5, 6))
    for key, value in snapshot.items():
        if key == "reward_components":
            for name, array in value.items():
                np.testing.assert_array_equal(kept[key][name], array, err_msg=name)
        else:
            np.testing.assert_array_equal(kept[key], value, err_msg=key)


# -- determinism --------------------------------------------------------------------------------------


def _assert_same(a: list[tuple], b: list[tuple]) -> None:
    for x, y in zip(a, b, strict=False):
        for u, v in zip(x, y, strict=False):
            if isinstance(u, dict):
                assert u.keys() == v.keys()
                for i in u:
                    np.testing.assert_array_equal(u[i][0], v[i][0])
                    assert u[i][1] == v[i][1]
            else:
                np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("continuous", [False, True])
def test_same_seed_same_trajectory(continuous):
    runs = [
        _rollout(envs.make_portfolio("wechat", 20, seed=42, continuous=continuous, **SHORT), 15, continuous)
        for _ in range(2)
    ]
    _assert_same(*runs)


def test_different_seeds_different_trajectories():
    a = _rollout(envs.make_portfolio("wechat", 20, seed=1), 5, False)
    b = _rollout(envs.make_portfolio("wechat", 20, seed=2), 5, False)
    assert not np.array_equal(a[0][0], b[0][0])
    # Seeds 1 and 2 share 19 accounts, shifted by one place: the overlap must match, the rest not.
    np.testing.assert_array_equal(a[0][0][1:], b[0][0][:-1])


def test_unseeded_portfolios_differ():
    a, b = envs.make_portfolio("wechat", 20), envs.make_portfolio("wechat", 20)
    assert not np.array_equal(a.reset(), b.reset())


def test_single_env_reset_with_seed_is_reproducible():
    env = gym.make("CreditLine-v0", preset="alipay", **SHORT)
    first = [env.reset(seed=9)[0]] + [env.step(a)[0] for a in (6, 6, 0, 3)]
    again = [env.reset(seed=9)[0]] + [env.step(a)[0] for a in (6, 6, 0, 3)]
    np.testing.assert_array_equal(np.array(first), np.array(again))
    assert not np.array_equal(env.reset(seed=10)[0], first[0])


@pytest.mark.parametrize("continuous", [False, True])
def test_account_does_not_depend_on_batch_size(continuous):
    small = _rollout(envs.make_portfolio("douyin", 3, seed=100, continuous=continuous, **SHORT), 20, continuous)
    # Same actions for the first three accounts: draw the 10-account actions so their first 3 columns match.
    rng_small, rng_large = np.random.default_rng(0), np.random.default_rng(0)
    large_env = envs.make_portfolio("douyin", 10, seed=100, continuous=continuous, **SHORT)
    obs_large = large_env.reset()
    np.testing.assert_array_equal(obs_large[:3], small[0][0])
    for t in range(1, 21):
        actions = _actions(rng_small, 3, continuous)
        extra = _actions(rng_large, 10, continuous)
        extra[:3] = actions
        obs, rewards, dones, _ = large_env.step(extra)
        np.testing.assert_array_equal(obs[:3], small[t][0], err_msg=f"step {t}")
        np.testing.assert_array_equal(rewards[:3], small[t][1])
        np.testing.assert_array_equal(dones[:3], small[t][2])


def test_macro_regime_is_shared_and_keyed_on_macro_seed():
    def stress_path(macro_seed: int, n: int) -> list[bool]:
        venv = envs.make_portfolio("wechat", n, seed=0, **{"macro.seed": macro_seed, "macro.enter_stress": 0.2})
        venv.reset()
        path = []
        for _ in range(40):
            obs, *_ = venv.step(np.full(n, envs.HOLD_ACTION))
            assert np.all(obs[:, 16] == obs[0, 16])  # one regime for the whole portfolio
            path.append(bool(obs[0, 16]))
        return path

    assert stress_path(3, 2) == stress_path(3, 9)  # independent of the accounts
    assert stress_path(3, 2) != stress_path(4, 2)  # a different evaluation seed, a different macro path
    assert any(stress_path(3, 2))


# -- bad actions and misuse ---------------------------------------------------------------------------


@pytest.mark.parametrize("action", [7, -1, 2.5, np.int64(99)])
def test_invalid_discrete_action_raises(action):
    env = gym.make("CreditLine-v0").unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="discrete actions"):
        env.step(action)
    venv = envs.make_portfolio("wechat", 3, seed=0)
    venv.reset()
    with pytest.raises(ValueError, match="discrete actions"):
        venv.step(np.array([3, action, 3]))


@pytest.mark.parametrize(
    "dtype, bad", [(np.uint64, 2**64 - 1), (np.uint64, 2**64 - 7), (np.uint8, 7), (np.int8, -1), (np.int32, 7)]
)
def test_invalid_discrete_action_of_any_integer_dtype_raises(dtype, bad):
    # (take() would wrap these to valid indices if they were not checked)
    venv = envs.make_portfolio("wechat", 3, seed=0)
    venv.reset()
    with pytest.raises(ValueError, match="discrete actions"):
        venv.step(np.array([3, bad, 3], dtype=dtype))
    obs, _, _, _ = venv.step(np.array([3, 3, 6], dtype=dtype))  # valid ones of the same dtype work
    assert obs.shape == (3, 17)


def test_portfolio_infos_are_safe_to_copy_pickle_and_not_to_write_into():
    import copy
    import pickle

    venv = envs.make_portfolio("wechat", 50, seed=0, **{"env.horizon": 2})
    venv.reset()
    venv.step(np.full(50, envs.HOLD_ACTION))
    _, _, dones, infos = venv.step(np.full(50, envs.HOLD_ACTION))
    assert dones.all()  # the horizon: every account ended and has its own dict
    ended = infos[0]
    assert ended["TimeLimit.truncated"] is True and ended["terminal_observation"].shape == (17,)
    ended["extra"] = 1.0  # an ended account's dict is its own; wrappers (VecNormalize) edit them
    assert "extra" in infos[0] and "extra" not in infos[1]
    _, _, dones, infos = venv.step(np.full(50, envs.HOLD_ACTION))
    assert not dones.any()
    blank = infos[7]
    assert isinstance(blank, dict) and blank == {} and blank.get("terminal_observation") is None
    with pytest.raises(TypeError, match="last_info"):
        blank["cost"] = 1.0  # would otherwise reach every account that shares it
    assert infos[8] == {}
    for clone in (copy.copy(blank), copy.deepcopy(blank), pickle.loads(pickle.dumps(blank))):
        clone["cost"] = 1.0  # copies are ordinary dicts
    assert pickle.loads(pickle.dumps(infos)) == list(infos)
    assert len(copy.deepcopy(venv).step(np.full(50, envs.HOLD_ACTION))[0]) == 50  # the VecEnv deep-copies


def test_portfolio_rejects_wrong_number_of_actions():
    venv = envs.make_portfolio("wechat", 3, seed=0)
    venv.reset()
    with pytest.raises(ValueError, match="expected 3 actions"):
        venv.step(np.array([3, 3]))


def test_step_before_reset_raises():
    with pytest.raises(RuntimeError, match="reset"):
        gym.make("CreditLine-v0").unwrapped.step(3)
    with pytest.raises(RuntimeError, match="reset"):
        envs.make_portfolio("wechat", 2, seed=0).step(np.array([3, 3]))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_continuous_action_raises(bad):
    env = gym.make("CreditLineContinuous-v0").unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError):
        obs, reward, *_ = env.step(np.array([bad], dtype=np.float32))
        # Reached only if no error: then at least nothing may be silently wrong.
        assert np.all(np.isfinite(obs)) and np.isfinite(reward)


def test_wrong_shape_action_on_single_env_raises_clearly():
    env = gym.make("CreditLineContinuous-v0").unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.array([0.1, 0.2], dtype=np.float32))
    assert env.sim.state.line.shape == (1,)


# -- a real consumer ----------------------------------------------------------------------------------


@pytest.mark.slow  # torch import and a few PPO updates: ~5-10 s
@pytest.mark.parametrize("continuous", [False, True])
def test_sb3_ppo_trains_on_a_portfolio(continuous):
    from stable_baselines3 import PPO

    venv = envs.make_portfolio("wechat", 8, seed=0, continuous=continuous, **SHORT)
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    actions, _ = model.predict(venv.reset(), deterministic=True)
    assert venv.action_space.contains(actions[0])
