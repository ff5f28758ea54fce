"""Run folders as a careless or hostile user meets them: names that point elsewhere, overwrites that are
killed midway, folders received from someone else (issue 12, defects 1, 2, 3, 5 and 6)."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agents.cli import run_main
from agents.results import RunFolder, collect_metadata, run_status

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
# A comparison of the baselines small enough to run in seconds.
TINY = ["--no-train", "--tune-seeds", "1", "--eval-seeds", "1", "--accounts", "40", "--rule-trials", "1"]
TINY += ["--set", "env.horizon=2", "--no-progress"]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"runfolder_{name.removesuffix('.py')}", SCRIPTS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compare():
    return load_script("compare.py")


@pytest.fixture(scope="module")
def evaluate_script():
    return load_script("evaluate.py")


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its content: what must not change."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def finished_run(root: Path, name: str, content: str) -> Path:
    run = RunFolder.create(root, name)
    with run.track(collect_metadata(["test"])):
        (run.path / "summary.csv").write_text(content)
    return run.path


# -- defect 1: names that reach outside --out ------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad_name, culprit",
    [
        ("../victim", "separators"),
        ("ABSOLUTE", "separators"),  # replaced by the absolute path of the victim
        (".", "plain folder name"),
        ("..", "plain folder name"),
        ("", "must not be empty"),
        ("new\nline", "control character"),
        ("a/b", "separators"),
        ("x.previous", ".previous"),
    ],
)
def test_overwrite_never_touches_anything_outside_out(compare, capsys, tmp_path, bad_name, culprit):
    victim, kept = tmp_path / "victim", tmp_path / "victim.previous"
    victim.mkdir()
    kept.mkdir()
    (victim / "f").write_text("mine")
    (kept / "f").write_text("old")
    out = tmp_path / "results"
    before = snapshot(tmp_path)
    name = str(victim) if bad_name == "ABSOLUTE" else bad_name
    assert run_main(compare.main, [*TINY, "--out", str(out), "--name", name, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --name") and culprit in err, err
    assert snapshot(tmp_path) == before  # nothing moved, deleted or created, not even --out
    assert not out.exists()


def test_out_that_is_a_file_is_an_error(compare, capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    assert run_main(compare.main, [*TINY, "--out", str(tmp_path / "file"), "--name", "r"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "not a folder" in err


def test_run_folders_are_created_atomically(tmp_path):
    # exists() then mkdir(exist_ok=True) let two runs started together share a folder: the second must fail
    RunFolder.create(tmp_path, "run")
    with pytest.raises(FileExistsError, match="already exists"):
        RunFolder.create(tmp_path, "run")


# -- defect 3: overwrite never loses the only complete run -------------------------------------------------------
def test_overwrite_killed_midway_then_again_keeps_the_complete_run(tmp_path):
    finished_run(tmp_path, "x", "A")
    # An overwrite that dies (kill -9: no chance to record anything): the old run stays where it was.
    killed = RunFolder.create(tmp_path, "x", overwrite=True)
    killed.write_metadata({**collect_metadata(["killed"]), "pid": _dead_pid()})
    assert (tmp_path / "x" / "summary.csv").read_text() == "A"
    assert run_status(killed.path) == "interrupted"  # a dead process's "running" is not believed
    # A second overwrite replaces the half-written one, not A; A is kept once the new run has finished.
    again = RunFolder.create(tmp_path, "x", overwrite=True)
    with again.track(collect_metadata(["again"])):
        (again.path / "summary.csv").write_text("B")
        assert (tmp_path / "x" / "summary.csv").read_text() == "A"  # still there while B runs
    assert again.path == tmp_path / "x"
    assert (tmp_path / "x" / "summary.csv").read_text() == "B"
    assert (tmp_path / "x.previous" / "summary.csv").read_text() == "A"
    assert not (tmp_path / "x.partial").exists()


def test_overwrite_that_fails_keeps_the_old_run_in_place(tmp_path):
    finished_run(tmp_path, "x", "A")
    failing = RunFolder.create(tmp_path, "x", overwrite=True)
    with pytest.raises(RuntimeError), failing.track(collect_metadata(["fails"])):
        raise RuntimeError("boom")
    assert (tmp_path / "x" / "summary.csv").read_text() == "A"
    assert json.loads((failing.path / "metadata.json").read_text())["status"] == "failed"


def test_an_unfinished_old_run_never_replaces_the_kept_complete_one(tmp_path):
    finished_run(tmp_path, "x", "A")
    finished_run(tmp_path, "y", "unused")
    # x.previous complete (A), x itself a failed run: overwriting x keeps A, drops the failed one
    (tmp_path / "x").rename(tmp_path / "x.previous")
    failed = RunFolder.create(tmp_path, "x")
    failed.finish_metadata(collect_metadata(["failed"]), "failed")
    new = RunFolder.create(tmp_path, "x", overwrite=True)
    with new.track(collect_metadata(["new"])):
        (new.path / "summary.csv").write_text("C")
    assert (tmp_path / "x.previous" / "summary.csv").read_text() == "A"
    assert (tmp_path / "x" / "summary.csv").read_text() == "C"


def test_overwrite_refuses_what_it_cannot_safely_replace(tmp_path):
    finished_run(tmp_path, "x", "A")
    (tmp_path / "x.previous").write_text("a file, not a run")
    with pytest.raises(FileExistsError, match=r"x\.previous"):
        RunFolder.create(tmp_path, "x", overwrite=True)
    (tmp_path / "x.previous").unlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "x.previous").symlink_to(outside)  # a link would let a delete reach outside --out
    with pytest.raises(FileExistsError, match="not a plain folder"):
        RunFolder.create(tmp_path, "x", overwrite=True)
    assert outside.is_dir()
    (tmp_path / "x.previous").unlink()
    live = RunFolder.create(tmp_path, "live")
    live.write_metadata(collect_metadata(["live"]))  # this process: alive
    with pytest.raises(FileExistsError, match="being written by process"):
        RunFolder.create(tmp_path, "live", overwrite=True)


def test_load_x_name_x_overwrite_never_moves_the_loaded_run(compare, capsys, tmp_path):
    out = tmp_path / "results"
    run = finished_run(out, "X", "A")
    (run / "agents" / "ppo").mkdir(parents=True)
    (run / "agents" / "ppo" / "policy.pt").write_bytes(b"weights")
    before = snapshot(out)
    argv = ["--load", str(run), "--name", "X", "--overwrite", "--out", str(out), "--accounts", "40"]
    assert run_main(compare.main, argv) == 2
    assert "--load" in capsys.readouterr().err
    assert snapshot(out) == before


@pytest.mark.slow
def test_compare_overwrite_twice_keeps_the_previous_complete_run(tmp_path):
    out = tmp_path / "results"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    command = [sys.executable, str(SCRIPTS / "compare.py"), *TINY, "--out", str(out), "--name", "demo", "--overwrite"]
    for _ in range(2):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
    assert json.loads((out / "demo" / "metadata.json").read_text())["status"] == "finished"
    assert json.loads((out / "demo.previous" / "metadata.json").read_text())["status"] == "finished"
    assert "kept" in subprocess.run([*command[:2], "--help"], capture_output=True, text=True).stdout


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- defect 6: records that say how a run ended ------------------------------------------------------------------
def test_killed_run_is_reported_interrupted_not_running(tmp_path):
    run = RunFolder.create(tmp_path, "r")
    run.write_metadata({**collect_metadata(["x"]), "pid": _dead_pid()})
    assert json.loads((run.path / "metadata.json").read_text())["status"] == "running"
    assert run_status(run.path) == "interrupted"
    # a live process's run is still running
    live = RunFolder.create(tmp_path, "s")
    live.write_metadata(collect_metadata(["x"]))
    assert run_status(live.path) == "running"


# -- defect 2: a received run folder runs no code ----------------------------------------------------------------
class _Payload:
    """Pickles to a call that creates ``marker``: if anything unpickles it, the marker appears."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from agents.training import train

    root = tmp_path_factory.mktemp("trained")
    run = RunFolder.create(root, "run")
    with run.track(collect_metadata(["test"])):
        from envs.config import load_config

        config = load_config("wechat", {"env.horizon": 2})
        run.write_config(config)
        run.write_seeds(train=[1000], tune=[], eval=[0])
        overrides = {"n_steps": 8, "batch_size": 64, "net_arch": [8], "min_update_samples": 0}
        overrides["checkpoint_every"] = 64
        train("ppo", config, run.path, total_timesteps=128, num_accounts=8, agent_overrides=overrides, progress=False)
    return run.path


