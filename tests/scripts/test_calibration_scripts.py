"""scripts/calibration_table.py and scripts/calibrate.py: YAML preset paths, atomic --write, clear errors."""

import importlib.util
import os
import shutil
import stat
from pathlib import Path

import pytest

from envs.config import PRESET_DIR

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
TINY = ["--accounts", "60", "--runs", "1", "--months", "3", "--burn-in", "0", "--no-progress"]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_calibration_table_takes_a_yaml_path_and_writes_atomically_with_a_normal_mode(tmp_path, capsys):
    preset = tmp_path / "mine.yaml"
    shutil.copy(PRESET_DIR / "wechat.yaml", preset)
    out = tmp_path / "results" / "calibration.md"
    assert _load("calibration_table").main(["--preset", str(preset), *TINY, "--write", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("Printed by `python scripts/calibration_table.py --preset")
    for heading in ("Steady state", "Mechanisms line management acts on", "Debt response"):
        assert heading in text
    assert "| mine " in text and "LEQ" in text and "Gini" in text
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600
    assert [p.name for p in out.parent.iterdir()] == ["calibration.md"]  # no temporary file left
    assert "LEQ" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "nosuch"], "unknown preset 'nosuch'"),
        (["--preset", "missing.yaml"], "preset file not found"),
        (["--set", "default.nosuch=1"], "unknown config key"),
        (["--accounts", "0"], "must be positive"),
    ],
)
def test_calibration_table_bad_input_is_an_error_line(argv, message, capsys):
    assert _load("calibration_table").main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_calibration_table_refuses_to_write_over_a_directory(tmp_path, capsys):
    assert _load("calibration_table").main(["--preset", "wechat", *TINY, "--write", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is a directory" in err


def test_calibrate_takes_yaml_paths_and_names_a_missing_one(tmp_path, capsys):
    assert _load("calibrate").main(["--preset", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.yaml" in err
