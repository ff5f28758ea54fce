"""A run folder's policies as specs, and the seeds re-used from it."""

from __future__ import annotations

import pytest

from agents.policies import BestStatic, RandomPolicy, RuleBased, StaticHold
from agents.run_policies import (
    agent_specs,
    build_policies,
    build_policy,
    evaluation_seeds,
    rule_spec,
    run_specs,
    tuning_seeds,
)

USED = {"train": [0], "tune": [1, 2], "eval": [3, 4]}


def test_evaluation_seeds_are_the_run_s_own_then_past_every_used_seed():
    assert evaluation_seeds(USED, None) == (3, 4)
    assert evaluation_seeds(USED, 1) == (3,)
    assert evaluation_seeds(USED, 4) == (3, 4, 5, 6)
    assert evaluation_seeds({"train": [], "tune": [], "eval": []}, 3, start=10) == (10, 11, 12)
    with pytest.raises(ValueError, match="overlap"):
        evaluation_seeds({"train": [3], "tune": [], "eval": [3]}, None)


def test_tuning_seeds_never_meet_the_evaluation_seeds():
    assert tuning_seeds(USED, 2, (3, 4)) == (1, 2)
    assert tuning_seeds(USED, 3, (3, 4, 5)) == (1, 2, 6)


def test_a_run_s_specs_rebuild_its_baselines(tmp_path):
    (tmp_path / "baselines.json").write_text('{"best_static": {"x": 1.25}, "rule": {"good_months": 3}}')
    (tmp_path / "agents" / "notes").mkdir(parents=True)  # not an algorithm: skipped with a warning
    specs = run_specs(tmp_path, random_seed=7)
    assert list(specs) == ["static_hold", "best_static", "rule", "random"]
    policies = build_policies(specs)
    assert isinstance(policies["static_hold"], StaticHold) and isinstance(policies["random"], RandomPolicy)
    assert isinstance(policies["best_static"], BestStatic) and policies["best_static"].target == 1.25
    assert isinstance(policies["rule"], RuleBased) and policies["rule"].params.good_months == 3
    assert policies["random"].seed == 7
    assert agent_specs(tmp_path) == {}
    (tmp_path / "agents" / "ppo").mkdir()
    assert agent_specs(tmp_path)["ppo"]["algo"] == "ppo"


def test_bad_specs_name_the_fault():
    with pytest.raises(ValueError, match="raise_by"):
        rule_spec({"raise_by": 1.5})
    with pytest.raises(ValueError, match="good_months"):
        rule_spec({"good_months": 0})
    with pytest.raises(ValueError, match="unknown policy kind 'oracle'"):
        build_policy({"kind": "oracle"})
