"""The exported actor takes the SB3 agent's actions, from memory or from its files, on a book of any size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecNormalize

import agents.policy_export as policy_export
import envs
from agents.policy_export import ExportedPolicy, export_policy, normalisation_arrays


def _model(net_arch: tuple[int, ...] = (16, 16)) -> tuple[PPO, VecNormalize, np.ndarray]:
    venv = VecNormalize(envs.make_portfolio("wechat", 256, seed=3), norm_reward=False)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=8,
        batch_size=64,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": list(net_arch), "activation_fn": torch.nn.Tanh},
    )
    with torch.no_grad():  # large random weights: a policy that uses several of the seven actions
        for p in model.policy.parameters():
            p.mul_(8.0)
    venv.reset()
    for _ in range(12):  # observation statistics away from their initial zeros and ones
        venv.step(np.random.default_rng(0).integers(0, 7, 256))
    venv.training = False
    return model, venv, venv.get_original_obs()


def test_actor_from_memory_acts_as_the_sb3_model():
    model, venv, raw = _model()
    expected, _ = model.predict(venv.normalize_obs(raw).astype(np.float32), deterministic=True)
    actor = ExportedPolicy.from_model("ppo", model, venv, "tanh")
    actions, state = actor.predict(raw)
    assert state is None and actions.shape == (256,)
    assert len(np.unique(expected)) >= 3  # the check covers more than one action
    np.testing.assert_array_equal(actions, expected)
    assert actor.predict(raw[0])[0] == actions[0]
    assert "in memory" in repr(actor)


def test_actor_from_files_acts_as_the_one_from_memory(tmp_path):
    model, venv, raw = _model()
    export_policy(tmp_path, "ppo", model.policy.state_dict(), "tanh", 0)
    rms = venv.obs_rms
    np.savez(
        tmp_path / "vecnormalize.npz", **normalisation_arrays(rms.mean, rms.var, venv.epsilon, venv.clip_obs, True)
    )
    np.testing.assert_array_equal(
        ExportedPolicy(tmp_path).predict(raw)[0], ExportedPolicy.from_model("ppo", model, venv, "tanh").predict(raw)[0]
    )


def test_a_book_larger_than_a_chunk_gets_the_actions_of_one_pass(monkeypatch):
    model, venv, raw = _model()
    actor = ExportedPolicy.from_model("ppo", model, venv, "tanh")
    whole, _ = actor.predict(raw)
    monkeypatch.setattr(policy_export, "_CHUNK", 37)  # 256 accounts: six full chunks and a partial one
    np.testing.assert_array_equal(actor.predict(raw)[0], whole)


def test_actors_of_other_sizes_in_turn_share_the_kept_buffers_and_act_as_sb3(monkeypatch):
    # The forward pass reuses buffers between calls (and between actors): a stale row or a buffer of
    # another width would change actions.
    monkeypatch.setattr(policy_export, "_CHUNK", 100)
    models = [_model((16, 16)), _model((24,)), _model((16, 16, 8))]
    actors = [ExportedPolicy.from_model("ppo", m, v, "tanh") for m, v, _ in models]
    for rows in (256, 7, 256, 130, 1, 256):
        for (model, venv, raw), actor in zip(models, actors, strict=True):
            expected, _ = model.predict(venv.normalize_obs(raw[:rows]).astype(np.float32), deterministic=True)
            np.testing.assert_array_equal(actor.predict(raw[:rows])[0], expected)


def test_unknown_algorithm_or_activation_is_named():
    model, venv, _ = _model()
    with pytest.raises(ValueError, match="unknown algo 'td3'"):
        ExportedPolicy.from_model("td3", model, venv, "tanh")
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        ExportedPolicy.from_model("ppo", model, venv, "gelu")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_compiled_normalisation_is_numpys_bit_for_bit(dtype):
    rng = np.random.default_rng(0)
    mean, scale, clip = rng.normal(0, 50, 17), rng.uniform(0.01, 30, 17), 10.0
    obs = rng.normal(0, 300, (500, 17)).astype(dtype)
    obs[::7, 3] = np.nan
    obs[::11, 5], obs[::13, 6] = np.inf, -np.inf
    obs[1, :] = (mean + clip * scale).astype(dtype)  # on the bounds (up to the cast)
    obs[2, :], obs[3, :] = -0.0, 0.0
    index = rng.permutation(500)[:300]
    for rows, start in ((np.zeros(0, dtype=np.int64), 40), (index, 17)):
        out = np.empty((250, 17), dtype=np.float32)
        policy_export._normalise_rows(obs, rows, start, mean, scale, clip, out)
        taken = obs[start : start + 250] if rows.size == 0 else obs[rows[start : start + 250]]
        with np.errstate(invalid="ignore"):
            x = np.asarray(taken, dtype=np.float32) - mean  # the numpy expression of ExportedPolicy._normalize_into
            expected = np.clip(x / scale, -clip, clip).astype(np.float32)
        assert out.tobytes() == expected.tobytes()


def test_actions_of_rows_in_place_are_those_of_the_copied_rows(monkeypatch):
    model, venv, raw = _model()
    actor = ExportedPolicy.from_model("ppo", model, venv, "tanh")
    monkeypatch.setattr(policy_export, "_CHUNK", 50)
    rows = np.random.default_rng(1).permutation(256)[:173]
    expected, _ = model.predict(venv.normalize_obs(raw[rows]).astype(np.float32), deterministic=True)
    np.testing.assert_array_equal(actor.predict_rows(raw, rows), expected)
    assert actor.predict_rows(raw, rows[:0]).shape == (0,)
    for bad in (np.array([0, 256]), np.array([-1]), np.array([0.0])):
        with pytest.raises(IndexError, match="rows must be indices"):
            actor.predict_rows(raw, bad)
