"""The population rollout: many candidates in one simulator per seed give exactly the evaluator's figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agents.evaluation import evaluate
from agents.oracle import Oracle, OracleParams, sample_oracle_params
from agents.policies import BestStatic, RuleBased, StaticHold
from agents.policy_search import FEATURES, LinearScorePolicy
from agents.population import BlockView, population_metrics, population_runs, population_summary
from agents.tuning import sample_rule_params
from envs.config import load_config
from envs.simulator import Simulator

ACCOUNTS, MONTHS, SEEDS = 300, 18, (40, 41)


def _candidates() -> dict:
    """Static, rule and oracle candidates (new objects each call: an oracle is bound to one run)."""
    rng = np.random.default_rng(1)
    return {
        "hold": StaticHold(),
        "x0.25": BestStatic(0.25),
        "x1.5": BestStatic(1.5),
        "x0.75_box": BestStatic(0.75, continuous=True),  # Box actions, as CreditLineContinuous-v0
        "rule": RuleBased(),
        "rule_drawn": RuleBased(sample_rule_params(rng)),
        "oracle": Oracle(),
        "oracle_drawn": Oracle(sample_oracle_params(rng)),
    }


def test_population_summary_is_the_evaluators_summary_exactly():
    # Every candidate in one simulator per seed: the same accounts, shocks and sums as one portfolio each.
    expected = evaluate(_candidates(), "wechat", ACCOUNTS, SEEDS, months=MONTHS, progress=False, reference=None)
    got = population_summary(_candidates(), "wechat", ACCOUNTS, SEEDS, months=MONTHS, progress=False)
    pd.testing.assert_frame_equal(got, expected.summary[got.columns], check_exact=True)
    assert got["per_user_revenue"].nunique() == len(got)  # the candidates really act differently
    assert got["run_off_revenue"].abs().min() > 0  # and the run-off (on a cut-down simulator) is booked


def test_batches_of_a_seed_give_the_same_figures():
    whole = population_summary(_candidates(), "wechat", ACCOUNTS, SEEDS, months=MONTHS, progress=False)
    batched = population_summary(
        _candidates(), "wechat", ACCOUNTS, SEEDS, months=MONTHS, progress=False, max_slots=2 * ACCOUNTS
    )
    pd.testing.assert_frame_equal(whole, batched, check_exact=True)


def test_a_privileged_policy_reads_only_its_own_block():
    config = load_config("wechat", {"macro.seed": 3})
    sim = Simulator(config, 30)
    sim.seed_accounts(np.arange(30), np.arange(30, dtype=np.uint64))  # 30 different accounts
    sim.restart_calendar()
    view = BlockView(sim, slice(10, 20), {})
    hidden, full = view.hidden_state(), sim.hidden_state()
    assert view.num_accounts == 10 and len(view.state) == 10
    for name, value in hidden.items():
        np.testing.assert_array_equal(value, full[name][10:20], err_msg=name)
    np.testing.assert_array_equal(view.state.origination_line, sim.state.origination_line[10:20])
    oracle = Oracle(OracleParams())
    oracle.bind_simulator(view)
    with pytest.raises(ValueError, match="10 accounts"):  # the oracle checks the batch against its block
        oracle.predict(np.zeros((30, 17), dtype=np.float32))


class _WrongShape(StaticHold):
    def _actions(self, obs: np.ndarray) -> np.ndarray:
        return super()._actions(obs)[:-1]


def test_bad_input_is_named():
    config = load_config("wechat")
    with pytest.raises(ValueError, match="expected 50 actions"):
        population_runs([StaticHold(), _WrongShape()], config, 50, seed=1, months=3)
    with pytest.raises(ValueError, match="max_slots"):
        population_summary({"hold": StaticHold()}, config, 50, [1], months=3, progress=False, max_slots=0)
    with pytest.raises(ValueError, match="months"):
        population_summary({"hold": StaticHold()}, config, 50, [1], months=0, progress=False)
    oracle = Oracle()
    with pytest.raises(ValueError, match="privileged .* twice"):  # one object cannot read two blocks
        population_runs([oracle, oracle], config, 50, seed=1, months=3)
    with pytest.raises(ValueError, match="non-empty"):
        population_summary({}, config, 50, [1], progress=False)


def test_population_metrics_of_policy_search_candidates_are_the_evaluators():
    # What a policy search needs of a generation: each candidate's revenue and M3+ rate on one seed.
    rng = np.random.default_rng(2)
    weights = [np.zeros(len(FEATURES))] + [rng.normal(0.0, 0.4, len(FEATURES)) for _ in range(2)]
    policies = [LinearScorePolicy(w) for w in weights]
    metrics = population_metrics(policies, "wechat", ACCOUNTS, seed=70, months=MONTHS)
    named = {f"c{i}": p for i, p in enumerate(policies)}
    per_seed = evaluate(named, "wechat", ACCOUNTS, [70], months=MONTHS, progress=False, reference=None).per_seed
    np.testing.assert_array_equal(metrics["per_user_revenue"], per_seed["per_user_revenue"])
    np.testing.assert_array_equal(metrics["m3plus_rate"], per_seed["m3plus_rate"])
    assert len(set(metrics["per_user_revenue"])) == 3
