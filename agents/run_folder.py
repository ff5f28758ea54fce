"""``<out>/<name>/``: a run folder, its name and its status, created and replaced without losing a run.

Names are plain folder names (:func:`check_run_name`), so nothing outside ``--out`` is ever created, moved
or deleted. Creation is atomic (``mkdir`` without ``exist_ok``): two runs started together never share a
folder. ``--overwrite`` writes the new run to ``<name>.partial`` and moves it into place only when it
finishes (:meth:`RunFolder.publish`), so the previous complete run is never lost. A run recorded as
running whose process is gone is reported ``interrupted`` (:func:`run_status`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from agents.atomic_io import _fsync_dir, save_figure, write_csv, write_json, write_yaml


def now_iso() -> str:
    """Local time with its UTC offset, to the second (ISO 8601)."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


# -- names --------------------------------------------------------------------------------------
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


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` (None if absent); ``ValueError`` naming the file if it is not one."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_metadata(folder: str | Path) -> dict[str, Any] | None:
    """A run folder's ``metadata.json`` (None if absent); ``ValueError`` naming the file if unreadable."""
    return read_json_object(Path(folder) / "metadata.json")


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


def _status_or_unknown(folder: Path) -> str | None:
    # An unreadable metadata.json says nothing about the run: "unknown" is neither running nor unfinished,
    # so --overwrite keeps such a folder as <name>.previous rather than deleting it.
    try:
        return run_status(folder)
    except ValueError:
        return "unknown"


def _running_message(folder: Path) -> str:
    metadata = read_metadata(folder) or {}
    pid, host = metadata.get("pid"), metadata.get("host")
    if host == platform.node():
        return f"{folder} is being written by process {pid}; wait for it or stop it"
    return (
        f"{folder} is recorded as running on another machine ({host!r}, process {pid}); if that run is gone, "
        "rename or delete the folder"
    )


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
        if _status_or_unknown(path) == "running":
            raise FileExistsError(_running_message(path))
        if previous.exists() or previous.is_symlink():
            _real_folder(previous, "the kept previous run")
        if partial.exists() or partial.is_symlink():
            _real_folder(partial, "an unfinished --overwrite")
            status = _status_or_unknown(partial)
            if status == "running":
                raise FileExistsError(_running_message(partial))
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
            if _status_or_unknown(final) in ("failed", "interrupted"):
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
