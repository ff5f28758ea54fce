"""scripts/report.py as a user runs it: the report folder of a baselines-only run."""

from __future__ import annotations

import pandas as pd
import pytest

from agents.cli import run_main


@pytest.mark.slow
def test_report_writes_markdown_tables_and_figure(baselines_run, load_script, capsys):
    report = load_script("report.py")
    assert run_main(report.main, ["--run", str(baselines_run), "--accounts", "150", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "fidelity" in out and "thin-file / full-file" in out
    folder = baselines_run / "report"
    text = (folder / "report.md").read_text()
    assert "## Disparity ratios, set against rule" in text and "## Distilled policy: rule_tree" in text
    assert (folder / "figures" / "segments.png").read_bytes()[:4] == b"\x89PNG"
    segments = pd.read_csv(folder / "segments.csv")
    assert {"thin-file", "full-file"} <= set(segments["level"]) and segments["hidden"].any()
    assert run_main(report.main, ["--run", str(baselines_run / "missing")]) == 2


@pytest.mark.slow
def test_whatif_and_report_use_a_run_s_trained_agent(tmp_path, load_script, capsys):
    compare = load_script("compare.py")
    budget = ["--set", "env.horizon=6", "--accounts", "120", "--eval-seeds", "2", "--tune-seeds", "2"]
    train = ["--algos", "ppo", "--timesteps", "2048", "--train-accounts", "64", "--rule-trials", "2"]
    train += ["--agent-set", "hyperparameters.batch_size=512", "--no-progress"]
    assert run_main(compare.main, [*budget, *train, "--out", str(tmp_path), "--name", "agent"]) == 0
    run = tmp_path / "agent"
    capsys.readouterr()

    whatif = load_script("whatif.py")
    argv = ["--run", str(run), "--scenario", "thin_file_influx", "--accounts", "120", "--no-progress"]
    assert run_main(whatif.main, argv) == 0
    assert "ppo (as trained)" in capsys.readouterr().out

    report = load_script("report.py")
    argv = ["--run", str(run), "--accounts", "120", "--distill-seeds", "1", "--no-progress"]
    assert run_main(report.main, argv) == 0
    assert "distilled policy ppo_tree" in capsys.readouterr().out
    assert "fitted to the actions of the agent `ppo`" in (run / "report" / "report.md").read_text()