# The files evaluate.py reads from a run folder; every other file is not opened at all.
READ_BY_EVALUATION = {
    "config.yaml",
    "seeds.json",
    "agents/ppo/policy.pt",
    "agents/ppo/vecnormalize.npz",
    "agents/ppo/policy.json",
    "agents/ppo/progress.csv",
}


def test_planted_pickles_in_every_file_of_a_run_folder_execute_nothing(evaluate_script, capsys, trained_run, tmp_path):
    files = {str(p.relative_to(trained_run)) for p in trained_run.rglob("*") if p.is_file()}
    assert READ_BY_EVALUATION | {"agents/ppo/model.zip", "metadata.json"} <= files
    assert any(f.startswith("agents/ppo/checkpoints/model_") for f in files)

    def evaluate(run: Path, marker: Path, name: str) -> tuple[int, str]:
        argv = ["--run", str(run), "--accounts", "20", "--eval-seeds", "1", "--out", str(tmp_path / "out")]
        code = run_main(evaluate_script.main, [*argv, "--name", name, "--baselines", "static_hold", "--no-progress"])
        assert not marker.exists(), f"evaluating {name} ran code from the run folder"
        return code, capsys.readouterr().err

    # Every file evaluation does not read, the SB3 zips among them, holds a payload at once: nothing runs,
    # and the evaluation succeeds (none of them is opened).
    run, marker = tmp_path / "unread", tmp_path / "executed_unread"
    shutil.copytree(trained_run, run)
    for relative in files - READ_BY_EVALUATION:
        (run / relative).write_bytes(pickle.dumps(_Payload(marker)))
    code, err = evaluate(run, marker, "unread")
    assert code == 0, err
    # Each file it does read, in turn: refused with an error naming it, before anything runs.
    for i, relative in enumerate(sorted(READ_BY_EVALUATION)):
        run, marker = tmp_path / f"read{i}", tmp_path / f"executed{i}"
        shutil.copytree(trained_run, run)
        (run / relative).write_bytes(pickle.dumps(_Payload(marker)))
        code, err = evaluate(run, marker, f"read{i}")
        assert code == 2 and Path(relative).name in err, (relative, code, err)


