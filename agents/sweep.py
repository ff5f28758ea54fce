"""Sweeps over config keys: every cell evaluates the chosen policies; cells are saved as they finish.

A sweep is a list of **cells**, each a dict of dotted-key overrides on a base config (a grid: every
combination of the given values; random: keys drawn uniformly in ranges from a seeded generator). Each
cell runs :func:`agents.evaluation.evaluate` on the same evaluation seeds and writes
``cells/<cell id>.csv`` atomically (:mod:`agents.atomic_io`) the moment it is back, so a killed sweep
loses only the cells in flight: run it again and the finished cells are skipped. The cell id is a hash of
the overrides, so it does not depend on the order of the cells. ``sweep.json`` records what the cells
were computed with (base config, policies, seeds, accounts); resuming with anything else is an error, as
the table would mix two sweeps.

Backends run the same :func:`run_cell`: ``local`` (``--workers 1`` in this process, more in a
``concurrent.futures`` process pool) or ``ray`` (Ray tasks, on a local Ray or the cluster at
``address``). Results come back to this process, which alone writes files: Ray workers on other
machines need the package installed (``pip install .[ray]``) but no shared disk, except to read agents
from a run folder.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agents.atomic_io import write_csv, write_json
from agents.run_policies import PolicySpec, build_policies
from agents.uplift import comparison
from envs.config import Config, ConfigError, build_config, parse_override, resolve_config

BACKENDS = ("local", "ray")
Cell = dict[str, Any]
SUMMARY_COLUMNS = (
    "per_user_revenue",
    "per_user_revenue_ci_low",
    "per_user_revenue_ci_high",
    "m3plus_rate",
    "m3plus_rate_ci_low",
    "m3plus_rate_ci_high",
    "cap",
    "meets_cap",
    "average_line",
    "attrition_rate",
)


# -- cells --------------------------------------------------------------------------------------------
def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``key=v1,v2,...`` items (values read as YAML) as key -> values."""
    axes: dict[str, list[Any]] = {}
    for item in items:
        key, _ = parse_override(item.split(",", 1)[0])
        raw = item.split("=", 1)[1]
        values = [parse_override(f"{key}={v.strip()}")[1] for v in raw.split(",") if v.strip()]
        if not values:
            raise ConfigError(f"--grid {item}: give at least one value, e.g. {key}=0.01,0.02")
        if key in axes:
            raise ConfigError(f"--grid: key '{key}' given twice")
        axes[key] = values
    return axes


def parse_ranges(items: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``key=low:high`` items as key -> (low, high), numbers with low <= high."""
    ranges: dict[str, tuple[float, float]] = {}
    for item in items:
        key, raw = item.split("=", 1) if "=" in item else (item, "")
        try:
            low, high = (float(v) for v in raw.split(":"))
        except ValueError:
            raise ConfigError(
                f"--random {item}: expected key=low:high with two numbers, e.g. env.m3plus_cap=0.01:0.03"
            ) from None
        if low > high:
            raise ConfigError(f"--random {item}: low {low} exceeds high {high}")
        ranges[key.strip()] = (low, high)
    return ranges


def grid_cells(axes: Mapping[str, Sequence[Any]]) -> list[Cell]:
    """Every combination of the axes' values, the last key varying fastest."""
    keys = list(axes)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(axes[k] for k in keys))]


def random_cells(ranges: Mapping[str, tuple[float, float]], samples: int, seed: int = 0) -> list[Cell]:
    """``samples`` cells with each key uniform in its range, from a generator seeded by ``seed``."""
    rng = np.random.default_rng(seed)
    return [{key: float(rng.uniform(low, high)) for key, (low, high) in ranges.items()} for _ in range(samples)]


