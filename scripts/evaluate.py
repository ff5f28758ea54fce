"""Evaluate trained agents and/or bank baselines on evaluation seeds; write a run folder, print the table.

Agents come from a run folder made by scripts/compare.py or scripts/train.py (--run RUN_DIR loads
RUN_DIR/agents/<algo>/). Without --preset the run's own config.yaml is used, so an agent is evaluated
on what it was trained on; --preset and --set evaluate it elsewhere (another preset, a forced recession).
Baselines: static_hold, best_static (multiplier from --best-static or the run's baselines.json),
rule (parameters from --rule-params FILE or the run's baselines.json; the untuned default rule otherwise,
reported as rule_untuned) and random. Uplift is measured against best_static when it is evaluated.
Evaluation seeds: with --run, the run's own (its seeds.json), extended past every seed it used if
--eval-seeds asks for more; otherwise the evaluation range that compare.py derives from --seed.

Output: results/<name>/ with config.yaml, seeds.json, metadata.json, summary.csv, metrics/*.csv and
figures/*.png; the comparison table on stdout.

examples:
  python scripts/evaluate.py --run results/demo
  python scripts/evaluate.py --run results/demo --set macro.forced_stress_start=0 --set macro.forced_stress_months=36
  python scripts/evaluate.py --preset jd --baselines static_hold,best_static --best-static 1.25 --eval-seeds 10
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agents.cli import add_budget_args, add_config_args, add_output_args, config_from_args, name_list, run_main  # noqa: E402
from envs.config import safe_load_yaml  # noqa: E402

ALGOS = ("ppo", "a2c", "dqn", "sac")
BASELINES = ("static_hold", "best_static", "rule", "random")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_args(parser, default_preset=None)
    policies = parser.add_argument_group("policies")
    policies.add_argument(
        "--run",
        type=Path,
        metavar="RUN_DIR",
        default=None,
        help="run folder with trained agents (agents/<algo>/policy.pt, vecnormalize.npz, policy.json) and, if "
        "tuned, baselines.json. Only data files are read (no pickle, not model.zip): a run folder received "
        "from someone else runs no code here",
    )
    policies.add_argument(
        "--algos",
        type=name_list(ALGOS),
        default=None,
        help="agents to load from --run (default: every agent there; an agent folder without its final "
        "policy is an error unless --algos leaves it out)",
    )
    policies.add_argument(
        "--baselines",
        type=name_list(BASELINES),
        default=list(BASELINES),
        help=f"baselines to evaluate, comma-separated (default: {','.join(BASELINES)})",
    )
    policies.add_argument(
        "--best-static",
        type=float,
        default=None,
        metavar="X",
        help="best-static line multiplier (default: from --run's baselines.json)",
    )
    policies.add_argument(
        "--rule-params",
        type=Path,
        default=None,
        metavar="FILE",
        help="JSON or YAML mapping of RuleParams fields (default: from --run's baselines.json)",
    )
    add_budget_args(parser, accounts=2000, eval_seeds=5)
    add_output_args(parser)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run folder --name once this evaluation finishes (until then the old one "
        "is kept whole; a finished old one is then kept as <name>.previous)",
    )
    return parser


def _read_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"--rule-params: file {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else safe_load_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"--rule-params: {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--rule-params: {path} must hold a mapping of RuleParams fields")
    return data


def _rule_params(data: dict[str, Any], source: str) -> Any:
    from dataclasses import fields

    from agents.policies import RuleParams

    allowed = [f.name for f in fields(RuleParams)]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(f"{source}: unknown rule parameters {unknown}; allowed: {allowed}")
    return RuleParams(**data)  # its own checks raise ValueError naming the bad value


def _oracle(data: Any, source: str) -> Any:
    from dataclasses import fields

    from agents.oracle import Oracle, OracleParams

    allowed = [f.name for f in fields(OracleParams)]
    if not isinstance(data, dict) or sorted(set(data) - set(allowed)):
        raise ValueError(f"{source}: 'oracle' must be a mapping of OracleParams fields {allowed}, got {data!r}")
    try:
        return Oracle(OracleParams(**data))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: oracle: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from agents.results import check_out_dir, check_run_name

    if args.name is not None:
        check_run_name(args.name)
    check_out_dir(args.out)
    if args.run is not None and not args.run.is_dir():
        raise FileNotFoundError(f"--run: run folder {args.run} not found")
    if args.preset is None:
        if args.run is None:
            parser.error("give --preset, or --run to use the run's config.yaml")
        args.preset = str(args.run / "config.yaml")
        if not Path(args.preset).is_file():
            raise FileNotFoundError(f"{args.preset} not found; pass --preset")
    if args.algos and args.run is None:
        parser.error("--algos needs --run RUN_DIR to load the agents from")
    config = config_from_args(args)

    from agents.evaluation import evaluate, split_seeds
    from agents.policies import BestStatic, RandomPolicy, RuleBased, StaticHold
    from agents.results import (
        RunFolder,
        collect_metadata,
        default_run_name,
        format_summary,
        read_baselines,
        read_seeds,
        write_evaluation,
    )

    tuned = read_baselines(args.run) if args.run is not None else {}
    policies: dict[str, Any] = {}
    for baseline in args.baselines:
        if baseline == "static_hold":
            policies["static_hold"] = StaticHold()
        elif baseline == "best_static":
            x = args.best_static if args.best_static is not None else tuned.get("best_static", {}).get("x")
            if x is None:
                raise ValueError(
                    "best_static needs its multiplier: pass --best-static X, or --run a folder "
                    "whose baselines.json has it (or drop it from --baselines)"
                )
            try:
                policies["best_static"] = BestStatic(x)
            except (TypeError, ValueError) as exc:
                source = "--best-static" if args.best_static is not None else f"{args.run}/baselines.json"
                raise ValueError(f"{source}: {exc}") from None
        elif baseline == "rule":
            if args.rule_params is not None:
                policies["rule"] = RuleBased(_rule_params(_read_mapping(args.rule_params), str(args.rule_params)))
            elif "rule" in tuned:
                policies["rule"] = RuleBased(_rule_params(tuned["rule"], f"{args.run}/baselines.json"))
            else:
                policies["rule_untuned"] = RuleBased()
        elif baseline == "random":
            policies["random"] = RandomPolicy(args.seed)
    if "oracle" in tuned:  # the run's privileged oracle (an upper bound), rebuilt from its tuned parameters
        policies["oracle"] = _oracle(tuned["oracle"], f"{args.run}/baselines.json")

    if args.run is not None:
        from agents.agent_files import check_fits, load_agent  # data files only: no SB3, no pickle

        agents_dir = args.run / "agents"
        present = sorted(p.name for p in agents_dir.iterdir() if p.is_dir()) if agents_dir.is_dir() else []
        algos = args.algos if args.algos is not None else [a for a in present if a in ALGOS]
        for algo in algos:  # an agent folder without its final policy is an error, never skipped
            try:
                policies[algo] = load_agent(args.run, algo)
                check_fits(policies[algo], config, f"--run {args.run}")
            except FileNotFoundError as exc:
                others = [a for a in algos if a != algo]
                raise FileNotFoundError(
                    f"{exc}; to evaluate without it pass --algos {','.join(others)}"
                    if others
                    else f"{exc}; to evaluate the baselines only, pass --algos with the agents to keep, or no --run"
                ) from None
    if not policies:
        raise ValueError("nothing to evaluate: no baselines chosen and no agents in --run")
    if args.run is not None and (args.run / "agents").is_dir():
        from agents.plots import read_progress

        read_progress(args.run / "agents")  # an unreadable progress.csv is named now, not after the evaluation

    # Evaluation seeds: the evaluation range of the split compare.py uses, so they never meet the training
    # or tuning seeds of a run made with the same --seed. With --run, the run's own evaluation seeds
    # (seeds.json), checked against its training and tuning seeds.
    try:
        seeds = split_seeds(training=1, tuning=0, evaluation=args.eval_seeds, start=args.seed).evaluation
    except ValueError as exc:
        raise ValueError(f"--seed {args.seed} with --eval-seeds {args.eval_seeds}: {exc}") from None
    used: dict[str, Any] = {}  # the seeds of the run the agents come from (recorded for provenance)
    recorded = read_seeds(args.run) if args.run is not None else None
    if recorded is not None:
        from agents.evaluation import check_disjoint

        used = recorded
        seeds = _after(seeds, used)
        check_disjoint(training=used.get("train", []), tuning=used.get("tune", []), evaluation=seeds)

    name = args.name or default_run_name(config.name, "evaluate")
    run = RunFolder.create(args.out, name, overwrite=args.overwrite, hint="pass --overwrite to replace it")
    with run.track(collect_metadata()):
        run.write_config(config)
        run.write_seeds(train=used.get("train", []), tune=used.get("tune", []), eval=seeds)
        print(f"evaluating {list(policies)} on seeds {list(seeds)}", file=sys.stderr)
        evaluation = evaluate(
            policies,
            config,
            args.accounts,
            seeds,
            progress=not args.no_progress,
            reference="best_static" if "best_static" in policies else None,
            rule="rule" if "rule" in policies else None,
            oracle="oracle" if "oracle" in policies else None,
        )
        write_evaluation(
            run,
            evaluation,
            config.env.m3plus_cap,
            title=config.name,
            agents_dir=args.run / "agents" if args.run is not None else None,
        )

    print(
        f"\n{config.name}: {args.accounts} accounts x {len(seeds)} evaluation seeds, {config.env.horizon} months; "
        f"M3+ cap {config.env.m3plus_cap:.2%}"
    )
    print(format_summary(evaluation.summary))
    print(f"\nwritten to {run.path}")
    return 0


def _after(seeds: Sequence[int], used: dict[str, Any]) -> tuple[int, ...]:
    """The run's own evaluation seeds (so its numbers are reproduced), extended past every seed the run
    used when more are asked for than it has."""
    run_eval = [int(s) for s in used.get("eval", [])]
    extra = len(seeds) - len(run_eval)
    if extra <= 0:
        return tuple(run_eval[: len(seeds)])
    start = max((int(s) for key in ("train", "tune", "eval") for s in used.get(key, [])), default=-1) + 1
    return (*run_eval, *range(start, start + extra))


if __name__ == "__main__":
    sys.exit(run_main(main))
