"""Argument pieces shared by the scripts, and the wrapper that turns bad input into ``error: ...``, exit 2.

A script builds its parser from :func:`add_config_args`, :func:`add_budget_args` and
:func:`add_output_args`, turns the parsed arguments into a validated ``Config`` with
:func:`config_from_args`, and runs its ``main`` through :func:`run_main`, so a typo in ``--set`` prints the
config's own message (which key, which value, what is allowed) rather than a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from envs.actions import MAX_ACCOUNTS
from envs.config import Config, ConfigError, available_presets, load_config, parse_override

# Exit status for bad input, as argparse uses for its own errors.
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention


def preset_arg(text: str) -> str:
    """``--preset`` value: a known preset name or an existing YAML file (e.g. a run's ``config.yaml``)."""
    if text in available_presets():
        return text
    if text.endswith((".yaml", ".yml")):
        if not Path(text).is_file():
            raise argparse.ArgumentTypeError(f"config file not found: {text}")
        return text
    raise argparse.ArgumentTypeError(
        f"unknown preset '{text}'; available presets: {', '.join(available_presets())}, or a path to a YAML file"
    )


def _int_at_least(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def account_count(text: str) -> int:
    """A number of accounts: a positive integer up to MAX_ACCOUNTS."""
    value = _int_at_least(text, 1, "a positive integer")
    if value > MAX_ACCOUNTS:
        raise argparse.ArgumentTypeError(f"at most {MAX_ACCOUNTS:,} accounts, got {value:,}")
    return value


def positive_int(text: str) -> int:
    """A strictly positive integer argument."""
    return _int_at_least(text, 1, "a positive integer")


# Seed labels of the scripts: each names a block of accounts (agents.evaluation.portfolio_seed), 2**32 of them.
MAX_SEED_LABEL = 2**32 - 1


def seed_label(text: str) -> int:
    """A seed label of the scripts: an integer in [0, 2**32 - 1]."""
    value = _int_at_least(text, 0, "an integer >= 0")
    if value > MAX_SEED_LABEL:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, 2**32 - 1], got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer argument >= 0 (seeds)."""
    return _int_at_least(text, 0, "an integer >= 0")


def name_list(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """A comma-separated list whose items must be in ``allowed`` (e.g. ``--algos ppo,a2c``)."""

    def parse(text: str) -> list[str]:
        items = [t.strip().lower() for t in text.split(",") if t.strip()]
        unknown = [t for t in items if t not in allowed]
        if unknown or not items:
            what = "item" if len(unknown) == 1 else "items"
            raise argparse.ArgumentTypeError(f"unknown {what} {unknown or [text]}; allowed: {', '.join(allowed)}")
        return list(dict.fromkeys(items))

    return parse


def add_config_args(parser: argparse.ArgumentParser, default_preset: str | None = "wechat") -> None:
    """``--preset`` and repeatable ``--set key=value``."""
    group = parser.add_argument_group("configuration")
    group.add_argument(
        "--preset",
        type=preset_arg,
        default=default_preset,
        help=f"platform preset ({', '.join(available_presets())}) or a YAML config file, "
        f"e.g. a run's config.yaml (default: {default_preset or 'see below'})",
    )
    group.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a config value by its dotted key, e.g. --set env.horizon=24 "
        "--set macro.forced_stress_start=12; repeatable; the value is read as YAML",
    )


def add_budget_args(parser: argparse.ArgumentParser, accounts: int = 2000, eval_seeds: int = 5) -> None:
    """``--accounts``, ``--eval-seeds`` and the base ``--seed``."""
    group = parser.add_argument_group("budget")
    group.add_argument(
        "--accounts",
        type=account_count,
        default=accounts,
        help=f"accounts in each simulated portfolio (default: {accounts})",
    )
    group.add_argument(
        "--eval-seeds",
        type=positive_int,
        default=eval_seeds,
        help="number of evaluation seeds; each gives other accounts and another macro path; "
        f"CIs are across them (default: {eval_seeds})",
    )
    group.add_argument(
        "--seed",
        type=seed_label,
        default=0,
        help="base seed from which disjoint train, tune and eval seeds are derived (default: 0)",
    )


def add_output_args(parser: argparse.ArgumentParser, out: str = "results") -> None:
    """``--out``, ``--name`` and ``--no-progress``."""
    group = parser.add_argument_group("output")
    group.add_argument("--out", type=Path, default=Path(out), help=f"folder holding run folders (default: {out})")
    group.add_argument(
        "--name",
        default=None,
        help="run folder name under --out: a plain folder name (no path separators, '.', '..' or control "
        "characters; not ending in .previous or .partial) (default: <preset>__<what>__<date-time>)",
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bars (e.g. in CI logs)")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``--set`` items as a dotted-key dict; a malformed item raises ``ConfigError``."""
    overrides: dict[str, Any] = {}
    for item in getattr(args, "overrides", None) or []:
        key, value = parse_override(item)
        overrides[key] = value  # a later --set of the same key wins, as on most command lines
    return overrides


def config_from_args(args: argparse.Namespace) -> Config:
    """The validated config of ``--preset`` with ``--set`` overrides (``ConfigError`` if invalid)."""
    return load_config(args.preset, overrides_from_args(args) or None)


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a script's ``main(argv)``; bad input prints ``error: <message>`` to stderr and returns 2.

    Caught: ``ConfigError`` (bad preset or ``--set``), ``FileNotFoundError`` (missing run folder or model),
    ``FileExistsError`` (run folder taken), ``ValueError`` and ``TypeError`` (bad values found by the
    library), paths that cannot be used (permissions, a file where a folder belongs) and ``MemoryError``.
    Anything else is a bug and keeps its traceback. Ctrl-C returns 130; what was written so far stays intact.
    """
    try:
        return int(main(argv) or 0)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError, TypeError) as exc:
        message = str(exc) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        # a path the user gave that cannot be written or read: the OS message names it
        print(f"error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print("error: out of memory: ask for fewer accounts (--accounts, --train-accounts)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted; files already written are complete (every write is atomic)", file=sys.stderr)
        return EXIT_INTERRUPTED
