"""Run folders: atomic writes survive a failing serialiser, metadata records code and versions."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from agents import atomic_io
from agents.results import RunFolder, collect_metadata, format_summary, git_state
from envs.config import load_config

REPO = Path(__file__).resolve().parents[2]


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# -- atomic writes -----------------------------------------------------------------------------------
def test_failing_serialiser_leaves_old_file_intact(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old,content\n1,2\n")

    def half_then_fail(handle):
        handle.write(b"new,con")  # the first half of the new file reaches the disk ...
        raise RuntimeError("serialiser broke")  # ... then the serialiser fails

    with pytest.raises(RuntimeError, match="serialiser broke"):
        atomic_io.atomic_write(target, half_then_fail)
    assert target.read_text() == "old,content\n1,2\n"
    assert _no_temp_files(tmp_path)


def test_failing_json_serialiser_midway_keeps_old_json(tmp_path):
    target = tmp_path / "seeds.json"
    atomic_io.write_json(target, {"eval": [1, 2, 3]})
    # json.dump streams: "first" is written before it meets the object it cannot serialise.
    with pytest.raises(TypeError, match="cannot write"):
        atomic_io.write_json(target, {"first": list(range(1000)), "bad": object()})
    assert json.loads(target.read_text()) == {"eval": [1, 2, 3]}
    assert _no_temp_files(tmp_path)


def test_failing_dataframe_serialiser_keeps_old_csv(tmp_path, monkeypatch):
    target = tmp_path / "summary.csv"
    atomic_io.write_csv(target, pd.DataFrame({"policy": ["hold"], "per_user_revenue": [1.5]}))
    before = target.read_bytes()

    def broken_to_csv(self, handle, **kwargs):
        handle.write("policy,per_user_revenue\nhal")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken_to_csv)
    with pytest.raises(OSError, match="disk full"):
        atomic_io.write_csv(target, pd.DataFrame({"policy": ["new"], "per_user_revenue": [2.0]}))
    assert target.read_bytes() == before
    assert _no_temp_files(tmp_path)


def test_failing_figure_save_keeps_old_png_and_interrupt_cleans_up(tmp_path):
    target = tmp_path / "figures" / "monthly.png"
    target.parent.mkdir()
    target.write_bytes(b"\x89PNG old")

    class BrokenFigure:
        def __init__(self, exc):
            self.exc = exc

        def savefig(self, handle, **kwargs):
            handle.write(b"\x89PNG half")
            raise self.exc

    with pytest.raises(ValueError):
        atomic_io.save_figure(target, BrokenFigure(ValueError("bad figure")))
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C mid-write: same guarantee
        atomic_io.save_figure(target, BrokenFigure(KeyboardInterrupt()))
    assert target.read_bytes() == b"\x89PNG old"
    assert _no_temp_files(target.parent)


def test_failed_first_write_creates_no_file(tmp_path):
    target = tmp_path / "new.txt"
    with pytest.raises(RuntimeError):
        atomic_io.atomic_write(target, lambda handle: (_ for _ in ()).throw(RuntimeError("x")))
    assert not target.exists()
    assert _no_temp_files(tmp_path)


def test_successful_writes_replace_content_with_normal_permissions(tmp_path):
    target = tmp_path / "a.txt"
    atomic_io.write_text(target, "one")
    atomic_io.write_text(target, "two")
    assert target.read_text() == "two"
    umask = os.umask(0)
    os.umask(umask)
    # not the 0600 of a raw temporary file: other tools (and users) must be able to read results
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_yaml_and_json_convert_numpy_and_tuples(tmp_path):
    data = {"x": np.float64(1.25), "n": np.int64(3), "pair": (0.3, 0.7), "arr": np.arange(2)}
    atomic_io.write_yaml(tmp_path / "a.yaml", data)
    atomic_io.write_json(tmp_path / "a.json", data)
    expected = {"x": 1.25, "n": 3, "pair": [0.3, 0.7], "arr": [0, 1]}
    assert yaml.safe_load((tmp_path / "a.yaml").read_text()) == expected
    assert json.loads((tmp_path / "a.json").read_text()) == expected


# -- run folder ----------------------------------------------------------------------------------------
def test_saved_config_replays_the_run(tmp_path):
    config = load_config("wechat", {"env.horizon": 7, "macro.seed": 11})
    run = RunFolder.create(tmp_path, "run")
    path = run.write_config(config)
    assert path == tmp_path / "run" / "config.yaml"
    # load_config accepts a YAML path: the saved file alone rebuilds the same, overridden, config
    assert load_config(path) == config


def test_run_folder_refuses_to_mix_runs_and_bad_names(tmp_path):
    RunFolder.create(tmp_path, "run")
    with pytest.raises(FileExistsError, match="already exists"):
        RunFolder.create(tmp_path, "run")
    assert RunFolder.create(tmp_path, "run", exist_ok=True).path == tmp_path / "run"
    for bad in ("", "a/b", ".."):
        with pytest.raises(ValueError, match="--name"):
            RunFolder.create(tmp_path, bad)


def test_run_folder_layout(tmp_path):
    run = RunFolder.create(tmp_path, "run")
    run.write_seeds(train=[1000], tune=[2000, 2001], eval=np.array([0, 1]))
    run.write_summary(pd.DataFrame({"policy": ["a"]}))
    run.write_metrics("monthly", pd.DataFrame({"month": [1]}))
    assert json.loads((run.path / "seeds.json").read_text()) == {"train": [1000], "tune": [2000, 2001], "eval": [0, 1]}
    assert (run.path / "summary.csv").is_file()
    assert (run.path / "metrics" / "monthly.csv").is_file()
    with pytest.raises(ValueError):
        run.write_metrics("../escape", pd.DataFrame())


# -- metadata -------------------------------------------------------------------------------------------
def _head_commit_from_files(repo: Path) -> str:
    """HEAD's commit read straight from .git, independently of `git rev-parse`."""
    git_dir = repo / ".git"
    head = (git_dir / "HEAD").read_text().strip()
    if not head.startswith("ref: "):
        return head
    ref = head[5:]
    loose = git_dir / ref
    if loose.is_file():
        return loose.read_text().strip()
    for line in (git_dir / "packed-refs").read_text().splitlines():
        if line.endswith(" " + ref):
            return line.split()[0]
    raise AssertionError(f"cannot resolve {ref}")


