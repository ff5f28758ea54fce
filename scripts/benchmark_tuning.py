"""Time the rule's random search: every trial evaluated on its own (the evaluator) vs all in one batched
simulator per seed (agents.population), on the same trials, tuning seeds and accounts; one process.

  python scripts/benchmark_tuning.py --trials 240 --tune-seeds 6 --accounts 2000   # the headline's tuning
  python scripts/benchmark_tuning.py --trials 240 --before-trials 24               # time 'before' on 24, x10

The evaluator's cost is linear in the trials (one portfolio each), so ``--before-trials`` times it on the
first trials only and scales to ``--trials``; the two summaries of those trials must be equal, or it fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from agents.cli import positive_int, run_main
from agents.evaluation import evaluate
from agents.headline import Budget, study_seeds
from agents.policies import RuleBased, RuleParams
from agents.population import population_summary
from agents.tuning import sample_rule_params


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="wechat")
    parser.add_argument("--trials", type=positive_int, default=240, help="rule trials (default: 240)")
    parser.add_argument("--before-trials", type=positive_int, default=None, help="time the evaluator on these")
    parser.add_argument("--tune-seeds", type=positive_int, default=6)
    parser.add_argument("--accounts", type=positive_int, default=2000)
    parser.add_argument("--ppo-seeds", type=positive_int, default=5, help="PPO runs, for the seed labels (default: 5)")
    args = parser.parse_args(argv)
    before_trials = min(args.before_trials or args.trials, args.trials)
    # make headline's tuning seeds (its budget: 10 evaluation seeds, 5 PPO runs, first seed 0)
    budget = Budget(args.accounts, 10, args.tune_seeds, args.trials, None, args.ppo_seeds, 500_000, 1024, 0)
    seeds = study_seeds(budget)["tuning"]
    rng = np.random.default_rng(0)
    trials = [RuleParams()] + [sample_rule_params(rng) for _ in range(args.trials - 1)]
    policies = {f"trial_{i}": RuleBased(p) for i, p in enumerate(trials)}
    first = {name: policies[name] for name in list(policies)[:before_trials]}

    import envs.portfolio  # noqa: F401  # the evaluator's SB3 face: imported (torch, ~7 s) before any timing

    start = time.perf_counter()
    after = population_summary(policies, args.preset, args.accounts, seeds, progress=False)
    after_s = time.perf_counter() - start
    start = time.perf_counter()
    before = evaluate(first, args.preset, args.accounts, seeds, progress=False, reference=None).summary
    before_s = (time.perf_counter() - start) * args.trials / before_trials
    pd.testing.assert_frame_equal(before[after.columns], after.iloc[:before_trials], check_exact=True)

    scaled = "" if before_trials == args.trials else f" (timed on {before_trials} trials, scaled)"
    print(f"{args.trials} rule trials x {len(seeds)} tuning seeds x {args.accounts} accounts, {args.preset}:")
    print(f"  evaluator, one portfolio per trial: {before_s:8.1f} s{scaled}")
    print(f"  population, one simulator per seed: {after_s:8.1f} s")
    print(f"  speed-up: x{before_s / after_s:.1f}; the summaries of the {before_trials} trials timed are equal")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
