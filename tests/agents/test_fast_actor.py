"""The batched numpy/torch actor takes the same actions as the SB3 agent it was exported from."""

from __future__ import annotations

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecNormalize

import envs
from agents.fast_actor import NumpyActor
from agents.training import TrainedAgent, agent_paths


def _agent(tmp_path) -> tuple[TrainedAgent, np.ndarray]:
    venv = VecNormalize(envs.make_portfolio("wechat", 256, seed=3), norm_reward=False)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=8,
        batch_size=64,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [16, 16], "activation_fn": torch.nn.Tanh},
    )
    with torch.no_grad():  # large random weights: a policy that uses all seven actions
        for p in model.policy.parameters():
            p.mul_(8.0)
    venv.reset()
    for _ in range(12):
        venv.step(np.random.default_rng(0).integers(0, 7, 256))
    venv.training = False
    raw = venv.get_original_obs()
    return TrainedAgent("ppo", model, venv, agent_paths(tmp_path, "ppo")), raw


def test_actor_acts_as_the_sb3_agent(tmp_path):
    agent, raw = _agent(tmp_path)
    expected, _ = agent.predict(raw, deterministic=True)
    actor = NumpyActor.from_agent(agent)
    actions, state = actor.predict(raw)
    assert state is None and actions.shape == (256,)
    assert len(np.unique(expected)) >= 3  # the check covers more than one action
    # float32 forward passes in another order: allow a rare tie-break on a near-equal pair of logits
    assert np.mean(actions == expected) >= 0.99
    assert actor.predict(raw[0])[0] == actions[0]


def test_actor_from_files(tmp_path):
    agent, raw = _agent(tmp_path)
    torch.save(agent.model.policy.state_dict(), tmp_path / "policy.pt")
    rms = agent.vecnormalize.obs_rms
    np.savez(tmp_path / "vecnormalize.npz", mean=rms.mean, var=rms.var, clip_obs=10.0, epsilon=1e-8)
    np.testing.assert_array_equal(
        NumpyActor.from_files(tmp_path).predict(raw)[0], NumpyActor.from_agent(agent).predict(raw)[0]
    )