@pytest.mark.skipif(not (REPO / ".git").is_dir() or shutil.which("git") is None, reason="needs the git checkout")
def test_metadata_has_commit_versions_and_command(tmp_path):
    import gymnasium
    import matplotlib
    import pydantic
    import stable_baselines3
    import torch

    meta = collect_metadata(["scripts/compare.py", "--preset", "wechat", "--name", "a b"])
    assert meta["git"]["commit"] == _head_commit_from_files(REPO)
    assert isinstance(meta["git"]["dirty"], bool)
    assert meta["packages"] == {
        "numpy": np.__version__,
        "gymnasium": gymnasium.__version__,
        "stable-baselines3": stable_baselines3.__version__,
        "torch": torch.__version__,
        "pandas": pd.__version__,
        "matplotlib": matplotlib.__version__,
        "pydantic": pydantic.VERSION,
    }
    assert meta["command"] == "scripts/compare.py --preset wechat --name 'a b'"  # shell-quoted, replayable
    assert meta["started_at"] and meta["status"] == "running"
    run = RunFolder.create(tmp_path, "run")
    run.finish_metadata(meta)
    saved = json.loads((run.path / "metadata.json").read_text())
    assert saved["status"] == "finished" and saved["finished_at"] >= saved["started_at"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_dirty_flag_follows_the_working_tree(tmp_path):
    def git(*args):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True
        )

    git("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    git("add", "f.txt")
    git("commit", "-q", "-m", "first")
    clean = git_state(tmp_path)
    assert clean["dirty"] is False and len(clean["commit"]) == 40
    (tmp_path / "f.txt").write_text("b")
    dirty = git_state(tmp_path)
    assert dirty["dirty"] is True and dirty["commit"] == clean["commit"]
    assert any("f.txt" in line for line in dirty["changed_files"])


def test_outside_a_repository_metadata_is_none_not_an_error(tmp_path):
    state = git_state(tmp_path)
    assert state["commit"] is None and state["dirty"] is None


# -- the printed table ----------------------------------------------------------------------------------
def test_format_summary_shows_percentages_and_missing_values():
    summary = pd.DataFrame(
        {
            "policy": ["best_static", "ppo"],
            "per_user_revenue": [200.0, 236.0],
            "per_user_revenue_ci_low": [190.0, 230.0],
            "per_user_revenue_ci_high": [210.0, 242.0],
            "m3plus_rate": [0.017, 0.0191],
            "cap": [0.018, 0.018],
            "meets_cap": [True, False],
            "uplift_vs_best_static": [math.nan, 0.18],
            "uplift_ci_low": [math.nan, 0.15],
            "uplift_ci_high": [math.nan, 0.21],
        }
    )
    table = format_summary(summary)
    lines = table.splitlines()
    assert len(lines) == 3
    ppo = lines[2]
    assert "236.0" in ppo and "[230.0, 242.0]" in ppo and "1.91" in ppo and "NO" in ppo
    assert "+18.0" in ppo and "[+15.0, +21.0]" in ppo
    assert "[-, -]" in lines[1]  # no uplift of the reference against itself


def test_track_stamps_how_a_run_ended(tmp_path):
    run = RunFolder.create(tmp_path, "run")
    with run.track({"status": "running"}):
        assert json.loads((run.path / "metadata.json").read_text())["status"] == "running"  # written at once
    assert json.loads((run.path / "metadata.json").read_text())["status"] == "finished"
    with pytest.raises(KeyboardInterrupt), run.track({}):
        raise KeyboardInterrupt
    assert json.loads((run.path / "metadata.json").read_text())["status"] == "interrupted"
    with pytest.raises(ValueError), run.track({}):
        raise ValueError("bad seed")
    saved = json.loads((run.path / "metadata.json").read_text())
    assert saved["status"] == "failed" and saved["error"] == "ValueError: bad seed" and saved["finished_at"]