def cell_id(cell: Mapping[str, Any]) -> str:
    """A stable name for a cell: a hash of its overrides (independent of the cells' order)."""
    text = json.dumps(dict(sorted(cell.items())), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_cells(config: Config, cells: Sequence[Cell]) -> None:
    """Every cell's config validates (``ConfigError`` naming the key and value otherwise), before any run."""
    if not cells:
        raise ValueError("the sweep has no cells")
    for cell in cells:
        resolve_config(config, cell)


# -- one cell -----------------------------------------------------------------------------------------
def run_cell(
    config_data: Mapping[str, Any], cell: Cell, specs: Mapping[str, PolicySpec], num_accounts: int, seeds: Sequence[int]
) -> pd.DataFrame:
    """One row per policy: the swept values, the evaluation summary and the comparisons with best static
    and the rule. Plain arguments only (the config as a dict), so it runs the same in any process."""
    config = resolve_config(build_config(config_data, source="sweep base config"), cell)
    policies = build_policies(specs)
    reference = "best_static" if "best_static" in policies else None
    from agents.evaluation import evaluate

    evaluation = evaluate(policies, config, num_accounts, seeds, progress=False, reference=reference)
    summary = evaluation.summary.set_index("policy")
    table = pd.DataFrame({"cell": cell_id(cell), **{key: [value] * len(summary) for key, value in cell.items()}})
    table["policy"] = list(summary.index)
    for column in SUMMARY_COLUMNS:
        table[column] = summary[column].to_numpy()
    for ref in ("best_static", "rule"):
        versus = comparison(evaluation.summary, ref).reindex(summary.index)  # the evaluator's own columns
        for column in versus.columns:
            values = versus[column].to_numpy(dtype=object if column == "shown" else float)
            table[f"{column}_vs_{ref}"] = values
    return table


# -- the sweep ----------------------------------------------------------------------------------------
def run_sweep(
    config: Config,
    cells: Sequence[Cell],
    specs: Mapping[str, PolicySpec],
    num_accounts: int,
    seeds: Sequence[int],
    out: str | Path,
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
) -> pd.DataFrame:
    """Run every cell not yet in ``out/cells/`` and return the tidy table of all cells (also ``sweep.csv``).

    Args:
        config: the base config; each cell overrides some of its keys.
        cells: from :func:`grid_cells` or :func:`random_cells`.
        specs: policy specs (:mod:`agents.run_policies`).
        num_accounts: accounts per portfolio.
        seeds: evaluation seeds, the same for every cell.
        out: the sweep folder (created; reused when resuming).
        workers: processes of the local backend (1: in this process).
        backend: ``local`` or ``ray``.
        address: the Ray cluster to join (``ray.init(address=...)``); None starts a local Ray unless one
            is already running in this process.
        log: where progress lines go.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    check_cells(config, cells)
    out = Path(out)
    ids = [cell_id(c) for c in cells]
    if len(set(ids)) != len(ids):
        raise ValueError("the sweep repeats a cell; give each value once")
    _check_same_sweep(out, config, specs, num_accounts, seeds, cells)
    cells_dir = out / "cells"
    todo = [(i, c) for i, c in zip(ids, cells, strict=True) if not (cells_dir / f"{i}.csv").is_file()]
    if len(todo) < len(cells):
        log(f"resuming: {len(cells) - len(todo)} of {len(cells)} cells already done, skipped")
    args = (config.to_dict(), specs, num_accounts, list(seeds))

    by_id = dict(todo)

    def save(cid: str, table: pd.DataFrame, done: int) -> None:
        write_csv(cells_dir / f"{cid}.csv", table)
        log(f"cell {done}/{len(todo)} done: {by_id[cid]}")

    if backend == "ray":
        _run_ray(todo, args, address, save)
    elif workers == 1:
        for n, (cid, cell) in enumerate(todo, start=1):
            save(cid, run_cell(args[0], cell, *args[1:]), n)
    else:
        context = get_context("spawn")  # fresh interpreters: no forked torch or tqdm threads
        with ProcessPoolExecutor(workers, context, initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(run_cell, args[0], cell, *args[1:]): cid for cid, cell in todo}
            for n, future in enumerate(as_completed(futures), start=1):
                save(futures[future], future.result(), n)
    table = collect(out, cells)
    write_csv(out / "sweep.csv", table)
    return table


def _exit_with_parent(parent: int) -> None:
    """Worker initialiser: end the worker when the sweep's process is gone. A sweep killed outright
    (SIGKILL, a closed terminal) cannot stop its pool, whose workers would otherwise compute the cells in
    hand for nobody and linger."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _run_ray(todo: list[tuple[str, Cell]], args: tuple, address: str | None, save: Callable) -> None:
    try:
        import ray
    except ImportError:
        raise ValueError("--backend ray needs Ray: pip install '.[ray]'") from None
    if not ray.is_initialized():
        if address is None:
            # A new local Ray for this sweep ("local": never a cluster some earlier `ray start` left behind);
            # no dashboard, no worker logs in the terminal.
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
        else:  # an existing cluster ("auto", "HEAD:6379" or "ray://HEAD:10001"), as it is configured
            try:
                ray.init(address=address)
            except ConnectionError as exc:
                raise ValueError(f"--address {address}: cannot reach the Ray cluster ({exc})") from None
    task = ray.remote(run_cell)
    config_ref = ray.put(args[0])
    pending = {task.remote(config_ref, cell, *args[1:]): cid for cid, cell in todo}
    done = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            done += 1
            save(pending.pop(ref), ray.get(ref), done)


def collect(out: str | Path, cells: Sequence[Cell]) -> pd.DataFrame:
    """The tidy table of the sweep: every cell's rows, in the order of ``cells``."""
    frames = [pd.read_csv(Path(out) / "cells" / f"{cell_id(c)}.csv") for c in cells]
    return pd.concat(frames, ignore_index=True)


def _check_same_sweep(
    out: Path,
    config: Config,
    specs: Mapping[str, PolicySpec],
    num_accounts: int,
    seeds: Sequence[int],
    cells: Sequence[Cell],
) -> None:
    settings = {
        "config": config.to_dict(),
        "policies": dict(specs),
        "accounts": int(num_accounts),
        "seeds": [int(s) for s in seeds],
        "keys": sorted({k for c in cells for k in c}),
    }
    path = out / "sweep.json"
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        differ = [k for k in settings if json.loads(json.dumps(settings[k], default=str)) != before.get(k)]
        if differ:
            raise ValueError(
                f"{out} holds a sweep made with other {differ}; its cells would mix with these. "
                "Choose another --name, or delete the folder"
            )
    write_json(path, settings)
