"""Tune the baselines as hard as the agent, under the M3+ cap, on seeds kept apart from evaluation.

The tuners measure candidates as :func:`agents.evaluation.evaluate` does (same accounts and shocks for every
candidate; :mod:`agents.population` runs them all in one batched simulator per seed, with the evaluator's
figures exactly) on *tuning* seeds and keep the candidate with the highest per-user revenue among those whose
mean pooled M3+ rate meets ``env.m3plus_cap``; if none does, the one with the lowest M3+ rate, with a
warning. Pass the evaluation seeds as ``holdout_seeds`` and an overlap is an error.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from agents.evaluation import SeedSplit, check_disjoint, split_seeds
from agents.oracle import LINE_FLOORS, Oracle, OracleParams, sample_oracle_params
from agents.policies import BestStatic, RuleBased, RuleParams
from agents.population import population_summary
from envs.actions import LIMIT_MULTIPLIERS
from envs.config import Config, resolve_config

__all__ = [
    "StaticTuning",
    "RuleTuning",
    "tune_best_static",
    "tune_rule",
    "select_under_cap",
    "SeedSplit",
    "split_seeds",
    "check_disjoint",
    "RULE_SPACE",
    "OracleTuning",
    "tune_oracle",
]

# Every line target from 1/32 to 2.0 that BestStatic's greedy steps land on exactly (products of
# LIMIT_MULTIPLIERS). Cuts: 0.5^k x {1, 0.9, 0.75, 0.675}, k = 0..5 (0.5625 = 0.75 x 0.75 is not one: the
# first step toward it is x0.5); the lowest, 1/32, is below product.min_line / origination line for most
# accounts (500 CNY is 0.046 of the median origination line on wechat, 0.041-0.051 on the four presets), so
# lower targets only hold more lines at the product's floor. Raises: 1.1, 1.25, 1.5, 1.65 = 1.5 x 1.1,
# 1.875 = 1.5 x 1.25, and 2.0 lands on 1.5 x 1.25 x 1.1 = 2.06. Targets in between add nothing: 1.2 and 1.3
# both end at 1.25, 1.4 at 1.5.
DEFAULT_STATIC_GRID: tuple[float, ...] = (
    0.03125,
    0.046875,
    0.05625,
    0.0625,
    0.084375,
    0.09375,
    0.1125,
    0.125,
    0.16875,
    0.1875,
    0.225,
    0.25,
    0.3375,
    0.375,
    0.45,
    0.5,
    0.675,
    0.75,
    0.9,
    1.0,
    1.1,
    1.25,
    1.5,
    1.65,
    1.875,
    2.0,
)

# Random-search space of RuleParams: choices are sampled uniformly; (low, high) tuples uniformly in range.
RULE_SPACE: dict[str, tuple] = {
    "raise_multiplier": tuple(m for m in LIMIT_MULTIPLIERS if m > 1.0),
    "good_months": (2, 3, 4, 6, 9, 12),
    "min_utilisation": (0.0, 0.8),  # range
    "cut_multiplier": tuple(m for m in LIMIT_MULTIPLIERS if m < 1.0),
    "cut_score": (350.0, 600.0),  # range [points]
    "line_cap": (1.25, 1.5, 2.0, 3.0, 5.0, None),
    "line_floor": LINE_FLOORS,
}
_RANGES = ("min_utilisation", "cut_score")
_TABLE_COLUMNS = [
    "per_user_revenue",
    "per_user_revenue_ci_low",
    "per_user_revenue_ci_high",
    "m3plus_rate",
    "m3plus_rate_ci_low",
    "m3plus_rate_ci_high",
    "m3plus_rate_accounts",
    "cap",
    "meets_cap",
    "utilisation",
    "average_line",
    "attrition_rate",
    "charge_off_rate",
]


class StaticTuning(NamedTuple):
    """The chosen BestStatic target and one row per grid point (the risk-return frontier)."""

    target: float
    table: pd.DataFrame  # columns: target, chosen, and the evaluation summary's metrics


class RuleTuning(NamedTuple):
    """The chosen RuleBased parameters and one row per trial (parameters and metrics)."""

    params: RuleParams
    table: pd.DataFrame


def select_under_cap(table: pd.DataFrame) -> int:
    """Row position of the best candidate: highest ``per_user_revenue`` among rows with ``meets_cap``;
    if no row meets the cap, the lowest ``m3plus_rate``, with a warning. Ties go to the earlier row."""
    if table.empty:
        raise ValueError("no candidates to select from")
    meets = table["meets_cap"].to_numpy(dtype=bool)
    if meets.any():
        revenue = np.where(meets, table["per_user_revenue"].to_numpy(dtype=float), -np.inf)
        return int(np.argmax(revenue))
    rates = table["m3plus_rate"].to_numpy(dtype=float)
    best = int(np.nanargmin(rates))
    warnings.warn(
        f"no candidate meets the M3+ cap {table['cap'].iloc[0]:.4f}; choosing the lowest M3+ rate ({rates[best]:.4f})",
        stacklevel=3,
    )
    return best


def _check_seeds(seeds: Sequence[int], holdout_seeds: Iterable[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds:
        raise ValueError("tuning needs at least one seed")
    check_disjoint(tuning=seeds, holdout=holdout_seeds)
    return seeds


def _summary(
    policies: dict, config: Config, num_accounts: int, seeds: list[int], months: int | None, progress: bool
) -> pd.DataFrame:
    """The evaluation summary, one row per candidate in the order of ``policies``: the evaluator's figures,
    from one batched simulator per seed for all candidates (:mod:`agents.population`)."""
    summary = population_summary(policies, config, num_accounts, seeds, months=months, progress=progress)
    return summary.set_index("policy").loc[list(policies)].reset_index(drop=True)


def tune_best_static(
    config: Config | str,
    seeds: Sequence[int],
    num_accounts: int,
    grid: Sequence[float] = DEFAULT_STATIC_GRID,
    progress: bool = True,
    holdout_seeds: Iterable[int] = (),
    months: int | None = None,
) -> StaticTuning:
    """Evaluate ``BestStatic(x)`` for every ``x`` in ``grid`` on tuning ``seeds`` and choose under the cap.

    Args:
        config: preset name or ``Config`` (its ``env.m3plus_cap`` is the cap).
        seeds: tuning seeds (see :func:`split_seeds`).
        num_accounts: accounts per portfolio.
        grid: line targets as multiples of the origination line (positive, distinct).
        progress: tqdm progress bar.
        holdout_seeds: seeds that must not be used here (the evaluation seeds); overlap raises ValueError.
        months: months per run (default ``env.horizon``).
    """
    config = resolve_config(config)
    seeds = _check_seeds(seeds, holdout_seeds)
    grid = [float(x) for x in grid]
    if not grid or len(set(grid)) != len(grid):
        raise ValueError(f"grid must hold distinct line targets, got {grid}")
    policies = {f"x={x:g}": BestStatic(x) for x in grid}  # BestStatic validates each x
    summary = _summary(policies, config, num_accounts, seeds, months, progress)
    table = summary[_TABLE_COLUMNS].copy()
    table.insert(0, "target", grid)
    best = select_under_cap(table)
    table["chosen"] = np.arange(len(table)) == best
    if bool(table["meets_cap"].iloc[best]) and len(grid) > 1 and grid[best] in (max(grid), min(grid)):
        end = "largest" if grid[best] == max(grid) else "smallest"
        warnings.warn(
            f"the best static target {grid[best]:g} is the {end} in the grid and meets the cap: "
            "revenue may keep rising beyond it; extend the grid",
            stacklevel=2,
        )
    return StaticTuning(grid[best], table)


def sample_rule_params(rng: np.random.Generator) -> RuleParams:
    """One random draw from :data:`RULE_SPACE`."""
    values: dict[str, Any] = {}  # floats, ints and None (no line cap), as RuleParams takes them
    for name, options in RULE_SPACE.items():
        if name in _RANGES:
            values[name] = float(rng.uniform(*options))
        else:
            values[name] = options[int(rng.integers(len(options)))]
    return RuleParams(**values)


def tune_rule(
    config: Config | str,
    seeds: Sequence[int],
    num_accounts: int,
    n_trials: int = 40,
    progress: bool = True,
    holdout_seeds: Iterable[int] = (),
    search_seed: int = 0,
    months: int | None = None,
) -> RuleTuning:
    """Random search over :class:`RuleParams` on tuning ``seeds``, choosing under the cap.

    Trial 0 is the default ``RuleParams()``; the others are drawn from :data:`RULE_SPACE` with a generator
    seeded by ``search_seed``. Every trial runs on the same accounts and shocks.

    Args:
        config: preset name or ``Config``.
        seeds: tuning seeds.
        num_accounts: accounts per portfolio.
        n_trials: parameter sets tried, including the default.
        progress: tqdm progress bar.
        holdout_seeds: seeds that must not be used here; overlap raises ValueError.
        search_seed: seed of the random search.
        months: months per run (default ``env.horizon``).
    """
    config = resolve_config(config)
    seeds = _check_seeds(seeds, holdout_seeds)
    if not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    rng = np.random.default_rng(search_seed)
    trials = [RuleParams()] + [sample_rule_params(rng) for _ in range(n_trials - 1)]
    best, table = _search(trials, RuleBased, config, num_accounts, seeds, months, progress)
    return RuleTuning(trials[best], table)


def _search(
    trials: list[Any],
    make: Callable[[Any], Any],
    config: Config,
    num_accounts: int,
    seeds: list[int],
    months: int | None,
    progress: bool,
) -> tuple[int, pd.DataFrame]:
    """Index of the trial chosen under the cap and one row per trial (parameters and metrics)."""
    policies = {f"trial_{i}": make(p) for i, p in enumerate(trials)}
    summary = _summary(policies, config, num_accounts, seeds, months, progress)
    params = pd.DataFrame([dataclasses.asdict(p) for p in trials])
    table = pd.concat([pd.DataFrame({"trial": range(len(trials))}), params, summary[_TABLE_COLUMNS]], axis=1)
    best = select_under_cap(table)
    table["chosen"] = np.arange(len(table)) == best
    return best, table


# -- the privileged oracle (an upper bound, see agents.oracle) ---------------------------------------------
class OracleTuning(NamedTuple):
    """The chosen OracleParams and one row per trial (parameters and metrics)."""

    params: OracleParams
    table: pd.DataFrame


def tune_oracle(
    config: Config | str,
    seeds: Sequence[int],
    num_accounts: int,
    n_trials: int = 40,
    progress: bool = True,
    holdout_seeds: Iterable[int] = (),
    search_seed: int = 0,
    months: int | None = None,
) -> OracleTuning:
    """Random search over :class:`OracleParams` on tuning ``seeds``, choosing under the cap, as :func:`tune_rule`.

    The oracle gets the rule's budget (the same default ``n_trials``, seeds and accounts): trial 0 is the
    default ``OracleParams()``, the others are drawn from :data:`agents.oracle.ORACLE_SPACE` with a
    generator seeded by ``search_seed``. The evaluator binds each run's simulator to the oracle.
    """
    config = resolve_config(config)
    seeds = _check_seeds(seeds, holdout_seeds)
    if not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    rng = np.random.default_rng(search_seed)
    trials = [OracleParams()] + [sample_oracle_params(rng) for _ in range(n_trials - 1)]
    best, table = _search(trials, Oracle, config, num_accounts, seeds, months, progress)
    return OracleTuning(trials[best], table)
