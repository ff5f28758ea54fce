"""What if the world changed? A run's agents and baselines under its base config and a named scenario.

Both cases run on the same evaluation seeds (the run's own, from its seeds.json). The agents are shown as
trained on the base case; the baselines keep their base-case tuning unless --retune re-tunes the best
static multiplier and the rule under the scenario (on the run's tuning seeds). Uplift is against best
static and against the rule, with 95% intervals; when the reference earns less than zero it is shown as
a difference in CNY per user.

Scenarios are configs/scenarios/<name>.yaml (or a YAML path): an overlay of only the keys they change.

Output: <run>/whatif/<scenario>/ (or --out): whatif.csv (tidy, one row per policy and case), changes.csv,
whatif.png, config_base.yaml, config_scenario.yaml, seeds.json; the side-by-side table on stdout.

examples:
  python scripts/whatif.py --run results/demo --scenario recession
  python scripts/whatif.py --run results/demo --scenario rate_ceiling_4lpr --retune
  python scripts/whatif.py --run results/demo --scenario funding_shock --preset jd
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agents.cli import add_config_args, non_negative_int, overrides_from_args, positive_int, run_main  # noqa: E402
from envs.config import load_config  # noqa: E402
from envs.scenarios import available_scenarios, check_scenario, load_scenario  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whatif.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="run folder made by compare.py")
    parser.add_argument(
        "--scenario",
        required=True,
        help=f"scenario name ({', '.join(available_scenarios())}) or a scenario YAML file",
    )
    add_config_args(parser, default_preset=None)
    parser.add_argument(
        "--retune",
        action="store_true",
        help="re-tune best static and the rule under the scenario (agents are shown as trained)",
    )
    parser.add_argument("--tune-seeds", type=positive_int, default=4, help="tuning seeds with --retune (default: 4)")
    parser.add_argument("--rule-trials", type=positive_int, default=None, help="rule trials with --retune")
    budget = parser.add_argument_group("budget")
    budget.add_argument("--accounts", type=positive_int, default=2000, help="accounts per portfolio (default: 2000)")
    budget.add_argument(
        "--eval-seeds", type=positive_int, default=None, help="evaluation seeds (default: the run's own)"
    )
    budget.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random baseline (default: 0)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <run>/whatif/<scenario>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from agents.run_policies import check_run, evaluation_seeds, run_config, run_seeds, run_specs, tuning_seeds

    run = check_run(args.run)
    overrides = overrides_from_args(args) or None
    config = load_config(args.preset, overrides) if args.preset else run_config(run, overrides)
    scenario = load_scenario(args.scenario)
    check_scenario(scenario, config)  # a malformed scenario fails here, before any simulation
    specs = run_specs(run, args.seed)
    used = run_seeds(run)
    seeds = evaluation_seeds(used, args.eval_seeds)
    tune = tuning_seeds(used, args.tune_seeds, seeds) if args.retune else ()
    missing = [name for name in ("best_static", "rule") if name not in specs]
    if missing and not args.retune:
        print(
            f"note: {run} has no tuned {missing} (baselines.json); the table compares without them; "
            "--retune tunes them under the scenario",
            file=sys.stderr,
        )

    from agents.atomic_io import save_figure, write_csv, write_json, write_yaml
    from agents.whatif import format_changes, format_whatif, plot_whatif, run_whatif

    print(f"evaluating {list(specs)} under base and {scenario.name} on seeds {list(seeds)}", file=sys.stderr)
    result = run_whatif(
        config,
        scenario,
        specs,
        args.accounts,
        seeds,
        retune=args.retune,
        tune_seeds=tune,
        rule_trials=args.rule_trials,
        progress=not args.no_progress,
    )
    out = args.out or run / "whatif" / (scenario.name + ("-retuned" if args.retune else ""))
    write_csv(out / "whatif.csv", result.table)
    write_csv(out / "changes.csv", result.changes)
    write_yaml(out / "config_base.yaml", config.to_dict())
    write_yaml(out / "config_scenario.yaml", result.scenario_config.to_dict())
    write_json(out / "seeds.json", {"eval": list(seeds), "tune": list(tune)})
    title = f"{config.name}: base vs {scenario.name}"
    save_figure(out / "whatif.png", plot_whatif(result.table, title))

    print(f"\n{title} - {scenario.description}")
    print(f"{args.accounts} accounts x {len(seeds)} evaluation seeds; changed keys:")
    print(format_changes(result.changes))
    print()
    print(format_whatif(result.table))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
