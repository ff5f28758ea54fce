"""Run folders: everything a run writes, written atomically so an interrupted run never corrupts it.

Layout of ``results/<name>/``::

    config.yaml        the resolved env config (``Config.to_dict()``): the run can be replayed from it
    seeds.json         train, tune and eval seeds
    metadata.json      git commit and dirty flag, Python and package versions, command line, timestamps
    summary.csv        one row per policy (see ``agents.evaluation``)
    baselines.json     tuned baseline parameters (best-static multiplier, rule parameters), if any
    metrics/*.csv      monthly.csv, by_segment.csv, per_seed.csv, tuning tables
    figures/*.png      monthly.png, frontier.png, training.png
    agents/<algo>/     trained agents (written by ``agents.training``)

Every file is written atomically (:mod:`agents.atomic_io`): a reader sees the old file or the new one,
never half of one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import pandas as pd

from agents.atomic_io import _fsync_dir, save_figure, write_csv, write_json, write_yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
# Packages whose versions decide the numbers of a run.
TRACKED_PACKAGES = ("numpy", "gymnasium", "stable-baselines3", "torch", "pandas", "matplotlib", "pydantic")


# -- metadata ----------------------------------------------------------------------------------------
def now_iso() -> str:
    """Local time with its UTC offset, to the second (ISO 8601)."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


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


# -- run folder --------------------------------------------------------------------------------------
# Suffixes kept for the copies --overwrite makes next to a run: the run being replaced, the run being made.
PREVIOUS_SUFFIX = ".previous"
PARTIAL_SUFFIX = ".partial"
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def default_run_name(*parts: str) -> str:
    """CleanRL-style name ``part1__part2__YYYYmmdd-HHMMSS`` (local time)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return "__".join([*(p for p in parts if p), stamp])


def check_run_name(name: Any, option: str = "--name") -> str:
    """``name`` if it is a plain folder name; ``ValueError`` naming ``option`` otherwise.

    Refused: empty names, ``.`` and ``..``, anything with a path separator (so no absolute path and no
    way out of ``--out``), control characters (a newline would make a folder no one can type), and the
    suffixes ``--overwrite`` uses for its own copies.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"{option}: the run name must not be empty")
    if _CONTROL_CHARACTERS.search(name):
        raise ValueError(f"{option}: the run name {name!r} contains a control character")
    if name in (".", ".."):
        raise ValueError(f"{option}: the run name must be a plain folder name, not {name!r}")
    if "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        raise ValueError(f"{option}: the run name must be a plain folder name without separators, got {name!r}")
    if name.endswith((PREVIOUS_SUFFIX, PARTIAL_SUFFIX)):
        raise ValueError(
            f"{option}: run names ending in {PREVIOUS_SUFFIX} or {PARTIAL_SUFFIX} are kept for --overwrite's "
            f"copies, got {name!r}"
        )
    return name


def check_out_dir(root: str | Path, option: str = "--out") -> Path:
    """``root`` if it is a folder or does not exist yet; ``ValueError`` naming ``option`` otherwise."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{option}: {root} exists and is not a folder")
    return root


def read_metadata(folder: str | Path) -> dict[str, Any] | None:
    """A run folder's ``metadata.json`` (None if absent); ``ValueError`` naming the file if unreadable."""
    path = Path(folder) / "metadata.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists but belongs to someone else, or cannot tell: assume alive
    return True


def run_status(folder: str | Path) -> str | None:
    """``finished``, ``failed``, ``interrupted``, ``running`` or None (no metadata).

    A run recorded as running whose process is gone from this machine (killed with ``kill -9``, a power
    cut) is reported ``interrupted``: a recorded status of running is never trusted for ever.
    """
    metadata = read_metadata(folder)
    if metadata is None:
        return None
    status = str(metadata.get("status"))
    pid, host = metadata.get("pid"), metadata.get("host")
    if status == "running" and isinstance(pid, int) and host == platform.node() and not _process_alive(pid):
        return "interrupted"
    return status


def _real_folder(path: Path, what: str) -> None:
    # A symlink would let a rename or a delete reach outside --out; a file is not a run.
    if path.is_symlink() or not path.is_dir():
        raise FileExistsError(f"{path} ({what}) exists and is not a plain folder; move it away first")


