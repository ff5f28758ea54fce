"""The scripts as a user runs them: bad input gives ``error: ...`` and exit 2; a tiny compare run writes a
complete run folder that evaluate.py can reuse."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from agents.risk_policy import RiskPolicy
from agents.risk_scorecard import CATEGORICAL, CONTINUOUS, RiskModel

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
SUMMARY_COLUMNS = [
    "policy",
    "per_user_revenue",
    "per_user_revenue_ci_low",
    "per_user_revenue_ci_high",
    "m3plus_rate",
    "m3plus_rate_accounts",
    "cap",
    "meets_cap",
    "uplift_vs_best_static",
    "uplift_ci_low",
    "uplift_ci_high",
    "utilisation",
    "average_line",
    "attrition_rate",
    "charge_off_rate",
]


def run_script(name: str, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"script_{name.removesuffix('.py')}", SCRIPTS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_clean_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "error:" in done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


# -- bad input, as a subprocess: exit code and stderr are what a user sees ------------------------------------
def test_bad_override_key_exits_2_naming_the_key(tmp_path):
    done = run_script("compare.py", "--set", "env.horizn=12", "--out", str(tmp_path), cwd=tmp_path)
    assert_clean_error(done, "env.horizn", "horizon")  # the typo and what is allowed
    assert not any(tmp_path.iterdir())  # nothing written for a rejected command


def test_unknown_preset_exits_2_listing_presets(tmp_path):
    done = run_script("compare.py", "--preset", "wechatt", cwd=tmp_path)
    assert_clean_error(done, "unknown preset 'wechatt'", "wechat", "douyin")


# -- bad input, in process (faster; same code path through run_main) ------------------------------------------
@pytest.fixture(scope="module")
def compare():
    return load_script("compare.py")


@pytest.fixture(scope="module")
def evaluate_script():
    return load_script("evaluate.py")


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["--set", "env.horizon=-3"], ["env.horizon", "-3"]),  # out-of-range value
        (["--set", "env.horizon=many"], ["env.horizon", "many"]),  # wrong type
        (["--set", "env.horizon"], ["key=value"]),  # no '='
    ],
)
def test_bad_override_values_exit_2(compare, capsys, tmp_path, argv, fragments):
    from agents.cli import run_main

    assert run_main(compare.main, [*argv, "--out", str(tmp_path), "--no-train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and all(f in err for f in fragments), err


def test_argparse_errors_exit_2(compare, capsys):
    for argv in (["--algos", "ppo,xgboost"], ["--accounts", "0"], ["--load", "x", "--no-train"]):
        with pytest.raises(SystemExit) as exit_info:
            compare.build_parser().parse_args(argv)
        assert exit_info.value.code == 2
    assert "xgboost" in capsys.readouterr().err


def test_evaluate_input_errors(evaluate_script, capsys, tmp_path):
    from agents.cli import run_main

    main = evaluate_script.main
    assert run_main(main, ["--run", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    # best_static without a multiplier: said so, before any simulation
    assert run_main(main, ["--preset", "wechat", "--baselines", "best_static", "--out", str(tmp_path)]) == 2
    assert "--best-static" in capsys.readouterr().err
    rule = tmp_path / "rule.yaml"
    rule.write_text("good_months: 3\nraise_by: 1.5\n")
    assert (
        run_main(
            main, ["--preset", "wechat", "--baselines", "rule", "--rule-params", str(rule), "--out", str(tmp_path)]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "raise_by" in err and "raise_multiplier" in err
    assert [p.name for p in tmp_path.iterdir()] == ["rule.yaml"]  # no run folder for rejected input


def test_existing_run_folder_is_not_overwritten(compare, capsys, tmp_path):
    from agents.cli import run_main

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "summary.csv").write_text("precious\n")
    argv = ["--no-train", "--out", str(tmp_path), "--name", "taken", "--set", "env.horizon=2"]
    assert run_main(compare.main, argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "taken" / "summary.csv").read_text() == "precious\n"


def test_help_explains_the_options(tmp_path):
    done = run_script("compare.py", "--help", cwd=tmp_path)
    assert done.returncode == 0
    for option in (
        "--preset",
        "--set",
        "--algos",
        "--timesteps",
        "--accounts",
        "--eval-seeds",
        "--tune-seeds",
        "--load",
        "--no-train",
        "--resume",
        "--out",
        "--name",
        "--no-progress",
    ):
        assert option in done.stdout


# -- a tiny end-to-end run ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_compare_then_evaluate_end_to_end(tmp_path):
    budget = [
        "--preset",
        "wechat",
        "--set",
        "env.horizon=6",
        "--accounts",
        "200",
        "--eval-seeds",
        "2",
        "--tune-seeds",
        "2",
        "--rule-trials",
        "3",
        "--no-progress",
    ]
    done = run_script(
        "compare.py",
        *budget,
        "--algos",
        "ppo",
        "--timesteps",
        "2048",
        "--train-accounts",
        "64",
        "--agent-set",
        "hyperparameters.batch_size=512",
        "--name",
        "tiny",
        "--out",
        "results",
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "results" / "tiny"

    summary = pd.read_csv(run / "summary.csv")
    assert set(SUMMARY_COLUMNS) <= set(summary.columns)
    assert set(summary["policy"]) == {"static_hold", "best_static", "rule", "random", "oracle", "ppo"}
    assert summary["per_user_revenue"].notna().all() and (summary["cap"] == 0.018).all()
    for figure in ("monthly", "frontier", "training"):
        png = run / "figures" / f"{figure}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    for table in ("monthly", "by_segment", "per_seed", "tuning_best_static", "tuning_rule", "tuning_oracle"):
        assert len(pd.read_csv(run / "metrics" / f"{table}.csv")) > 0
    assert (run / "agents" / "ppo" / "model.zip").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["env"]["horizon"] == 6
    seeds = json.loads((run / "seeds.json").read_text())
    assert len(seeds["eval"]) == 2 and not set(seeds["eval"]) & set(seeds["train"] + seeds["tune"])
    metadata = json.loads((run / "metadata.json").read_text())
    assert metadata["status"] == "finished" and "--timesteps 2048" in metadata["command"]
    # stdout is the comparison table, one row per policy
    table = done.stdout
    assert "uplift vs best static" in table and all(p in table for p in summary["policy"])
    assert not [p for p in run.rglob("*.tmp")]

    # evaluate.py reuses the run: its config, its agent, its tuned baselines, its evaluation seeds
    done = run_script(
        "evaluate.py",
        "--run",
        str(run),
        "--accounts",
        "200",
        "--eval-seeds",
        "2",
        "--name",
        "again",
        "--out",
        "results",
        "--no-progress",
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    again = pd.read_csv(tmp_path / "results" / "again" / "summary.csv")
    assert set(again["policy"]) == {"static_hold", "best_static", "rule", "random", "oracle", "ppo"}
    # same seeds, accounts and policies (random seeded alike): every number is reproduced
    pd.testing.assert_frame_equal(
        summary.set_index("policy")[SUMMARY_COLUMNS[1:]],
        again.set_index("policy").loc[summary["policy"], SUMMARY_COLUMNS[1:]],
    )


def test_agent_overrides_apply_to_all_or_one_algorithm(compare):
    per_algo = compare._agent_overrides(
        ["hyperparameters.gamma=0.97", "ppo.hyperparameters.batch_size=512", "dqn.hyperparameters.tau=0.5"],
        ["ppo", "a2c"],
    )
    assert per_algo == {
        "ppo": {"hyperparameters.gamma": 0.97, "hyperparameters.batch_size": 512},
        "a2c": {"hyperparameters.gamma": 0.97},
    }


@pytest.mark.slow  # runs the benchmark script in a subprocess
def test_benchmark_prints_and_writes_its_table(tmp_path):
    # A tiny run: the figures themselves are machine-dependent; the table, its rows and the file are not.
    out = tmp_path / "bench.md"
    names = CONTINUOUS + CATEGORICAL  # a saved risk policy: a scorecard without bins (its cost is not the point)
    saved = RiskPolicy(RiskModel({n: [] for n in names}, {n: [0.0] for n in names}, -3.0, 3)).to_dict()
    (tmp_path / "risk").mkdir()
    (tmp_path / "risk" / "risk_policy.json").write_text(json.dumps(saved))
    done = run_script(
        "benchmark.py",
        "--risk-policy",
        str(tmp_path / "risk"),
        "--accounts",
        "300",
        "--steps",
        "3",
        "--single-envs",
        "2",
        "--memory-accounts",
        "1000",
        "--agent-accounts",
        "1000",
        "--repeats",
        "2",
        "--write",
        str(out),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    for row in (
        "make_portfolio, random actions",
        "infos read as by SB3",
        "make_portfolio, holding",
        "monthly step alone",
        "DummyVecEnv",
        "speed-up",
        "peak memory, 1,000 accounts",
        "PPO agent evaluated, 1,000 accounts",
        "risk policy evaluated, 1,000 accounts",
        "holding evaluated, 1,000 accounts",
    ):
        assert row in done.stdout, done.stdout
    written = out.read_text()
    assert "best of 2 runs per figure" in written and "speed-up" in written


@pytest.mark.slow  # runs the benchmark script in a subprocess
def test_benchmark_rejects_bad_sizes(tmp_path):
    done = run_script("benchmark.py", "--repeats", "0", cwd=tmp_path)
    assert_clean_error(done, "--repeats")
    done = run_script("benchmark.py", "--preset", "nope", cwd=tmp_path)
    assert_clean_error(done, "nope")
