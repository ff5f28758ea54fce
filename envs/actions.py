"""What a caller hands the env, one rule for both faces (``CreditLine-v0`` and ``make_portfolio``).

Actions: the lender's multiplier on each account's current line. Discrete actions are integers (or
integral floats) in [0, 6]; continuous actions real numbers (clipped to [-1, 1]). Strings, ``None``, bools
and complex numbers are refused with ``TypeError``, out-of-range values with ``ValueError``.

Portfolio sizes: integers (not bools) in [1, MAX_ACCOUNTS].

Seeds: Python or numpy integers (not bools) in [0, MAX_SEED] = [0, 2**63 - 1]; anything else is refused,
never wrapped or truncated. ``make_portfolio(seed=s)`` keys account i on ``s + i`` (below 2**64 always).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

MAX_SEED = 2**63 - 1
# Assumption: beyond 100 million accounts a portfolio's arrays (a few hundred bytes each) outgrow a
# workstation's memory; a larger request is refused up front rather than failing deep in an allocation.
MAX_ACCOUNTS = 100_000_000

# Discrete choices: cuts, hold (1.0) and raises. Assumption: steps of the size banks use in line
# reviews (cuts up to half, raises up to half again); the new line is clipped to the product's range.
LIMIT_MULTIPLIERS: tuple[float, ...] = (0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5)
HOLD_ACTION = LIMIT_MULTIPLIERS.index(1.0)
_MULTIPLIERS = np.array(LIMIT_MULTIPLIERS)
_LOG_MIN, _LOG_MAX = np.log(LIMIT_MULTIPLIERS[0]), np.log(LIMIT_MULTIPLIERS[-1])


def check_seed(seed: Any, what: str = "seed") -> int:
    """``seed`` as an int if it is an integer in [0, MAX_SEED]; ``TypeError`` / ``ValueError`` naming it otherwise."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (numbers.Integral, np.integer)):
        raise TypeError(f"{what} must be an integer in [0, 2**63 - 1], got {type(seed).__name__} {seed!r}")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"{what} must be an integer in [0, 2**63 - 1], got {seed!r}")
    return int(seed)


def check_num_accounts(num_accounts: Any) -> int:
    """``num_accounts`` as an int if it is an integer (not a bool) in [1, MAX_ACCOUNTS]; ``ValueError`` otherwise."""
    integer = isinstance(num_accounts, (numbers.Integral, np.integer)) and not isinstance(
        num_accounts, (bool, np.bool_)
    )
    if not integer or not 1 <= int(num_accounts) <= MAX_ACCOUNTS:
        raise ValueError(f"num_accounts must be an integer in [1, {MAX_ACCOUNTS:,}], got {num_accounts!r}")
    return int(num_accounts)


def _numeric(actions: Any, kind: str) -> np.ndarray:
    """``actions`` as a flat real array; ``TypeError`` for strings, None, bools, complex numbers, objects."""
    if actions is None or isinstance(actions, (str, bytes, bool, np.bool_, complex)):
        raise TypeError(f"{kind} actions must be numbers, got {type(actions).__name__} {actions!r:.80}")
    try:
        array = np.asarray(actions)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise TypeError(f"{kind} actions must be an array of numbers, got {actions!r:.80}: {exc}") from None
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{kind} actions must be real numbers, got dtype {array.dtype}: {actions!r:.80}")
    return array.reshape(-1)


def discrete_to_multiplier(actions: np.ndarray) -> np.ndarray:
    """Index into LIMIT_MULTIPLIERS; rejects anything that is not a valid index."""
    idx = _numeric(actions, "discrete")
    if idx.dtype.kind not in "iu":
        if not np.all(idx == np.floor(idx)):  # also rejects NaN
            raise ValueError(f"discrete actions must be integers in [0, {len(LIMIT_MULTIPLIERS) - 1}]")
        idx = idx.astype(np.int64)
    top = len(LIMIT_MULTIPLIERS) - 1
    out_of_range = lambda: ValueError(  # noqa: E731
        f"discrete actions must be in [0, {top}], got {idx.min()}..{idx.max()}"
    )
    # take() rejects indices past the end itself; only what it would wrap needs a scan: negative indices,
    # and unsigned ones beyond the signed range
    if idx.size and ((idx.dtype.kind == "i" and idx.min() < 0) or (idx.dtype.kind == "u" and idx.max() > top)):
        raise out_of_range()
    try:
        return _MULTIPLIERS.take(idx)
    except IndexError:
        raise out_of_range() from None


def continuous_to_multiplier(actions: np.ndarray) -> np.ndarray:
    """Map a in [-1, 1] to a multiplier on a log scale: -1 is the deepest cut, 0 hold, +1 the largest raise."""
    a = _numeric(actions, "continuous").astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"continuous actions must be finite numbers in [-1, 1], got {a[~np.isfinite(a)][:5]}")
    a = np.clip(a, -1.0, 1.0)
    return np.exp(np.where(a < 0, -a * _LOG_MIN, a * _LOG_MAX))


def multiplier_to_continuous(multiplier: np.ndarray) -> np.ndarray:
    """Inverse of continuous_to_multiplier (for policies written in multipliers)."""
    log_m = np.log(np.clip(np.asarray(multiplier, dtype=np.float64), LIMIT_MULTIPLIERS[0], LIMIT_MULTIPLIERS[-1]))
    return np.where(log_m < 0, -log_m / _LOG_MIN, log_m / _LOG_MAX)
