"""Does learning to manage credit lines beat what a bank does today, by how much, at what risk?

The whole job for one preset, written to results/<name>/:

  1. train the agents (default: PPO under the PID-Lagrangian M3+ constraint) on training seeds,
     or load them from an earlier run (--load RUN_DIR), or skip them (--no-train);
  2. tune the baselines on tuning seeds: the best static line multiplier and the "low and grow" rule,
     each under the preset's M3+ cap;
  3. evaluate every policy (static hold, best static, rule, random, agents) on evaluation seeds, with the
     same accounts and macro shocks for all (common random numbers);
  4. write config.yaml, seeds.json, metadata.json, baselines.json, summary.csv, metrics/*.csv and
     figures/{monthly,frontier,training}.png, and print the comparison table.

Training, tuning and evaluation seeds are disjoint ranges counted from --seed.

examples:
  python scripts/compare.py --preset wechat --name demo
  python scripts/compare.py --preset douyin --algos ppo,a2c --timesteps 2000000 --eval-seeds 10
  python scripts/compare.py --preset wechat --set macro.forced_stress_start=12 --set macro.forced_stress_months=12 \\
      --load results/demo --name demo_stress          # the demo's agents under a forced recession
  python scripts/compare.py --preset wechat --no-train --tune-seeds 2 --eval-seeds 3   # baselines only
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agents.cli import (  # noqa: E402
    account_count,
    add_budget_args,
    add_config_args,
    add_output_args,
    config_from_args,
    name_list,
    positive_int,
    run_main,
)
from envs.config import parse_override  # noqa: E402

ALGOS = ("ppo", "a2c", "dqn", "sac")
CONSTRAINTS = ("pid", "fixed", "none")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compare.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_args(parser)
    agents = parser.add_argument_group("agents")
    agents.add_argument(
        "--algos",
        type=name_list(ALGOS),
        default=["ppo"],
        help=f"comma-separated algorithms to train, from {', '.join(ALGOS)} (default: ppo; "
        "sac acts on the continuous-line variant)",
    )
    agents.add_argument(
        "--timesteps",
        type=positive_int,
        default=None,
        help="training budget per algorithm [account-months] (default: configs/agents/<algo>.yaml)",
    )
    agents.add_argument(
        "--train-accounts",
        type=account_count,
        default=None,
        help="accounts (parallel envs) during training (default: configs/agents/<algo>.yaml)",
    )
    agents.add_argument(
        "--agent-set",
        dest="agent_overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override an agent setting of configs/agents/<algo>.yaml, e.g. --agent-set "
        "hyperparameters.learning_rate=0.0001 (every algorithm) or --agent-set "
        "ppo.hyperparameters.batch_size=512 (one); repeatable",
    )
    agents.add_argument(
        "--constraint",
        choices=CONSTRAINTS,
        default="pid",
        help="how training handles the M3+ cap: PID-Lagrangian multiplier, a fixed penalty, or none (default: pid)",
    )
    agents.add_argument(
        "--risk-policy",
        action="store_true",
        help="also build the risk-model line policy (agents.risk_policy): a scorecard fitted on histories of "
        "the training seeds, its thresholds tuned on the tuning seeds with the rule's trials; saved as JSON in "
        "agents/risk_policy/policy.json. Not with --load",
    )
    source = agents.add_mutually_exclusive_group()
    source.add_argument(
        "--load",
        type=Path,
        metavar="RUN_DIR",
        default=None,
        help="load trained agents from RUN_DIR/agents/<algo>/ instead of training; only their data files are "
        "read (policy.pt, vecnormalize.npz, policy.json; no pickle), so RUN_DIR may come from someone else",
    )
    source.add_argument("--no-train", action="store_true", help="compare the baselines only")
    source.add_argument(
        "--resume",
        action="store_true",
        help="continue training in an existing run folder --name from its last checkpoint. This loads the "
        "checkpoint's SB3 model zip, which unpickles code: resume only run folders you made or trust",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run folder --name. The new run is written to <name>.partial and moved "
        "into place only when it finishes, so the old run stays complete until then; the old run is then "
        "kept as <name>.previous (replacing an older one) if it had finished, deleted if it had not. The run "
        "given to --load is never replaced. Nothing outside --out is moved or deleted",
    )
    baselines = parser.add_argument_group("baseline tuning")
    # Seeds carry the macro path, the largest source of spread in the M3+ rate: tuning against the cap on
    # a few seeds picks whichever multiplier their macro luck allows, so the defaults use several.
    baselines.add_argument(
        "--tune-seeds",
        type=positive_int,
        default=8,
        help="number of tuning seeds for the best static multiplier and the rule (default: 8)",
    )
    baselines.add_argument(
        "--rule-trials",
        type=positive_int,
        default=None,
        help="rule parameter sets tried (default: agents.tuning's default)",
    )
    add_budget_args(parser, accounts=4000, eval_seeds=10)
    add_output_args(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)  # bad preset / --set: ConfigError before anything heavy is imported
    name = _checked_target(args, config)  # the run name and where it goes, before anything else

    # The library, imported only once the input is known to be good (torch takes seconds to import).
    from agents.evaluation import evaluate, split_seeds
    from agents.oracle import Oracle
    from agents.policies import BestStatic, RandomPolicy, RuleBased, StaticHold
    from agents.results import (
        RunFolder,
        collect_metadata,
        format_summary,
        write_baselines,
        write_evaluation,
    )
    from agents.tuning import tune_best_static, tune_oracle, tune_rule

    progress = not args.no_progress
    train_algos = [] if args.no_train or args.load is not None else args.algos
    # PPO-style agents train on sub-books with their own macro paths (training.sub_books of them, each on its
    # own training seed), so the run needs that many training seeds.
    if train_algos:
        from agents.agent_config import load_agent_config as _agent_config

        sub_books = max(_agent_config(algo, config.name).training.sub_books for algo in train_algos)
    else:
        sub_books = 1
    training_count = sub_books
    if args.risk_policy:
        from agents.risk_scorecard import load_risk_policy_config

        risk_settings = load_risk_policy_config(config.name)
        training_count = max(sub_books, risk_settings.training_seeds)
    try:
        seeds = split_seeds(
            training=training_count, tuning=args.tune_seeds, evaluation=args.eval_seeds, start=args.seed
        )
    except ValueError as exc:
        raise ValueError(f"--seed {args.seed} with --tune-seeds and --eval-seeds: {exc}") from None

    # Every check on the input before the run folder exists: a rejected command writes nothing.
    agents, train_seeds = {}, seeds.training if train_algos or args.risk_policy else ()
    if args.load is not None:
        train_seeds = _loaded_training_seeds(args.load, seeds)
        from agents.agent_files import check_fits, load_agent  # data files only: no SB3, no pickle

        agents = {algo: load_agent(args.load, algo) for algo in args.algos}
        for agent in agents.values():
            check_fits(agent, config, f"--load {args.load}")
    agent_overrides = _agent_overrides(args.agent_overrides, train_algos)
    if train_algos:
        from agents.agent_config import load_agent_config
        from agents.training import check_resumable, check_trainable, load_agent, train  # torch, SB3: agents only

        for algo in train_algos:
            if args.resume:  # a resumed run keeps its saved agent config: overrides may only repeat it
                check_resumable(args.out / name, algo, args.constraint, seeds.training[0], args.train_accounts)
                agent_overrides[algo] = _same_as_saved(args.out / name, algo, agent_overrides[algo])
            else:
                agent_config = load_agent_config(algo, config.name, agent_overrides[algo] or None)
                check_trainable(agent_config, config, args.constraint, args.train_accounts)
    resumed_from = _check_resumable(args.out / name, config) if args.resume else None

    run = RunFolder.create(
        args.out,
        name,
        exist_ok=args.resume,
        overwrite=args.overwrite,
        hint="pass --overwrite to replace it (kept until the new run finishes), or --resume to continue it",
    )
    metadata = collect_metadata()
    if args.resume:
        metadata["resumed_from"] = resumed_from
    with run.track(metadata):
        run.write_config(config)
        run.write_seeds(train=train_seeds, tune=seeds.tuning, eval=seeds.evaluation)

        for algo in train_algos:
            print(f"training {algo} ({args.constraint} constraint) -> {run.agents_dir / algo}", file=sys.stderr)
            kwargs = {} if args.timesteps is None else {"total_timesteps": args.timesteps}
            train(
                algo,
                config,
                run.path,
                seed=seeds.training[0],
                num_accounts=args.train_accounts,
                agent_overrides=agent_overrides[algo] or None,
                constraint=args.constraint,
                resume=args.resume,
                progress=progress,
                # several macro paths per rollout, and the checkpoint kept is the best under the cap on the
                # tuning seeds (agents.multibook, agents.model_selection)
                book_seeds=list(seeds.training) if sub_books > 1 else None,
                tuning_seeds=list(seeds.tuning),
                holdout_seeds=list(seeds.evaluation),
                **kwargs,
            )
            agents[algo] = load_agent(run.path, algo)  # what was saved, normalisation included

        print(f"tuning baselines on seeds {list(seeds.tuning)}", file=sys.stderr)
        x, static_table = tune_best_static(
            config, seeds.tuning, args.accounts, progress=progress, holdout_seeds=seeds.evaluation
        )
        rule_kwargs = {} if args.rule_trials is None else {"n_trials": args.rule_trials}
        rule_params, rule_table = tune_rule(
            config,
            seeds.tuning,
            args.accounts,
            progress=progress,
            holdout_seeds=seeds.evaluation,
            search_seed=args.seed,
            **rule_kwargs,
        )
        # The privileged oracle (an upper bound, not deployable) gets the rule's tuning budget.
        oracle = tune_oracle(
            config,
            seeds.tuning,
            args.accounts,
            progress=progress,
            holdout_seeds=seeds.evaluation,
            search_seed=args.seed,
            **rule_kwargs,
        )
        write_baselines(run, x, rule_params, oracle.params)
        run.write_metrics("tuning_best_static", static_table)
        run.write_metrics("tuning_rule", rule_table)
        run.write_metrics("tuning_oracle", oracle.table)

        risk_policy: dict[str, Any] = {}  # the scorecard policy (not an SB3 agent: no training curve)
        if args.risk_policy:
            from agents.atomic_io import write_json
            from agents.risk_tuning import train_risk_policy

            print(f"risk policy: histories of seeds {list(seeds.training)}", file=sys.stderr)
            risk = train_risk_policy(
                config,
                seeds.training[: risk_settings.training_seeds],
                seeds.tuning,
                args.accounts,
                holdout_seeds=seeds.evaluation,
                settings=risk_settings,
                search_seed=args.seed,
                progress=progress,
                **rule_kwargs,
            )
            write_json(
                run.agents_dir / "risk_policy" / "policy.json",
                {**risk.policy.to_dict(), "holdout_auc": risk.holdout_auc, "uptake_auc": risk.uptake_auc},
            )
            run.write_metrics("tuning_risk_policy", risk.tuning)
            risk_policy["risk_policy"] = risk.policy

        policies: dict[str, Any] = {
            "static_hold": StaticHold(),
            "best_static": BestStatic(x),
            "rule": RuleBased(rule_params),
            "random": RandomPolicy(args.seed),
            "oracle": Oracle(oracle.params),
            **agents,
            **risk_policy,
        }
        print(f"evaluating {len(policies)} policies on seeds {list(seeds.evaluation)}", file=sys.stderr)
        evaluation = evaluate(
            policies, config, args.accounts, seeds.evaluation, progress=progress, rule="rule", oracle="oracle"
        )
        agents_dir = args.load / "agents" if args.load is not None else run.agents_dir
        write_evaluation(
            run,
            evaluation,
            config.env.m3plus_cap,
            title=config.name,
            static_table=static_table,
            agents_dir=agents_dir if agents else None,
        )

    print(
        f"\n{config.name}: {args.accounts} accounts x {len(seeds.evaluation)} evaluation seeds, "
        f"{config.env.horizon} months; best static x{x:g}; M3+ cap {config.env.m3plus_cap:.2%}"
    )
    print(format_summary(evaluation.summary))
    print(f"\nwritten to {run.path}")
    return 0


def _checked_target(args: argparse.Namespace, config) -> str:
    """The run name, once the name, --out and how they meet --load, --resume and --overwrite are valid."""
    from agents.results import check_out_dir, check_run_name, default_run_name, run_status

    if args.resume and args.name is None:
        raise ValueError("--resume needs the --name of the run folder to continue")
    if args.resume and args.overwrite:
        raise ValueError("--resume continues a run and --overwrite replaces it: choose one")
    if args.risk_policy and args.load is not None:
        raise ValueError(
            "--risk-policy builds a new risk policy on this run's training seeds; it cannot be combined with --load"
        )
    if (args.no_train or args.load is not None) and args.agent_overrides:
        raise ValueError(
            f"--agent-set {args.agent_overrides[0]}: no agent is trained with "
            f"{'--no-train' if args.no_train else '--load'}, so it would have no effect"
        )
    name = check_run_name(args.name if args.name is not None else default_run_name(config.name, "compare"))
    out = check_out_dir(args.out)
    if args.resume and not (out / name).is_dir():
        raise FileNotFoundError(f"--resume: run folder {out / name} not found")
    if args.resume and run_status(out / name) == "running":
        raise FileExistsError(f"--resume: {out / name} is being written by a running process")
    if args.load is not None:
        if not args.load.is_dir():
            raise FileNotFoundError(f"--load: run folder {args.load} not found")
        if (out / name).exists() and (out / name).resolve() == args.load.resolve():
            raise ValueError(
                f"--load {args.load} and --name {name}: the run being loaded cannot be replaced by this one; "
                "choose another --name"
            )
    return name


def _agent_overrides(items: Sequence[str], algos: Sequence[str]) -> dict[str, dict]:
    """``--agent-set`` items per algorithm: ``<algo>.key=value`` for one, ``key=value`` for all."""
    per_algo: dict[str, dict] = {algo: {} for algo in algos}
    for item in items:
        key, value = parse_override(item)
        head, _, rest = key.partition(".")
        if head in ALGOS:
            if head in per_algo:  # a setting for an algorithm not trained this time is ignored
                per_algo[head][rest] = value
        else:
            for overrides in per_algo.values():
                overrides[key] = value
    return per_algo


def _same_as_saved(run_dir: Path, algo: str, overrides: dict) -> dict:
    """``{}`` if ``--agent-set`` only repeats the saved agent config of a resumed run; an error naming what differs."""
    from agents.agent_config import load_agent_config
    from agents.training import agent_paths

    if not overrides:
        return {}
    saved_file = agent_paths(run_dir, algo).folder / "agent_config.yaml"
    saved = load_agent_config(algo, path=saved_file)
    changed = _flatten(load_agent_config(algo, path=saved_file, overrides=overrides).to_dict())
    before = _flatten(saved.to_dict())
    differing = sorted(k for k in changed if changed[k] != before.get(k))
    if differing:
        raise ValueError(
            f"--resume keeps the saved agent config of {algo}; --agent-set would change {differing} "
            f"(saved in {saved_file})"
        )
    return {}


def _check_resumable(run_dir: Path, config) -> dict | None:
    """The metadata of the run being resumed; an error if its env config differs from this one."""
    from agents.results import read_metadata
    from envs.config import read_yaml

    saved = run_dir / "config.yaml"
    if saved.is_file():
        before = _flatten(read_yaml(saved))
        now = _flatten(config.to_dict())
        changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        if changed:
            raise ValueError(
                f"cannot resume {run_dir} with another env config; differing keys: {changed[:10]} "
                f"(resume with the run's own settings: --preset {saved})"
            )
    return read_metadata(run_dir)


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _loaded_training_seeds(run_dir: Path, seeds) -> tuple[int, ...]:
    """The training seeds recorded by the run agents are loaded from, checked against this run's seeds."""
    from agents.evaluation import check_disjoint
    from agents.results import read_seeds

    recorded = read_seeds(run_dir)
    if recorded is None:
        print(
            f"warning: {run_dir / 'seeds.json'} not found; cannot check that the loaded agents never trained on "
            "the evaluation seeds",
            file=sys.stderr,
        )
        return ()
    trained = tuple(recorded["train"])
    check_disjoint(training=trained, tuning=seeds.tuning, evaluation=seeds.evaluation)
    return trained


if __name__ == "__main__":
    sys.exit(run_main(main))
