"""The headline study: seeds kept apart, cells resumed instead of recomputed, bad input named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import agents.headline as headline
from agents.headline import COLUMNS, Budget, run_preset, study_seeds, write_headline

REPO = Path(__file__).resolve().parents[2]
TINY = Budget(
    accounts=200,
    eval_seeds=2,
    tune_seeds=2,
    trials=2,
    ps_generations=1,
    ppo_seeds=0,
    ppo_timesteps=1,
    ppo_accounts=64,
    seed=0,
)


@pytest.mark.parametrize("ppo_seeds", [0, 5])
def test_training_tuning_and_evaluation_seeds_never_overlap(ppo_seeds):
    seeds = study_seeds(TINY._replace(ppo_seeds=ppo_seeds, eval_seeds=10, tune_seeds=8))
    labels = [s for group in seeds.values() for s in group]
    assert len(labels) == len(set(labels))  # no label in two groups (nor twice in one)
    assert len(seeds["evaluation"]) == 10 and len(seeds["tuning"]) == 8
    assert [k for k in seeds if k.startswith("ppo_")] == [f"ppo_{i}" for i in range(ppo_seeds)]
    assert all(len(seeds[f"ppo_{i}"]) == headline.SUB_BOOKS for i in range(ppo_seeds))


def test_a_study_resumes_from_its_cells_and_refuses_another_budget(tmp_path, monkeypatch):
    table = run_preset("wechat", tmp_path, TINY, progress=False)
    assert list(table.columns) == COLUMNS
    assert {"static_hold", "best_static", "rule", "oracle", "policy_search", "risk_policy"} <= set(table["policy"])
    oracle = table.set_index("policy").loc["oracle"]
    assert oracle["oracle_share"] == pytest.approx(1.0)
    for name in (
        "seeds.json",
        "budget.json",
        "baselines.json",
        "policy_search.json",
        "risk_policy.json",
        "summary.csv",
        "per_seed.csv",
    ):
        assert (tmp_path / "wechat" / name).is_file()

    # A second run reads every cell back: nothing is tuned, trained or evaluated again.
    def fail(*args, **kwargs):
        raise AssertionError("a finished cell was computed again")

    for name in ("_baselines", "_policy_search", "_risk_policy", "_evaluate"):
        monkeypatch.setattr(headline, name, fail)
    again = run_preset("wechat", tmp_path, TINY, progress=False)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), table.reset_index(drop=True), check_dtype=False)
    with pytest.raises(ValueError, match="other seeds or budget"):
        run_preset("wechat", tmp_path, TINY._replace(eval_seeds=3), progress=False)
    with pytest.raises(ValueError, match=r"another budget \(trials\)"):  # the seeds alone would not show it
        run_preset("wechat", tmp_path, TINY._replace(trials=TINY.trials + 1), progress=False)
    combined = write_headline([again], tmp_path)
    assert (tmp_path / "summary.csv").is_file() and (tmp_path / "uplift.png").is_file()
    assert len(combined) == len(table)


def test_bad_input_is_named_with_exit_code_2(tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    for args, message in (
        (["--presets", "nowhere"], "unknown item"),
        (["--ppo-accounts", "100"], "multiple of 8"),
        (["--ppo-seeds", "-1"], "integer >= 0"),
    ):
        done = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "headline.py"), *args, "--out", str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert "error" in done.stderr and message in done.stderr, done.stderr


def test_help_explains_the_study_and_its_budget():
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "headline.py"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    for words in ("UPPER BOUND", "Resumable", "--ppo-seeds", "--ppo-timesteps", "--accounts", "--eval-seeds"):
        assert words in done.stdout
