"""scripts/whatif.py as a user runs it: the side-by-side table and its files; bad input exits 2."""

from __future__ import annotations

import pandas as pd
import pytest

from agents.cli import run_main


@pytest.fixture(scope="module")
def whatif(load_script):
    return load_script("whatif.py")


def test_whatif_on_a_baselines_only_run_prints_and_writes_the_table(whatif, baselines_run, capsys):
    argv = ["--run", str(baselines_run), "--scenario", "recession", "--accounts", "120", "--no-progress"]
    assert run_main(whatif.main, argv) == 0
    out = capsys.readouterr().out
    assert "base vs recession" in out and "change [95% CI]" in out
    for policy in ("static_hold", "best_static", "rule", "random"):
        assert policy in out
    folder = baselines_run / "whatif" / "recession"
    table = pd.read_csv(folder / "whatif.csv")
    assert set(table["case"]) == {"base", "scenario"} and len(table) == 8
    assert sorted(table["policy"].unique()) == ["best_static", "random", "rule", "static_hold"]
    assert (folder / "whatif.png").read_bytes()[:4] == b"\x89PNG"
    assert pd.read_csv(folder / "changes.csv")["key"].tolist()[0] == "default.job_loss_rate"
    # the run's own evaluation seeds, the same for both cases
    assert (folder / "seeds.json").read_text().replace(" ", "").replace("\n", "").startswith('{"eval":[3,4]')


def test_whatif_bad_input_exits_2_naming_the_fault(whatif, baselines_run, tmp_path, capsys):
    assert run_main(whatif.main, ["--run", str(tmp_path / "nope"), "--scenario", "recession"]) == 2
    assert "not found" in capsys.readouterr().err
    assert run_main(whatif.main, ["--run", str(baselines_run), "--scenario", "recesion"]) == 2
    assert "unknown scenario 'recesion'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: d\nchanges:\n  default.job_los_rate: {scale: 2, source: assumption}\n")
    assert run_main(whatif.main, ["--run", str(baselines_run), "--scenario", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "default.job_los_rate" in err and "job_loss_rate" in err
    assert not (baselines_run / "whatif").exists()  # nothing written for rejected input
