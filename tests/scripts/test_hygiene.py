"""Hygiene the issue asks to keep (issue 12, "What to build" 8): the simulator alone imports no deep-learning
stack, and CI lints before it tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_envs_loads_neither_torch_nor_stable_baselines3():
    code = (
        "import sys, envs, gymnasium as gym\n"
        "env = gym.make('CreditLine-v0'); env.reset(seed=0); env.step(3)\n"
        "print('torch' in sys.modules, 'stable_baselines3' in sys.modules)\n"
        "envs.make_portfolio('wechat', 2, seed=0).reset()\n"  # the SB3 face, loaded on first use
        "print('stable_baselines3' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "True"], done.stdout


def test_ci_lints_before_it_tests():
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert "make lint" in lines and "make test" in lines
    assert lines.index("make lint") < lines.index("make test")
