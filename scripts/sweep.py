"""Sweep config keys: evaluate the chosen policies in every cell of a grid or a random sample.

Cells are written to <out>/<name>/cells/ as they finish and skipped when already there, so a killed
sweep resumes where it stopped: run the same command again. The tidy table of all cells is
<out>/<name>/sweep.csv, the figure sweep.png (a heatmap per metric and policy for two grid keys).

Policies: with --run, the run's tuned baselines and trained agents (its config is the base, its
evaluation seeds are used); without, static_hold, the untuned default rule (rule_untuned), random, and
best_static if --best-static X is given. --policies picks among them.

Backends: local processes (--workers N, default 1) or Ray tasks (--backend ray, needs pip install
'.[ray]'); --address joins an existing cluster (e.g. ray://head:10001 or auto), else a local Ray starts.

examples:
  python scripts/sweep.py --run results/demo --grid env.m3plus_cap=0.012,0.018,0.024 \\
      --grid default.job_loss_rate=0.004,0.008 --name cap_x_jobloss
  python scripts/sweep.py --preset jd --random product.apr_high=0.12:0.24 --samples 8 --workers 2
  python scripts/sweep.py --run results/demo --grid accounting.funding_rate=0.05,0.07,0.09 \\
      --backend ray --address auto
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agents.cli import (  # noqa: E402
    add_config_args,
    non_negative_int,
    overrides_from_args,
    positive_int,
    run_main,
)
from envs.config import load_config  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweep.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=None, metavar="RUN_DIR", help="run folder whose policies to sweep")
    add_config_args(parser, default_preset=None)
    cells = parser.add_argument_group("cells")
    cells.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...", help="a grid axis; repeatable")
    cells.add_argument(
        "--random", action="append", default=[], metavar="KEY=LOW:HIGH", help="a key drawn uniformly; repeatable"
    )
    cells.add_argument("--samples", type=positive_int, default=8, help="cells of a --random sweep (default: 8)")
    cells.add_argument("--sample-seed", type=non_negative_int, default=0, help="seed of the random draws")
    policies = parser.add_argument_group("policies")
    policies.add_argument("--policies", default=None, help="comma-separated policy names (default: all)")
    policies.add_argument("--best-static", type=float, default=None, metavar="X", help="best-static multiplier")
    budget = parser.add_argument_group("budget")
    budget.add_argument("--accounts", type=positive_int, default=1000, help="accounts per portfolio (default: 1000)")
    budget.add_argument("--eval-seeds", type=positive_int, default=None, help="evaluation seeds (default: run's, or 3)")
    budget.add_argument("--seed", type=non_negative_int, default=0, help="base seed (default: 0)")
    run = parser.add_argument_group("execution")
    run.add_argument("--workers", type=positive_int, default=1, help="local worker processes (default: 1)")
    run.add_argument("--backend", choices=("local", "ray"), default="local", help="local processes or Ray tasks")
    run.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out", type=Path, default=Path("results/sweeps"), help="parent folder (default: results/sweeps)"
    )
    output.add_argument("--name", default=None, help="sweep folder name (default: the swept keys)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.grid) == bool(args.random):
        parser.error("give --grid axes or --random ranges (one kind, not both)")
    if args.address is not None and args.backend != "ray":
        parser.error("--address needs --backend ray")

    from agents.run_policies import baseline_specs, check_run, evaluation_seeds, run_config, run_seeds, run_specs
    from agents.sweep import check_cells, grid_cells, parse_grid, parse_ranges, random_cells, run_sweep

    overrides = overrides_from_args(args) or None
    if args.run is not None:
        run = check_run(args.run)
        config = load_config(args.preset, overrides) if args.preset else run_config(run, overrides)
        specs = run_specs(run, args.seed)
        seeds = evaluation_seeds(run_seeds(run), args.eval_seeds)
    else:
        from agents.evaluation import split_seeds

        config = load_config(args.preset or "wechat", overrides)
        specs = baseline_specs(None, args.seed)
        specs["rule_untuned"] = {"kind": "rule", "params": {}}
        seeds = split_seeds(training=1, tuning=0, evaluation=args.eval_seeds or 3, start=args.seed).evaluation
    if args.best_static is not None:
        specs["best_static"] = {"kind": "best_static", "x": args.best_static}
    if args.policies is not None:
        wanted = [p.strip() for p in args.policies.split(",") if p.strip()]
        unknown = [p for p in wanted if p not in specs]
        if unknown:
            raise ValueError(f"--policies: unknown {unknown}; available: {list(specs)}")
        specs = {name: specs[name] for name in wanted}

    if args.grid:
        axes = parse_grid(args.grid)
        cells, keys = grid_cells(axes), list(axes)
    else:
        ranges = parse_ranges(args.random)
        cells, keys = random_cells(ranges, args.samples, args.sample_seed), list(ranges)
    check_cells(config, cells)  # a bad key or value: error before anything runs

    from agents.atomic_io import save_figure
    from agents.sweep_plots import plot_sweep

    out = args.out / (args.name or "__".join(k.replace(".", "-") for k in keys))
    print(f"sweep of {len(cells)} cells x {list(specs)} on seeds {list(seeds)} -> {out}", file=sys.stderr)
    table = run_sweep(
        config,
        cells,
        specs,
        args.accounts,
        seeds,
        out,
        workers=args.workers,
        backend=args.backend,
        address=args.address,
    )
    save_figure(out / "sweep.png", plot_sweep(table, keys, grid=bool(args.grid), title=f"{config.name}: sweep"))
    shown = table[[*keys, "policy", "per_user_revenue", "m3plus_rate", "meets_cap", "revenue_diff_vs_best_static"]]
    shown = shown.assign(m3plus_rate=100 * shown["m3plus_rate"]).rename(
        columns={
            "per_user_revenue": "revenue/user [CNY]",
            "m3plus_rate": "M3+ [%]",
            "meets_cap": "meets cap",
            "revenue_diff_vs_best_static": "vs best static [CNY]",
        }
    )
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nwritten to {out}/sweep.csv and sweep.png")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