def test_truncated_agent_files_are_errors_naming_the_file(trained_run, tmp_path):
    from agents.training import load_agent

    for name in ("policy.pt", "vecnormalize.npz", "policy.json"):
        run = tmp_path / name
        shutil.copytree(trained_run, run)
        path = run / "agents" / "ppo" / name
        path.write_bytes(path.read_bytes()[:40])
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            load_agent(run, "ppo")


# -- defect 5: missing agents are an error, not dropped ---------------------------------------------------------
def test_a_missing_final_model_is_an_error_unless_left_out(evaluate_script, capsys, trained_run, tmp_path):
    run = tmp_path / "killed"
    shutil.copytree(trained_run, run)
    (run / "agents" / "ppo" / "policy.pt").unlink()  # killed before it finished, or deleted
    argv = ["--run", str(run), "--accounts", "20", "--eval-seeds", "1", "--out", str(tmp_path / "out")]
    argv += ["--baselines", "static_hold", "--no-progress"]
    assert run_main(evaluate_script.main, [*argv, "--name", "a"]) == 2
    err = capsys.readouterr().err
    assert "policy.pt" in err and "ppo" in err and "--algos" in err
    assert not (tmp_path / "out").exists()  # rejected before any folder
    # left out with --algos, the other agent is evaluated
    shutil.copytree(run / "agents" / "ppo", run / "agents" / "a2c")
    shutil.copy(trained_run / "agents" / "ppo" / "policy.pt", run / "agents" / "a2c" / "policy.pt")
    meta = json.loads((run / "agents" / "a2c" / "policy.json").read_text())
    (run / "agents" / "a2c" / "policy.json").write_text(json.dumps({**meta, "algo": "a2c"}))
    assert run_main(evaluate_script.main, [*argv, "--name", "b"]) == 2  # ppo still missing
    assert "--algos a2c" in capsys.readouterr().err
    assert run_main(evaluate_script.main, [*argv, "--name", "c", "--algos", "a2c"]) == 0


# -- same input, same bytes; kill -9 then --resume ---------------------------------------------------------------
def test_evaluating_a_run_twice_gives_byte_identical_files(evaluate_script, trained_run, tmp_path):
    out = tmp_path / "out"
    for name in ("first", "second"):
        argv = ["--run", str(trained_run), "--accounts", "30", "--eval-seeds", "2", "--out", str(out)]
        argv += ["--baselines", "static_hold,rule,random"]
        assert run_main(evaluate_script.main, [*argv, "--name", name, "--no-progress"]) == 0
    for table in ("summary.csv", "metrics/monthly.csv", "metrics/by_segment.csv", "metrics/per_seed.csv"):
        assert (out / "first" / table).read_bytes() == (out / "second" / table).read_bytes(), table


@pytest.mark.slow
def test_train_killed_with_sigkill_is_reported_interrupted_and_resumes(tmp_path):
    import signal
    import time

    common = ["--out", str(tmp_path), "--name", "k", "--no-progress"]
    settings = ["--accounts", "32", "--agent-set", "n_steps=8", "--agent-set", "batch_size=128"]
    settings += ["--agent-set", "checkpoint_every=256", "--agent-set", "net_arch=[8]"]
    train_py = [sys.executable, str(SCRIPTS / "train.py")]
    child = subprocess.Popen([*train_py, "--timesteps", "200000", *settings, *common], stderr=subprocess.PIPE)
    checkpoints = tmp_path / "k" / "agents" / "ppo" / "checkpoints"
    deadline = time.monotonic() + 240
    while not list(checkpoints.glob("constraint_*.json")) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.2)
    assert child.poll() is None, "training ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    assert json.loads((tmp_path / "k" / "metadata.json").read_text())["status"] == "running"  # nothing recorded
    assert run_status(tmp_path / "k") == "interrupted"  # but the dead process is seen
    step = max(int(p.stem.split("_")[1]) for p in checkpoints.glob("constraint_*.json"))
    done = subprocess.run(
        [*train_py, "--timesteps", str(step + 512), "--resume", *common], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    metadata = json.loads((tmp_path / "k" / "metadata.json").read_text())
    assert metadata["status"] == "finished" and metadata["resumed_from"]["status"] == "running"
    assert (tmp_path / "k" / "agents" / "ppo" / "policy.pt").is_file()
