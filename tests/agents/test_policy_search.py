"""Direct policy search: the batched rollout is the evaluator's measure, seeds stay apart, files are plain JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

import agents.policy_search as ps
from agents.evaluation import evaluate
from agents.policy_search import (
    FEATURES,
    TARGET_RANGE,
    LinearScorePolicy,
    PolicySearchConfig,
    feasibility_first,
    features,
    population_rollout,
    train_policy_search,
)
from envs.actions import LIMIT_MULTIPLIERS
from envs.config import load_config

TINY = PolicySearchConfig(
    generations=2,
    popsize=4,
    sigma0=0.3,
    accounts=100,
    training_seeds=2,
    target_share=1.0,
    select_every=1,
    select_accounts=100,
)


def _weights(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.4, len(FEATURES))


def test_population_rollout_is_the_evaluators_measure():
    # Every candidate in one simulator must give exactly the evaluator's per-user revenue and M3+ rate.
    weights = [np.zeros(len(FEATURES)), _weights(1), _weights(2)]
    revenue, m3 = population_rollout(weights, "wechat", 300, seed=70, months=18)
    policies = {f"c{i}": LinearScorePolicy(w) for i, w in enumerate(weights)}
    summary = evaluate(policies, "wechat", 300, [70], months=18, progress=False, reference=None).summary
    np.testing.assert_allclose(revenue, summary["per_user_revenue"], rtol=1e-9)
    np.testing.assert_allclose(m3, summary["m3plus_rate"], rtol=1e-9)
    assert len(set(np.round(revenue, 6))) == 3  # the candidates really act differently


def test_the_line_moves_toward_its_target_and_holds_there():
    obs = np.zeros((1, 17), dtype=np.float32)
    obs[:, 0] = obs[:, 1] = 10_000.0  # line at the origination line
    obs[:, 9], obs[:, 10] = 600.0, 0.12  # score and APR features 0
    obs[:, 6:9] = 0.5  # payment ratios: neither a minimum payer nor a transactor
    obs[:, 15] = 12.0  # months since the line changed: line_unchanged is 1
    weights = np.zeros(len(FEATURES))
    weights[0] = np.log(1.8)  # target 1.8 x the origination line: x1.5, then x1.25 (1.875), then hold
    policy, steps = LinearScorePolicy(weights), []
    for _ in range(4):
        action = int(policy.predict(obs)[0][0])
        steps.append(LIMIT_MULTIPLIERS[action])
        obs[:, 0] = np.round(obs[:, 0] * LIMIT_MULTIPLIERS[action], -2)
    assert steps == [1.5, 1.25, 1.0, 1.0]
    # Back to a target of 1 x from 1.875 x: x0.5 lands closest (0.94 x).
    assert np.all(LinearScorePolicy(np.zeros(len(FEATURES))).predict(obs)[0] == LIMIT_MULTIPLIERS.index(0.5))
    weights[0] = np.log(10.0)  # beyond the range: the target is 5 x, and 1.875 x is more than a step short
    assert int(LinearScorePolicy(weights).predict(obs)[0][0]) == LIMIT_MULTIPLIERS.index(1.5)
    np.testing.assert_allclose(TARGET_RANGE, np.log([0.02, 5.0]))


def test_the_current_multiple_makes_a_target_relative_to_todays_line():
    # With weight 1 on log(line / origination line) and the bias at log(0.5), the target is half of today's
    # line whatever the line: every month a cut by 0.5, from any starting point.
    weights = np.zeros(len(FEATURES))
    weights[list(FEATURES).index("current_multiple")] = 1.0
    weights[0] = np.log(0.5)
    obs = np.zeros((3, 17), dtype=np.float32)
    obs[:, 1] = 10_000.0
    obs[:, 0] = [3_000.0, 10_000.0, 25_000.0]
    obs[:, 9], obs[:, 10] = 600.0, 0.12
    actions = LinearScorePolicy(weights).predict(obs)[0]
    assert list(actions) == [LIMIT_MULTIPLIERS.index(0.5)] * 3


def test_risk_flags_read_the_observation_they_name():
    col = {name: i for i, name in enumerate(FEATURES)}
    obs = np.zeros((2, 17), dtype=np.float32)
    obs[:, 0] = obs[:, 1] = 10_000.0
    obs[:, 2] = [9_600.0, 1_000.0]  # balance
    obs[:, 3] = [0.96, 0.1]  # utilisation
    obs[:, 4] = [2.0, 0.0]  # months past due
    obs[:, 6:9] = [[0.05, 0.3, 1.0], [1.0, 1.0, 1.0]]  # payment ratios
    obs[:, 9] = [500.0, 760.0]  # behaviour score
    f = features(obs)
    np.testing.assert_array_equal(f[:, col["full_utilisation"]], [1.0, 0.0])
    np.testing.assert_array_equal(f[:, col["delinquent"]], [1.0, 0.0])
    np.testing.assert_array_equal(f[:, col["minimum_payer"]], [1.0, 0.0])
    np.testing.assert_array_equal(f[:, col["full_payer"]], [0.0, 1.0])
    np.testing.assert_allclose(f[:, col["score_below_550"]], [0.5, 0.0])
    np.testing.assert_allclose(f[:, col["score_above_700"]], [0.0, 0.6])
    np.testing.assert_allclose(f[:, col["drawn_of_origination"]], [0.96, 0.1])


def test_measure_is_the_evaluators_summary():
    policies = {"a": LinearScorePolicy(_weights(4)), "b": LinearScorePolicy(_weights(5))}
    config = load_config("wechat").model_copy()
    config = config.model_copy(update={"env": config.env.model_copy(update={"horizon": 12})})
    measured = ps._measure(policies, config, 200, [71, 72])
    summary = evaluate(policies, config, 200, [71, 72], progress=False, reference=None).summary.set_index("policy")
    np.testing.assert_allclose(measured["per_user_revenue"], summary.loc[["a", "b"], "per_user_revenue"], rtol=1e-9)
    np.testing.assert_allclose(measured["m3plus_rate"], summary.loc[["a", "b"], "m3plus_rate"], rtol=1e-9)


def test_the_search_starts_at_the_best_flat_target_on_the_training_seeds():
    # The start is the bias alone, at one of START_TARGETS, and it is the feasible one with the most revenue
    # by the same batched measure.
    start, name = ps.static_start(load_config("wechat"), [73], 150, limit=1.0)
    assert np.count_nonzero(start[1:]) == 0 and np.isclose(np.exp(start[0]), ps.START_TARGETS).any()
    grid = [np.eye(len(FEATURES))[0] * np.log(x) for x in ps.START_TARGETS]
    revenue, _ = population_rollout(grid, "wechat", 150, 73)
    assert start[0] == pytest.approx(grid[int(np.argmax(revenue))][0]) and name.startswith("initial (static x")


def test_save_and_load_round_trip_as_json(tmp_path):
    policy = LinearScorePolicy(_weights(3))
    path = tmp_path / "policy_search.json"
    policy.save(path, preset="wechat")
    data = json.loads(path.read_text())
    assert data["features"] == list(FEATURES) and data["metadata"] == {"preset": "wechat"}
    np.testing.assert_array_equal(LinearScorePolicy.load(path).weights, policy.weights)
    data["features"] = data["features"][::-1]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="features"):
        LinearScorePolicy.load(path)
    path.write_text("{}")
    with pytest.raises(ValueError, match="not a"):
        LinearScorePolicy.load(path)
    with pytest.raises(ValueError, match=f"{len(FEATURES)} finite"):
        LinearScorePolicy([1.0, 2.0])


def test_feasibility_first_ranks_every_feasible_candidate_above_the_rest():
    fitness = feasibility_first(np.array([100.0, 900.0, 300.0, -50.0]), np.array([0.01, 0.03, 0.015, 0.02]), 0.018)
    assert list(np.argsort(fitness)) == [2, 0, 3, 1]  # feasible by revenue, then by excess over the limit


def test_training_and_selection_use_only_their_own_seeds(monkeypatch):
    used: dict[str, set[int]] = {"rollout": set(), "evaluate": set()}
    rollout, measure = ps.population_rollout, ps._measure
    selecting = [False]  # model selection runs the batched rollout too: its seeds are counted apart

    def spy_rollout(weights, config, accounts, seed, months=None):
        if not selecting[0]:
            used["rollout"].add(seed)
        return rollout(weights, config, accounts, seed, 6)

    def spy_measure(policies, config, accounts, seeds):
        used["evaluate"].update(seeds)
        selecting[0] = True
        try:
            return measure(policies, config, accounts, seeds)
        finally:
            selecting[0] = False

    monkeypatch.setattr(ps, "population_rollout", spy_rollout)
    monkeypatch.setattr(ps, "_measure", spy_measure)
    result = train_policy_search("wechat", (80, 81, 82), (90, 91), holdout_seeds=(95,), settings=TINY, progress=False)
    assert used["rollout"] == {80, 81}  # the first TINY.training_seeds training seeds, nothing else
    assert used["evaluate"] == {90, 91}  # model selection on the tuning seeds only
    assert len(result.history) == TINY.generations + 1
    with pytest.raises(ValueError, match="overlap"):
        train_policy_search("wechat", (80, 81), (81, 90), settings=TINY, progress=False)
    with pytest.raises(ValueError, match="overlap"):
        train_policy_search("wechat", (80, 81), (90,), holdout_seeds=(90,), settings=TINY, progress=False)


def test_same_search_seed_same_policy_whatever_numpys_global_generator_does():
    def run():
        np.random.seed(np.random.randint(1 << 30))  # someone else's use of the global generator
        settings = TINY.model_copy(update={"select_every": 5})
        return train_policy_search("wechat", (83, 84), (92,), settings=settings, search_seed=5, progress=False)

    first, second = run(), run()
    np.testing.assert_array_equal(first.policy.weights, second.policy.weights)
    np.testing.assert_array_equal(first.history["training_best_revenue"], second.history["training_best_revenue"])
