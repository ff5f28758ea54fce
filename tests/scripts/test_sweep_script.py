"""scripts/sweep.py as a user runs it: killed midway, run again, it finishes only what was missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sweep.py"


def sweep_command(run: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        str(SCRIPT),
        "--run",
        str(run),
        "--set",
        "env.horizon=12",
        "--grid",
        "accounting.funding_rate=0.05,0.06,0.07",
        "--grid",
        "default.job_loss_rate=0.004,0.008",
        "--policies",
        "static_hold,best_static",
        "--accounts",
        "300",
        "--out",
        str(out),
        "--name",
        "s",
    ]


@pytest.mark.slow
def test_a_killed_sweep_resumes_and_matches_an_uninterrupted_one(baselines_run, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    cells = tmp_path / "killed" / "s" / "cells"
    process = subprocess.Popen(
        sweep_command(baselines_run, tmp_path / "killed"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not list(cells.glob("*.csv")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # no clean-up of any kind: what a power cut leaves
    process.communicate()
    done_at_kill = len(list(cells.glob("*.csv")))
    assert 1 <= done_at_kill < 6, f"the kill should land mid-sweep, {done_at_kill} of 6 cells were done"
    for path in cells.glob("*.csv"):
        assert len(pd.read_csv(path)) == 2  # every cell file on disk is complete

    resumed = subprocess.run(sweep_command(baselines_run, tmp_path / "killed"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming: {done_at_kill} of 6 cells already done, skipped" in resumed.stderr
    ran = [line for line in resumed.stderr.splitlines() if line.startswith("cell ")]
    assert len(ran) == 6 - done_at_kill  # only the missing cells ran

    # the same sweep uninterrupted, in this process (the library the script calls)
    from agents.run_policies import run_config, run_seeds, run_specs
    from agents.sweep import grid_cells, run_sweep

    axes = {"accounting.funding_rate": [0.05, 0.06, 0.07], "default.job_loss_rate": [0.004, 0.008]}
    specs = {k: v for k, v in run_specs(baselines_run).items() if k in ("static_hold", "best_static")}
    config = run_config(baselines_run, {"env.horizon": 12})
    seeds = run_seeds(baselines_run)["eval"]
    fresh = run_sweep(config, grid_cells(axes), specs, 300, seeds, tmp_path / "fresh", log=lambda _: None)
    after_kill = pd.read_csv(tmp_path / "killed" / "s" / "sweep.csv")
    pd.testing.assert_frame_equal(after_kill, fresh)
    assert len(after_kill) == 12 and (tmp_path / "killed" / "s" / "sweep.png").stat().st_size > 5000
    assert "revenue/user [CNY]" in resumed.stdout


def test_sweep_bad_input_exits_2(baselines_run, tmp_path, load_script):
    from agents.cli import run_main

    sweep = load_script("sweep.py")
    out = tmp_path / "sweeps"
    argv = ["--run", str(baselines_run), "--out", str(out), "--grid", "env.m3plus_capp=0.01,0.02"]
    assert run_main(sweep.main, argv) == 2
    argv = ["--run", str(baselines_run), "--out", str(out), "--grid", "env.m3plus_cap=0.01", "--policies", "ppo"]
    assert run_main(sweep.main, argv) == 2
    assert not out.exists()  # nothing written for rejected input
    with pytest.raises(SystemExit):
        sweep.main(["--run", str(baselines_run)])  # neither --grid nor --random
