"""Run folders: everything a run writes, written atomically so an interrupted run never corrupts it.

Layout of ``results/<name>/``::

    config.yaml        the resolved env config (``Config.to_dict()``): the run can be replayed from it
    seeds.json         train, tune and eval seeds
    metadata.json      git commit and dirty flag, Python and package versions, command line, timestamps
    summary.csv        one row per policy (see ``agents.evaluation``)
    baselines.json     tuned baseline parameters (best-static multiplier, rule parameters), if any
    metrics/*.csv      monthly.csv, by_segment.csv, per_seed.csv, tuning tables
    figures/*.png      monthly.png, frontier.png, training.png
    agents/<algo>/     trained agents (written by ``agents.training``, files in ``agents.agent_files``)

Every file is written atomically (:mod:`agents.atomic_io`): a reader sees the old file or the new one,
never half of one. The folder itself, its name, its status and ``--overwrite`` are :mod:`agents.run_folder`
(re-exported here).
"""

from __future__ import annotations

import math
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import pandas as pd

from agents.run_folder import PARTIAL_SUFFIX as PARTIAL_SUFFIX
from agents.run_folder import PREVIOUS_SUFFIX as PREVIOUS_SUFFIX
from agents.run_folder import RunFolder as RunFolder
from agents.run_folder import check_out_dir as check_out_dir
from agents.run_folder import check_run_name as check_run_name
from agents.run_folder import default_run_name as default_run_name
from agents.run_folder import now_iso as now_iso
from agents.run_folder import read_json_object
from agents.run_folder import read_metadata as read_metadata
from agents.run_folder import run_status as run_status

REPO_ROOT = Path(__file__).resolve().parent.parent
# Packages whose versions decide the numbers of a run.
TRACKED_PACKAGES = ("numpy", "gymnasium", "stable-baselines3", "torch", "pandas", "matplotlib", "pydantic")


# -- metadata ----------------------------------------------------------------------------------------
def git_state(repo: str | Path = REPO_ROOT) -> dict[str, Any]:
    """The repository's HEAD commit and whether the working tree differs from it.

    Read-only: ``--no-optional-locks`` keeps ``git status`` from refreshing the index. Missing git or a
    folder outside a repository give ``None`` values, not an error: results outlive checkouts.
    """

    def run(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", *args], cwd=repo, capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain")
    changed = [line for line in (status or "").splitlines() if line.strip()]
    return {
        "commit": commit.strip() if commit else None,
        "dirty": None if status is None else bool(changed),
        # the first few changed paths say what "dirty" means for this run
        "changed_files": changed[:50],
    }


