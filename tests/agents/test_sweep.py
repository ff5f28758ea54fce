"""Sweeps: cells from grids and ranges, atomic cells skipped on resume, and the same table on every backend."""

from __future__ import annotations

import pandas as pd
import pytest

from agents.sweep import cell_id, check_cells, grid_cells, parse_grid, parse_ranges, random_cells, run_sweep
from envs.config import ConfigError, load_config

SPECS = {"static_hold": {"kind": "static_hold"}, "best_static": {"kind": "best_static", "x": 1.5}}
GRID = {"env.m3plus_cap": [0.012, 0.018], "accounting.funding_rate": [0.06, 0.08]}


@pytest.fixture(scope="module")
def tiny():
    return load_config("wechat", {"env.horizon": 3})


def test_grid_is_every_combination_and_ids_ignore_order():
    axes = parse_grid(["env.m3plus_cap=0.012,0.018", "accounting.funding_rate=0.06, 0.08,0.1"])
    assert axes == {"env.m3plus_cap": [0.012, 0.018], "accounting.funding_rate": [0.06, 0.08, 0.1]}
    cells = grid_cells(axes)
    assert len(cells) == 6 and cells[1] == {"env.m3plus_cap": 0.012, "accounting.funding_rate": 0.08}
    assert cell_id({"a": 1, "b": 2}) == cell_id({"b": 2, "a": 1}) != cell_id({"a": 1, "b": 3})


def test_random_cells_are_seeded_and_inside_their_ranges():
    ranges = parse_ranges(["product.apr_high=0.12:0.24"])
    cells = random_cells(ranges, 20, seed=3)
    assert cells == random_cells(ranges, 20, seed=3) != random_cells(ranges, 20, seed=4)
    assert all(0.12 <= c["product.apr_high"] <= 0.24 for c in cells)


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: parse_ranges(["env.m3plus_cap=0.03:0.01"]), "exceeds"),
        (lambda: parse_ranges(["env.m3plus_cap=0.01"]), "low:high"),
        (lambda: parse_grid(["env.m3plus_cap="]), "at least one value"),
        (lambda: check_cells(load_config("wechat"), [{"env.m3plus_capp": 0.01}]), "env.m3plus_capp"),
        (lambda: check_cells(load_config("wechat"), [{"env.m3plus_cap": 2.0}]), "env.m3plus_cap"),
    ],
)
def test_bad_sweeps_name_the_fault(call, fragment):
    with pytest.raises(ConfigError, match=fragment):
        call()


def test_finished_cells_are_skipped_and_a_changed_sweep_is_refused(tiny, tmp_path):
    cells = grid_cells(GRID)
    logs: list[str] = []
    first = run_sweep(tiny, cells[:2], SPECS, 60, [5, 6], tmp_path, log=logs.append)
    assert len(first) == 2 * len(SPECS) and len(list((tmp_path / "cells").glob("*.csv"))) == 2
    logs.clear()
    table = run_sweep(tiny, cells, SPECS, 60, [5, 6], tmp_path, log=logs.append)
    assert logs[0] == "resuming: 2 of 4 cells already done, skipped"
    assert sum(line.startswith("cell ") for line in logs) == 2  # only the two missing cells ran
    pd.testing.assert_frame_equal(table.iloc[: len(first)], first)
    assert list(table.columns[1:3]) == list(GRID) and (table["policy"].iloc[:2] == list(SPECS)).all()
    # a funding shock lowers every policy's revenue; the cap changes nothing but the verdict
    pivot = table.set_index(["env.m3plus_cap", "accounting.funding_rate", "policy"])["per_user_revenue"]
    assert (pivot.xs(0.08, level=1) < pivot.xs(0.06, level=1)).all()
    assert (pivot.xs(0.012, level=0) == pivot.xs(0.018, level=0)).all()
    with pytest.raises(ValueError, match="other"):
        run_sweep(tiny, cells, SPECS, 61, [5, 6], tmp_path, log=logs.append)
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.slow
def test_process_pool_and_ray_give_the_same_table(tiny, tmp_path):
    ray = pytest.importorskip("ray")
    cells = grid_cells(GRID)
    local = run_sweep(tiny, cells, SPECS, 60, [5, 6], tmp_path / "local", log=lambda _: None)
    pooled = run_sweep(tiny, cells, SPECS, 60, [5, 6], tmp_path / "pool", workers=2, log=lambda _: None)
    # a new local Ray cluster for this test only (not any cluster left running on the machine)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_sweep(tiny, cells, SPECS, 60, [5, 6], tmp_path / "ray", backend="ray", log=lambda _: None)
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(local, pooled, check_exact=True)
    pd.testing.assert_frame_equal(local, on_ray, check_exact=True)
    assert len(local) == len(cells) * len(SPECS)
