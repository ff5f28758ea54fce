"""Files written whole or not at all: an interrupted run never leaves half a file behind.

Every file goes to a temporary file in the same folder, is flushed and fsync'ed, then renamed over the
target with ``os.replace`` (atomic on POSIX and Windows): a reader sees the old file or the new one,
never half of one. Text, JSON, YAML, CSV and PNG writers are built on :func:`atomic_write`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import yaml


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file through ``write(binary_file)`` so that ``path`` is replaced whole or not at all.

    Args:
        path: the target file; its folder is created if missing.
        write: fills the open temporary file. If it raises, the temporary file is removed, ``path``
            keeps its old content (if any) and the exception propagates.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target: os.replace is only atomic within one file system.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would have.
        os.chmod(tmp_name, _file_mode(path))
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # BaseException: a Ctrl-C in the middle must not leave a stray temporary file either.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)
    return path


def _file_mode(path: Path) -> int:
    if path.exists():
        return path.stat().st_mode & 0o7777
    umask = os.umask(0)  # reading the umask means setting it; restored at once
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform (Windows), where it is skipped.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _text_writer(produce: Callable[[IO[str]], object]) -> Callable[[IO[bytes]], None]:
    """Adapt a text serialiser to the binary temporary file (UTF-8, ``\\n`` line ends)."""

    def write(handle: IO[bytes]) -> None:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="\n", write_through=True)
        try:
            produce(text)
            text.flush()
        finally:
            text.detach()  # leave the binary handle open for flush/fsync

    return write


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write ``text`` (UTF-8)."""
    return atomic_write(path, _text_writer(lambda f: f.write(text)))


def write_json(path: str | Path, data: Any) -> Path:
    """Atomically write ``data`` as indented JSON; numpy scalars/arrays and paths are converted."""

    def produce(handle: IO[str]) -> None:
        json.dump(data, handle, indent=2, default=_json_default, allow_nan=True)
        handle.write("\n")

    return atomic_write(path, _text_writer(produce))


def write_yaml(path: str | Path, data: Any) -> Path:
    """Atomically write ``data`` as block-style YAML, keys in the given order."""
    return atomic_write(
        path,
        _text_writer(
            lambda f: yaml.safe_dump(_plain(data), f, sort_keys=False, default_flow_style=False, allow_unicode=True)
        ),
    )


def write_csv(path: str | Path, frame: pd.DataFrame, index: bool = False) -> Path:
    """Atomically write a DataFrame as CSV (no index column unless ``index``)."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"write_csv expects a pandas DataFrame for {path}, got {type(frame).__name__}")
    return atomic_write(path, _text_writer(lambda f: frame.to_csv(f, index=index)))


def save_figure(path: str | Path, figure: Any, dpi: int = 120) -> Path:
    """Atomically save a matplotlib ``Figure`` as PNG (rendered to a temporary file, then renamed)."""
    return atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "_asdict"):  # NamedTuple records, e.g. rule parameters
        return value._asdict()
    if hasattr(value, "model_dump"):  # pydantic models
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON: {value!r}")


def _plain(value: Any) -> Any:
    """Plain Python data for ``yaml.safe_dump`` (which refuses tuples' tags, numpy scalars, ...)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray, Path)):
        return _plain(_json_default(value))
    return value
