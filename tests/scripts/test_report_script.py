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
