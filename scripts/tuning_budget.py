"""The baselines tuned with the agents' budget vs the headline's: best static, the rule and the oracle on
make headline's tuning seeds, with ``--trials`` random-search trials each (e.g. 20 and 240 = policy search's
20 generations x 12 candidates), one table row per preset, baseline and budget, and the time each took.

  python scripts/tuning_budget.py --trials 20,240 --tune-seeds 6 --accounts 2000   # make headline's budget

The trials of a smaller budget are the first trials of a larger one (the same search seed), so a larger
budget can only find a better candidate on these seeds; the question is by how much.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import pandas as pd

from agents.cli import name_list, positive_int, run_main
from agents.headline import Budget, study_seeds
from agents.tuning import tune_best_static, tune_oracle, tune_rule
from envs.config import available_presets, load_config

COLUMNS = ["preset", "baseline", "trials", "per_user_revenue", "m3plus_rate", "cap", "meets_cap", "seconds", "chosen"]


def _row(preset: str, baseline: str, trials: int, table: pd.DataFrame, seconds: float, chosen: str) -> dict:
    best = table[table["chosen"]].iloc[0]
    return {
        "preset": preset,
        "baseline": baseline,
        "trials": trials,
        "per_user_revenue": round(float(best["per_user_revenue"]), 2),
        "m3plus_rate": round(float(best["m3plus_rate"]), 5),
        "cap": float(best["cap"]),
        "meets_cap": bool(best["meets_cap"]),
        "seconds": round(seconds, 1),
        "chosen": chosen,
    }


def main(argv: Sequence[str] | None = None) -> int:
    presets = available_presets()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", type=name_list(presets), default=list(presets))
    parser.add_argument("--trials", default="20,240", help="comma-separated trial budgets (default: 20,240)")
    parser.add_argument("--tune-seeds", type=positive_int, default=6)
    parser.add_argument("--accounts", type=positive_int, default=2000)
    parser.add_argument("--out", default=None, help="also write the table to this CSV")
    args = parser.parse_args(argv)
    try:
        budgets = [positive_int(t) for t in args.trials.split(",")]
    except (ValueError, argparse.ArgumentTypeError):
        raise ValueError(f"--trials must be comma-separated positive integers, got {args.trials!r}") from None
    # make headline's tuning seeds (its budget: 10 evaluation seeds, 5 PPO runs, first seed 0)
    seeds = study_seeds(Budget(args.accounts, 10, args.tune_seeds, max(budgets), None, 5, 500_000, 1024, 0))
    tuning, holdout = seeds["tuning"], seeds["evaluation"]
    rows = []
    for preset in args.presets:
        config = load_config(preset)
        start = time.perf_counter()
        static = tune_best_static(config, tuning, args.accounts, progress=False, holdout_seeds=holdout)
        rows.append(_row(preset, "best_static", len(static.table), static.table, time.perf_counter() - start,
                         f"x{static.target:g}"))  # fmt: skip
        for trials in budgets:
            for name, tune in (("rule", tune_rule), ("oracle", tune_oracle)):
                start = time.perf_counter()
                result = tune(config, tuning, args.accounts, trials, False, holdout, 0)
                rows.append(_row(preset, name, trials, result.table, time.perf_counter() - start, str(result.params)))
                print(pd.DataFrame(rows[-1:])[COLUMNS[:-1]].to_string(index=False, header=False), flush=True)
    table = pd.DataFrame(rows, columns=COLUMNS)
    print(f"tuning seeds {tuning}, {args.accounts} accounts")
    print(table.drop(columns="chosen").to_string(index=False))
    print(table[["preset", "baseline", "trials", "chosen"]].to_string(index=False))
    if args.out:
        table.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