class RunFolder:
    """``<root>/<name>/`` and the files of one run. Every write is atomic.

    A run started with ``overwrite`` over an existing ``<name>`` is written to ``<name>.partial`` and
    moved into place only when it finishes (see :meth:`create` and :meth:`publish`).

    Args:
        path: the run folder (where files are written now).
        final: where the run goes once it finishes, if it is written elsewhere until then.
    """

    def __init__(self, path: str | Path, final: str | Path | None = None):
        self.path = Path(path)
        self.final = Path(final) if final is not None else None

    @classmethod
    def create(
        cls, root: str | Path, name: str, exist_ok: bool = False, overwrite: bool = False, hint: str = ""
    ) -> RunFolder:
        """Create ``root/name/`` (atomically: two runs started together never share a folder).

        Args:
            root: parent folder (e.g. ``results``); created if missing.
            name: run name; a plain folder name, see :func:`check_run_name`.
            exist_ok: reuse an existing folder (resuming). Otherwise an existing folder is an error, so a
                run never silently mixes its files with another's.
            overwrite: replace an existing ``root/name`` once this run finishes. Until then the new run
                is written to ``root/name.partial`` and the old one stays where it was. On finishing, a
                complete old run becomes ``name.previous`` (replacing an older one), an unfinished one is
                deleted; nothing outside ``root`` is touched.
            hint: what the message for a taken name suggests (e.g. "pass --overwrite").
        """
        check_run_name(name)
        root = check_out_dir(root)
        path = root / name
        if exist_ok:
            if path.exists() or path.is_symlink():
                _real_folder(path, "the run folder")
            root.mkdir(parents=True, exist_ok=True)
            path.mkdir(exist_ok=True)
            return cls(path)
        if overwrite and (path.exists() or path.is_symlink()):
            cls._check_replaceable(root, name)
            partial = root / f"{name}{PARTIAL_SUFFIX}"
            if partial.exists() or partial.is_symlink():
                shutil.rmtree(partial)  # checked above: an unfinished run of ours, its process gone
            partial.mkdir()
            return cls(partial, final=path)
        root.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            if not path.is_dir():
                raise FileExistsError(f"{path} exists and is not a folder") from None
            raise FileExistsError(
                f"run folder {path} already exists; choose another --name" + (f", or {hint}" if hint else "")
            ) from None
        return cls(path)

    @staticmethod
    def _check_replaceable(root: Path, name: str) -> None:
        """Everything ``--overwrite`` will move or delete is a plain folder of ours that no process writes."""
        path, previous, partial = root / name, root / f"{name}{PREVIOUS_SUFFIX}", root / f"{name}{PARTIAL_SUFFIX}"
        _real_folder(path, "the run to replace")
        if run_status(path) == "running":
            raise FileExistsError(f"run folder {path} is being written by a running process; wait for it or stop it")
        if previous.exists() or previous.is_symlink():
            _real_folder(previous, "the kept previous run")
        if partial.exists() or partial.is_symlink():
            _real_folder(partial, "an unfinished --overwrite")
            status = run_status(partial)
            if status == "running":
                raise FileExistsError(f"{partial} is being written by a running process; wait for it or stop it")
            if status == "finished":
                raise FileExistsError(
                    f"{partial} holds a finished run that was never moved into place; rename it to keep it, or "
                    "delete it"
                )

    def publish(self) -> Path:
        """Move a finished ``overwrite`` run into place (a no-op for any other run). Returns the run's path.

        The old run, if complete (or not a run at all), becomes ``<name>.previous``, replacing an older
        one; an old run that never finished is deleted. The new run is complete before anything is removed.
        """
        if self.final is None:
            return self.path
        final, previous = self.final, self.final.with_name(self.final.name + PREVIOUS_SUFFIX)
        if final.exists() or final.is_symlink():
            _real_folder(final, "the run to replace")
            if run_status(final) in ("failed", "interrupted"):
                shutil.rmtree(final)
            else:
                if previous.exists() or previous.is_symlink():
                    _real_folder(previous, "the kept previous run")
                    shutil.rmtree(previous)
                final.rename(previous)
        self.path.rename(final)
        self.path, self.final = final, None
        _fsync_dir(final.parent)
        return final

    # where things go
    @property
    def figures_dir(self) -> Path:
        return self.path / "figures"

    @property
    def metrics_dir(self) -> Path:
        return self.path / "metrics"

    @property
    def agents_dir(self) -> Path:
        return self.path / "agents"

    # writers
    def write_config(self, config: Any) -> Path:
        """``config.yaml``: a ``Config`` (via ``to_dict()``) or a plain mapping."""
        data = config.to_dict() if hasattr(config, "to_dict") else config
        return write_yaml(self.path / "config.yaml", data)

    def write_seeds(self, train: Iterable[int] = (), tune: Iterable[int] = (), eval: Iterable[int] = ()) -> Path:  # noqa: A002 - the name used everywhere else
        """``seeds.json`` with the train, tune and eval seed lists."""
        return write_json(
            self.path / "seeds.json",
            {"train": [int(s) for s in train], "tune": [int(s) for s in tune], "eval": [int(s) for s in eval]},
        )

    def write_metadata(self, metadata: Mapping[str, Any]) -> Path:
        """``metadata.json`` (see :func:`collect_metadata`)."""
        return write_json(self.path / "metadata.json", dict(metadata))

    def finish_metadata(self, metadata: dict[str, Any], status: str = "finished") -> Path:
        """Stamp ``finished_at`` and ``status`` into ``metadata`` and rewrite ``metadata.json``."""
        metadata["finished_at"] = now_iso()
        metadata["status"] = status
        return self.write_metadata(metadata)

    @contextlib.contextmanager
    def track(self, metadata: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Write ``metadata.json`` now and stamp how the block ended: finished, interrupted or failed.

        Usage: ``with run.track(collect_metadata()): ...``. The exception, if any, propagates. A finished
        ``overwrite`` run is then moved into place (:meth:`publish`): ``self.path`` is its final folder.
        """
        self.write_metadata(metadata)
        try:
            yield metadata
        except KeyboardInterrupt:
            self.finish_metadata(metadata, "interrupted")
            raise
        except BaseException as exc:
            metadata["error"] = f"{type(exc).__name__}: {exc}"
            self.finish_metadata(metadata, "failed")
            raise
        self.finish_metadata(metadata, "finished")
        self.publish()

    def write_summary(self, summary: pd.DataFrame) -> Path:
        return write_csv(self.path / "summary.csv", summary)

    def write_metrics(self, name: str, frame: pd.DataFrame) -> Path:
        """``metrics/<name>.csv``."""
        return write_csv(self.metrics_dir / f"{_stem(name)}.csv", frame)

    def write_json(self, name: str, data: Any) -> Path:
        """``<name>.json`` at the top of the run folder."""
        return write_json(self.path / f"{_stem(name)}.json", data)

    def save_figure(self, name: str, figure: Any) -> Path:
        """``figures/<name>.png``."""
        return save_figure(self.figures_dir / f"{_stem(name)}.png", figure)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"


def _stem(name: str) -> str:
    if not name or Path(name).name != name:
        raise ValueError(f"file name must be a plain name without folders, got {name!r}")
    return name[:-4] if name.endswith((".csv", ".png")) else name.removesuffix(".json")


# -- the comparison table ------------------------------------------------------------------------------
def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def format_summary(summary: pd.DataFrame) -> str:
    """The comparison table for a terminal: revenue and uplift with 95% CIs, M3+ rate against the cap.

    Missing columns or values are shown as ``-`` (e.g. no uplift for the best static itself).
    """

    def col(row: Mapping[Any, Any], name: str) -> Any:
        return row.get(name, float("nan"))

    rows = []
    for row in summary.to_dict("records"):
        meets = col(row, "meets_cap")
        rows.append(
            {
                "policy": row.get("policy", "?"),
                "revenue/user [CNY]": _fmt(col(row, "per_user_revenue"), ".1f"),
                "95% CI": f"[{_fmt(col(row, 'per_user_revenue_ci_low'), '.1f')}, "
                f"{_fmt(col(row, 'per_user_revenue_ci_high'), '.1f')}]",
                "M3+ [%]": _fmt(100 * col(row, "m3plus_rate"), ".2f"),
                "cap [%]": _fmt(100 * col(row, "cap"), ".2f"),
                "meets cap": "-"
                if meets is None or (isinstance(meets, float) and math.isnan(meets))
                else ("yes" if bool(meets) else "NO"),
                "uplift vs best static [%]": _fmt(100 * col(row, "uplift_vs_best_static"), "+.1f"),
                "uplift 95% CI [%]": f"[{_fmt(100 * col(row, 'uplift_ci_low'), '+.1f')}, "
                f"{_fmt(100 * col(row, 'uplift_ci_high'), '+.1f')}]",
            }
        )
    if not rows:
        return "(no policies evaluated)"
    return pd.DataFrame(rows).to_string(index=False)


# -- what an evaluation writes -------------------------------------------------------------------------
BASELINES_FILE = "baselines.json"


def write_baselines(run: RunFolder, best_static: float | None = None, rule_params: Any = None) -> Path:
    """``baselines.json``: the tuned baseline parameters, so ``scripts/evaluate.py`` can rebuild them.

    Args:
        run: the run folder.
        best_static: the tuned best-static line multiplier.
        rule_params: the tuned ``RuleParams`` (a dataclass; written field by field).
    """
    data: dict[str, Any] = {}
    if best_static is not None:
        data["best_static"] = {"x": float(best_static)}
    if rule_params is not None:
        data["rule"] = rule_params
    return run.write_json(BASELINES_FILE, data)


def read_seeds(folder: str | Path) -> dict[str, list[int]] | None:
    """A run folder's ``seeds.json`` (None if absent); ``ValueError`` naming the file if it is malformed."""
    path = Path(folder) / "seeds.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object with train, tune and eval seed lists")
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
    path = Path(folder) / BASELINES_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


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
