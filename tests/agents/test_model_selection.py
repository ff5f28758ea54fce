"""PPO's training portfolio spans several macro paths; the agent kept is the best under the cap on tuning seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import agents.model_selection as selection_module
import envs
from agents.agent_config import Randomisation
from agents.evaluation import evaluate, portfolio_seed
from agents.multibook import make_multibook, randomised_config
from agents.training import load_agent, train
from envs.config import load_config

BOOKS = [300, 301, 302, 303]
TUNING = [310, 311]
TINY = {
    "n_steps": 8,
    "batch_size": 128,
    "n_epochs": 2,
    "net_arch": [16],
    "checkpoint_every": 256,
    "training.sub_books": 4,
    "training.selection_every": 256,
    "training.selection_accounts": 100,
    "policy.hold_bias": 0.0,  # a random start: checkpoints that act differently
}


def test_each_sub_book_is_the_portfolio_of_its_own_seed():
    config = load_config("wechat")
    multi = make_multibook(config, BOOKS[:2], 50)
    obs = multi.reset()
    for j, seed in enumerate(BOOKS[:2]):
        alone = envs.make_portfolio(config, 50, seed=portfolio_seed(seed), **{"macro.seed": seed})
        np.testing.assert_array_equal(obs[50 * j : 50 * (j + 1)], alone.reset())
        assert multi.books[j].config.macro.seed == seed
    hold = np.full(100, envs.HOLD_ACTION)
    _, rewards, dones, infos = multi.step(hold)
    assert rewards.shape == dones.shape == (100,) and len(infos) == 100
    assert multi.last_info["cost"].shape == (100,)
    assert multi.last_info["reward_components"]["interest"].shape == (100,)


def test_randomised_parameters_stay_in_their_ranges_and_differ_by_seed():
    config = load_config("wechat")
    rand = Randomisation(enabled=True)
    drawn = [randomised_config(config, rand, s) for s in range(30)]
    band = (config.product.apr_low, config.product.apr_high)
    for c in drawn:
        assert band[0] < c.product.apr_high <= band[1]  # every price stays inside the document's band
        ratio = c.default.job_loss_rate / config.default.job_loss_rate
        assert rand.job_loss[0] <= ratio <= rand.job_loss[1]
        assert rand.stress_frequency[0] <= c.macro.enter_stress / config.macro.enter_stress <= rand.stress_frequency[1]
    assert len({c.macro.enter_stress for c in drawn}) == 30
    assert randomised_config(config, Randomisation(), 3) is config  # disabled: the preset itself


def test_seeds_of_training_tuning_and_evaluation_must_not_overlap(tmp_path):
    with pytest.raises(ValueError, match="overlap"):
        train(
            "ppo", "wechat", tmp_path, 256, num_accounts=64, book_seeds=BOOKS, tuning_seeds=[303], agent_overrides=TINY
        )
    with pytest.raises(ValueError, match="overlap"):
        train(
            "ppo",
            "wechat",
            tmp_path,
            256,
            num_accounts=64,
            book_seeds=BOOKS,
            tuning_seeds=TUNING,
            holdout_seeds=[311],
            agent_overrides=TINY,
        )


@pytest.mark.slow
def test_the_agent_saved_is_the_checkpoint_kept_on_the_tuning_seeds(tmp_path, monkeypatch):
    seen: set[int] = set()

    def spy(policies, config, accounts, seeds, *args, **kwargs):
        seen.update(seeds)
        return evaluate(policies, config, accounts, seeds, *args, months=6, **kwargs)

    monkeypatch.setattr(selection_module, "evaluate", spy)
    train(
        "ppo",
        "wechat",
        tmp_path,
        total_timesteps=1024,
        seed=BOOKS[0],
        num_accounts=64,
        agent_overrides=TINY,
        progress=False,
        book_seeds=BOOKS,
        tuning_seeds=TUNING,
        holdout_seeds=[320],
    )
    assert seen == set(TUNING)  # selection never looked at any other seed
    table = pd.read_csv(tmp_path / "agents" / "ppo" / "selection.csv")
    assert len(table) >= 2 and table["kept"].sum() >= 1
    kept = table[table["kept"]].iloc[0]
    meeting = table[table["meets_cap"]]
    if len(meeting):
        assert kept["per_user_revenue"] == meeting["per_user_revenue"].max()
    # The saved agent is that checkpoint: evaluated again the same way, it scores what was recorded.
    agent = load_agent(tmp_path, "ppo")
    again = evaluate({"a": agent}, "wechat", 100, TUNING, months=6, progress=False, reference=None, n_boot=10)
    assert again.summary["per_user_revenue"].iloc[0] == pytest.approx(kept["per_user_revenue"], rel=1e-9)
