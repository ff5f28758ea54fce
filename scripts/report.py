"""Who gains, who loses, and what the agent does, in rules: the segment and explainability report of a run.

For every policy of the run (tuned baselines, trained agents): revenue per user, M3+ rate, raise and cut
rates, average line and attrition by thin-file vs full-file, income band and risk band (the last two are
hidden traits, used for the analysis only); disparity ratios between segments (e.g. the thin- to
full-file cut rate) set against the rule's; and a distilled policy, a shallow decision tree fitted to the
agent's actions (to the rule's when the run has no agent), printed as rules with its fidelity on
held-out observations and the revenue and M3+ rate it earns when run as a policy.

Output: <run>/report/ (or --out): report.md, segments.csv, disparity.csv, summary.csv,
distilled_rules.txt, figures/segments.png.

examples:
  python scripts/report.py --run results/demo
  python scripts/report.py --run results/demo --depth 4 --accounts 4000 --eval-seeds 5
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agents.cli import positive_int, run_main  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="report.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="run folder made by compare.py")
    parser.add_argument("--depth", type=positive_int, default=3, help="depth of the distilled tree (default: 3)")
    parser.add_argument("--accounts", type=positive_int, default=2000, help="accounts per portfolio (default: 2000)")
    parser.add_argument("--eval-seeds", type=positive_int, default=None, help="evaluation seeds (default: the run's)")
    parser.add_argument(
        "--distill-seeds", type=positive_int, default=2, help="seeds the tree is fitted on (default: 2)"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <run>/report)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from agents.run_policies import check_run, evaluation_seeds, run_config, run_seeds, run_specs, tuning_seeds

    run = check_run(args.run)
    config = run_config(run)
    specs = run_specs(run)
    used = run_seeds(run)
    seeds = evaluation_seeds(used, args.eval_seeds)
    # past every seed the run used and the evaluation seeds: never trained, tuned or evaluated on
    distill_seeds = tuning_seeds({}, args.distill_seeds, [*seeds, *(s for v in used.values() for s in v)])

    from agents.report import build_report, write_report

    print(f"report of {[s for s in specs if s != 'random']} on seeds {list(seeds)}", file=sys.stderr)
    report = build_report(
        config, specs, args.accounts, seeds, distill_seeds, max_depth=args.depth, progress=not args.no_progress
    )
    context = {
        "run": str(run),
        "config": config.name,
        "accounts": args.accounts,
        "evaluation seeds": list(seeds),
        "distillation seeds": list(distill_seeds),
        "months": config.env.horizon,
        "M3+ cap": f"{config.env.m3plus_cap:.2%}",
    }
    path = write_report(report, args.out or run / "report", f"{config.name} ({run.name})", context)

    from agents.report import disparity_markdown, summary_markdown

    print(summary_markdown(report.summary, report.reference))
    print(f"\ndisparity ratios (policy's, then / {report.reference}'s):")
    print(disparity_markdown(report.disparity, report.reference))
    d = report.distillation
    print(
        f"\ndistilled policy {report.tree_name}: fidelity {d.fidelity:.1%} on {d.held_out:,} held-out observations "
        f"(most common action alone: {d.majority_fidelity:.1%})"
    )
    print(d.rules)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
