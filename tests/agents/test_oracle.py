"""The privileged oracle: it reads the hidden state, earns clearly less without it, and is tuned like the rule."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from agents.evaluation import evaluate, portfolio_seed
from agents.oracle import UPPER_BOUND_LABEL, Oracle, OracleParams, hidden_state, sample_oracle_params
from agents.tuning import tune_oracle
from envs.actions import HOLD_ACTION, LIMIT_MULTIPLIERS

SEEDS = (40, 41, 42)  # labels of these tests only


class _NoisyOracle(Oracle):
    """The same rule on hidden state shuffled across accounts: the right distribution, the wrong borrowers."""

    def __init__(self, params: OracleParams, seed: int):
        super().__init__(params)
        self._rng = np.random.default_rng(seed)

    def _hidden(self, sim):
        hidden = super()._hidden(sim)
        order = self._rng.permutation(sim.num_accounts)
        return {name: np.asarray(value)[order] for name, value in hidden.items()}


def test_the_oracle_is_labelled_an_upper_bound_and_needs_a_simulator():
    oracle = Oracle()
    assert oracle.privileged and oracle.label == UPPER_BOUND_LABEL
    obs = envs.make_portfolio("wechat", 10, seed=0).reset()
    with pytest.raises(RuntimeError, match="bind_simulator"):
        oracle.predict(obs)
    venv = envs.make_portfolio("wechat", 10, seed=0)
    oracle.bind_simulator(venv.sim)
    venv.reset()
    with pytest.raises(ValueError, match="10 accounts"):
        oracle.predict(obs[:5])


def test_miss_probability_matches_the_misses_that_follow():
    # Independent check of the fallback hazard: among current accounts with a balance, the mean predicted
    # probability of missing next month is the share that does miss (lines held), within sampling error.
    venv = envs.make_portfolio("wechat", 20_000, seed=portfolio_seed(43), **{"macro.seed": 43})
    venv.reset()
    hold = np.full(venv.num_envs, HOLD_ACTION)
    for _ in range(6):
        venv.step(hold)
    s = venv.sim.state
    at_risk = (s.months_past_due == 0) & (s.balance > 0) & ~s.closing & (s.months_to_balloon != 1)
    predicted = hidden_state(venv.sim)["miss_probability"][at_risk]
    venv.step(hold)
    missed = venv.last_info["months_past_due"][at_risk] == 1
    sd = np.sqrt(np.sum(predicted * (1 - predicted))) / at_risk.sum()
    assert abs(missed.mean() - predicted.mean()) < 4 * sd, (missed.mean(), predicted.mean(), sd)


def test_the_oracle_earns_clearly_less_when_its_hidden_state_is_noise():
    # Fails if the oracle ignores the hidden state: then shuffling it changes nothing.
    params = OracleParams()
    policies = {"oracle": Oracle(params), "noise": _NoisyOracle(params, seed=0)}
    summary = evaluate(policies, "wechat", 2000, SEEDS, progress=False, reference="noise").summary
    row = summary.set_index("policy").loc["oracle"]
    assert row["uplift_vs_best_static"] > 0.05, row["uplift_vs_best_static"]
    assert row["revenue_diff_ci_low"] > 0


def test_v2_hidden_state_is_used_when_the_simulator_has_it():
    # A simulator with hidden_state() (simulator v2) is read instead of the fallback: a certain miss cuts.
    venv = envs.make_portfolio("wechat", 50, seed=0)
    obs = venv.reset()
    fallback = hidden_state(venv.sim)
    venv.sim.hidden_state = lambda idx=None: {**fallback, "miss_probability": np.ones(50)}
    oracle = Oracle(OracleParams(cut_probability=0.9, cut_multiplier=0.75, line_floor=0.5))
    oracle.bind_simulator(venv.sim)
    actions, _ = oracle.predict(obs)
    assert np.all(actions == LIMIT_MULTIPLIERS.index(0.75))
    venv.sim.hidden_state = lambda idx=None: {"miss_probability": np.ones(50)}
    with pytest.raises(KeyError, match="unemployed"):
        hidden_state(venv.sim)


def test_oracle_params_are_validated_and_sampled_inside_their_space():
    with pytest.raises(ValueError, match="cut_probability"):
        OracleParams(cut_probability=0.0)
    with pytest.raises(ValueError, match="raise_multiplier"):
        OracleParams(raise_multiplier=1.3)
    rng = np.random.default_rng(0)
    draws = [sample_oracle_params(rng) for _ in range(50)]  # each one validated by OracleParams
    assert len({d.cut_probability for d in draws}) == 50


def test_tune_oracle_keeps_its_seeds_apart_and_picks_under_the_cap():
    with pytest.raises(ValueError, match="overlap"):
        tune_oracle("wechat", (50, 51), 200, n_trials=2, progress=False, holdout_seeds=(51,))
    result = tune_oracle("wechat", (50, 51), 300, n_trials=4, progress=False, months=12, holdout_seeds=(60,))
    table = result.table
    assert len(table) == 4 and table["chosen"].sum() == 1
    chosen = table[table["chosen"]].iloc[0]
    meets = table[table["meets_cap"]]
    if len(meets):
        assert chosen["per_user_revenue"] == meets["per_user_revenue"].max()
    assert chosen["cut_probability"] == result.params.cut_probability
    assert chosen["raise_probability"] == result.params.raise_probability