def package_versions(packages: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (``None`` if not installed)."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def collect_metadata(argv: list[str] | None = None, repo: str | Path = REPO_ROOT) -> dict[str, Any]:
    """What is needed to reproduce a run: code version, environment, command line, start time.

    Args:
        argv: the command line (default ``sys.argv``).
        repo: the git repository whose commit is recorded.
    """
    argv = list(sys.argv if argv is None else argv)
    return {
        "git": git_state(repo),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "command": shlex.join(argv),
        "executable": sys.executable,
        "argv": argv,
        "cwd": os.getcwd(),
        "pid": os.getpid(),  # with host: a run recorded as running whose process is gone was killed
        "host": platform.node(),
        "started_at": now_iso(),
        "finished_at": None,
        "status": "running",
    }


# -- the comparison table ------------------------------------------------------------------------------
def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def format_summary(summary: pd.DataFrame) -> str:
    """The comparison table for a terminal: revenue with its 95% CI, M3+ against the cap (and by macro
    regime), the paired comparison with the best static and with the rule, and the oracle share.

    A comparison is a relative uplift [%] unless the reference's revenue is not positive (``comparison_vs_*``
    is ``revenue_diff``, or there is no uplift but a difference): then the difference [CNY per user], a
    relative uplift over a loss meaning nothing. Missing columns or values are shown as ``-``; the rule,
    oracle and regime columns only when the summary has them.
    """

    def col(row: Mapping[Any, Any], name: str) -> Any:
        return row.get(name, float("nan"))

    def finite(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    def versus(row: Mapping[Any, Any], against: str, uplift: str, diff: str) -> tuple[str, str]:
        """The comparison cell and its CI cell: uplift in %, or the difference in CNY per user."""
        shown = row.get(f"comparison_vs_{against}")
        if shown not in ("uplift", "revenue_diff"):  # a summary without the column: whichever exists
            shown = "uplift" if finite(col(row, uplift)) or not finite(col(row, diff)) else "revenue_diff"
        names = {"best_static": ("uplift_ci", "revenue_diff_ci"), "rule": (f"{uplift}_ci", f"{diff}_ci")}[against]
        if shown == "uplift":
            value, low, high, scale, unit = col(row, uplift), f"{names[0]}_low", f"{names[0]}_high", 100, "%"
        else:
            value, low, high, scale, unit = col(row, diff), f"{names[1]}_low", f"{names[1]}_high", 1, " CNY"
        cell = _fmt(scale * value, "+.1f") + (unit if finite(value) else "")
        ci = f"[{_fmt(scale * col(row, low), '+.1f')}, {_fmt(scale * col(row, high), '+.1f')}]"
        return cell, ci + (unit if finite(col(row, low)) else "")

    def shown(*names: str) -> bool:
        return any(n in summary.columns and summary[n].notna().any() for n in names)

    with_rule = shown("uplift_vs_rule", "revenue_diff_vs_rule")
    with_oracle = shown("oracle_share")
    with_regimes = shown("m3plus_rate_normal", "m3plus_rate_stress")
    rows = []
    for row in summary.to_dict("records"):
        meets = col(row, "meets_cap")
        out = {
            "policy": row.get("policy", "?"),
            "revenue/user [CNY]": _fmt(col(row, "per_user_revenue"), ".1f"),
            "95% CI": f"[{_fmt(col(row, 'per_user_revenue_ci_low'), '.1f')}, "
            f"{_fmt(col(row, 'per_user_revenue_ci_high'), '.1f')}]",
            "M3+ [%]": _fmt(100 * col(row, "m3plus_rate"), ".2f"),
        }
        if with_regimes:
            out["M3+ normal [%]"] = _fmt(100 * col(row, "m3plus_rate_normal"), ".2f")
            out["M3+ stress [%]"] = _fmt(100 * col(row, "m3plus_rate_stress"), ".2f")
        out["cap [%]"] = _fmt(100 * col(row, "cap"), ".2f")
        out["meets cap"] = (
            "-" if meets is None or (isinstance(meets, float) and math.isnan(meets)) else ("yes" if meets else "NO")
        )
        out["uplift vs best static"], out["uplift 95% CI"] = versus(
            row, "best_static", "uplift_vs_best_static", "revenue_diff_vs_best_static"
        )
        if with_rule:
            out["uplift vs rule"], out["rule 95% CI"] = versus(row, "rule", "uplift_vs_rule", "revenue_diff_vs_rule")
        if with_oracle:
            out["oracle share"] = _fmt(col(row, "oracle_share"), ".2f")
        rows.append(out)
    if not rows:
        return "(no policies evaluated)"
    return pd.DataFrame(rows).to_string(index=False)


# -- what an evaluation writes -------------------------------------------------------------------------
BASELINES_FILE = "baselines.json"


def write_baselines(
    run: RunFolder, best_static: float | None = None, rule_params: Any = None, oracle_params: Any = None
) -> Path:
    """``baselines.json``: the tuned baseline parameters, so ``scripts/evaluate.py`` can rebuild them.

    Args:
        run: the run folder.
        best_static: the tuned best-static line multiplier.
        rule_params: the tuned ``RuleParams`` (a dataclass; written field by field).
        oracle_params: the tuned ``OracleParams`` of the privileged oracle (an upper bound).
    """
    data: dict[str, Any] = {}
    if best_static is not None:
        data["best_static"] = {"x": float(best_static)}
    if rule_params is not None:
        data["rule"] = rule_params
    if oracle_params is not None:
        data["oracle"] = oracle_params
    return run.write_json(BASELINES_FILE, data)


def read_seeds(folder: str | Path) -> dict[str, list[int]] | None:
    """A run folder's ``seeds.json`` (None if absent); ``ValueError`` naming the file if it is malformed."""
    path = Path(folder) / "seeds.json"
    data = read_json_object(path)
    if data is None:
        return None
    seeds: dict[str, list[int]] = {}
    for key in ("train", "tune", "eval"):
        values = data.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ValueError(f"{path}: '{key}' must be a list of integer seeds, got {values!r}")
        if any(v < 0 for v in values):
            raise ValueError(f"{path}: '{key}' seeds must be >= 0, got {values!r}")
        seeds[key] = values
    return seeds


def read_baselines(folder: str | Path) -> dict[str, Any]:
    """The ``baselines.json`` of a run folder as plain data ({} if the run tuned no baselines)."""
    return read_json_object(Path(folder) / BASELINES_FILE) or {}


def write_evaluation(
    run: RunFolder,
    evaluation: Any,
    cap: float,
    title: str | None = None,
    static_table: pd.DataFrame | None = None,
    agents_dir: str | Path | None = None,
) -> list[Path]:
    """Write an ``agents.evaluation.Evaluation``: summary, metrics tables and the figures.

    Args:
        run: the run folder.
        evaluation: has DataFrames ``summary``, ``monthly``, ``by_segment`` and ``per_seed``.
        cap: the M3+ cap [fraction] drawn on the figures.
        title: figure title prefix (e.g. the preset name).
        static_table: the best-static tuning table, drawn as the frontier curve (None: points only).
        agents_dir: folder of ``<algo>/progress.csv`` files for ``training.png`` (skipped if none).

    Returns:
        The paths written.
    """
    from agents import plots  # matplotlib only when figures are made

    written = [run.write_summary(evaluation.summary)]
    for name in ("monthly", "by_segment", "per_seed"):
        written.append(run.write_metrics(name, getattr(evaluation, name)))
    colours = plots.policy_colours(list(evaluation.summary["policy"]))
    written.append(run.save_figure("monthly", plots.plot_monthly(evaluation.monthly, cap, title, colours)))
    written.append(
        run.save_figure("frontier", plots.plot_frontier(evaluation.summary, static_table, cap, title, colours))
    )
    progress = plots.read_progress(agents_dir) if agents_dir is not None else {}
    if progress:
        written.append(run.save_figure("training", plots.plot_training(progress, cap, title, colours)))
    return written
