"""The headline study: can a learned credit-line policy beat the bank's tuned rules under the M3+ cap?

On every preset (or those of --presets), in --out/<preset>/:

  1. tune the baselines on the tuning seeds, under the cap, with one budget: the best static line
     multiplier, the "low and grow" rule, and the oracle, an UPPER BOUND that sees the hidden state
     (true default hazard, credit need, employment) and is not a deployable policy;
  2. train the policy-search agent (CMA-ES over a linear score on the observations) on training seeds,
     selected on the tuning seeds;
  3. train PPO-Lagrangian --ppo-seeds times, each run on its own training seeds (8 sub-books with their
     own macro paths and randomised macro and product parameters), each keeping its best checkpoint
     under the cap on the tuning seeds;
  4. evaluate everything on evaluation seeds no agent or baseline has seen, and write
     --out/summary.csv (preset x policy: revenue per user with interval, M3+ overall and by regime,
     meets cap, uplift vs best static and vs the rule with paired intervals, oracle share, attrition,
     average line) and --out/uplift.png.

Resumable: every step's result is written atomically and skipped when present, so running the same
command again continues an interrupted study (a half-trained PPO run is trained again). Changing the
budget needs another --out. Training, tuning and evaluation seeds are disjoint ranges from --seed.

Time (2 cores, measured with the defaults below, other jobs on the machine): see the README's headline
section; the short check
  python scripts/headline.py --presets wechat --ppo-seeds 2 --ppo-timesteps 200000 --ps-generations 10 \\
      --trials 10 --tune-seeds 4 --eval-seeds 5 --accounts 2000 --out results/headline_short
takes a few minutes.

examples:
  python scripts/headline.py                                  # every preset, the default budget
  python scripts/headline.py --presets wechat,douyin --ppo-seeds 5 --ppo-timesteps 2000000
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agents.cli import name_list, non_negative_int, positive_int, run_main  # noqa: E402
from envs.config import available_presets  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headline.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    presets = available_presets()
    parser.add_argument(
        "--presets",
        type=name_list(presets),
        default=list(presets),
        help=f"comma-separated presets (default: all, {','.join(presets)})",
    )
    budget = parser.add_argument_group("budget")
    budget.add_argument("--accounts", type=positive_int, default=4000, help="accounts per portfolio (default: 4000)")
    budget.add_argument("--eval-seeds", type=positive_int, default=10, help="evaluation seeds (default: 10)")
    budget.add_argument("--tune-seeds", type=positive_int, default=8, help="tuning seeds (default: 8)")
    budget.add_argument(
        "--trials", type=positive_int, default=40, help="random-search trials for the rule and the oracle (default: 40)"
    )
    budget.add_argument(
        "--ps-generations",
        type=positive_int,
        default=None,
        help="policy-search generations (default: configs/agents/policy_search.yaml)",
    )
    budget.add_argument(
        "--ppo-seeds", type=non_negative_int, default=5, help="independent PPO runs, 0 for none (default: 5)"
    )
    budget.add_argument(
        "--ppo-timesteps", type=positive_int, default=1_000_000, help="[account-months] per PPO run (default: 1000000)"
    )
    budget.add_argument(
        "--ppo-accounts",
        type=positive_int,
        default=1024,
        help="parallel accounts per PPO run, split over 8 sub-books (a multiple of 8; default: 1024)",
    )
    budget.add_argument("--seed", type=non_negative_int, default=0, help="first seed label (default: 0)")
    parser.add_argument(
        "--out", type=Path, default=Path("results/headline"), help="output folder (default: results/headline)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (e.g. in CI logs)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.ppo_accounts % 8:
        raise ValueError(f"--ppo-accounts must be a multiple of 8 (the sub-books), got {args.ppo_accounts}")

    from tqdm.auto import tqdm

    from agents.headline import COLUMNS, Budget, run_preset, write_headline

    budget = Budget(
        args.accounts,
        args.eval_seeds,
        args.tune_seeds,
        args.trials,
        args.ps_generations,
        args.ppo_seeds,
        args.ppo_timesteps,
        args.ppo_accounts,
        args.seed,
    )
    tables = [
        run_preset(preset, args.out, budget, progress=not args.no_progress)
        for preset in tqdm(args.presets, desc="presets", disable=args.no_progress)
    ]
    table = write_headline(tables, args.out)
    shown = table[~table["policy"].str.startswith("ppo_seed_")][COLUMNS]
    print(_format(shown))
    print(f"\nwritten to {args.out / 'summary.csv'} and {args.out / 'uplift.png'}")
    return 0


def _format(table) -> str:
    """The headline columns as a Markdown table: money in CNY, rates and uplifts in percent."""
    pct = lambda v: "" if v != v else f"{100 * v:+.1f}%"  # noqa: E731
    rate = lambda v: "" if v != v else f"{100 * v:.2f}%"  # noqa: E731
    interval = lambda lo, hi: "" if lo != lo else f"[{100 * lo:+.1f}, {100 * hi:+.1f}]"  # noqa: E731
    rows = []
    for r in table.itertuples(index=False):
        rows.append(
            [
                r.preset,
                r.policy,
                f"{r.per_user_revenue:.1f} [{r.per_user_revenue_ci_low:.0f}, {r.per_user_revenue_ci_high:.0f}]",
                rate(r.m3plus_rate),
                f"{rate(r.m3plus_rate_stress)} / {rate(r.m3plus_rate_normal)}",
                "yes" if r.meets_cap else "NO",
                f"{pct(r.uplift_vs_best_static)} {interval(r.uplift_ci_low, r.uplift_ci_high)}",
                f"{pct(r.uplift_vs_rule)} {interval(r.uplift_vs_rule_ci_low, r.uplift_vs_rule_ci_high)}",
                "" if r.oracle_share != r.oracle_share else f"{r.oracle_share:.2f}",
                rate(r.attrition_rate),
                f"{r.average_line:,.0f}",
            ]
        )
    header = [
        "preset",
        "policy",
        "revenue/user [CNY] (95% CI)",
        "M3+",
        "M3+ stress / normal",
        "meets cap",
        "uplift vs best static",
        "uplift vs rule",
        "oracle share",
        "attrition /yr",
        "avg line [CNY]",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_main(main))
