"""Train one learning agent on a preset's portfolio under the M3+ cap; write it to a run folder.

PPO (default), A2C and DQN choose among the seven line multipliers of CreditLine-v0; SAC moves the line
continuously (CreditLineContinuous-v0). Every account of the training portfolio is a parallel env.
The cap is handled during training by --constraint:
  pid    PID-Lagrangian: reward - lambda x cost, lambda raised while the M3+ rate exceeds the cap
         (Stooke, Achiam & Abbeel 2020 gains; see agents/lagrangian.py)
  fixed  the same penalty with a constant lambda (constraint.fixed_lambda of the agent config)
  none   plain reward, the cap ignored
Hyperparameters and the default budget come from configs/agents/<algo>.yaml; --agent-set changes one
(hyperparameters.learning_rate=0.0001, or a bare field name such as n_steps=64).

Output: <out>/<name>/ with config.yaml, seeds.json, metadata.json and agents/<algo>/ (policy.pt,
vecnormalize.npz, policy.json: the agent as data, safe to share; model.zip: the SB3 model, which runs code
when loaded; constraint.json, checkpoints/, progress.csv and TensorBoard events). Evaluate it with
scripts/evaluate.py --run <out>/<name> (reads the data files only); watch it with
tensorboard --logdir <out>/<name>/agents. --resume loads SB3 zips: only for folders you trust.

examples:
  python scripts/train.py --preset wechat --name wechat_ppo                  # ~8 min on 2 CPU cores
  python scripts/train.py --preset douyin --algo a2c --timesteps 2000000 --constraint fixed
  python scripts/train.py --preset wechat --set env.horizon=24 --agent-set ent_coef=0.0 --seed 1001
  python scripts/train.py --name wechat_ppo --resume --timesteps 8000000     # continue to 8M steps
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agents.cli import (  # noqa: E402
    account_count,
    add_config_args,
    add_output_args,
    config_from_args,
    positive_int,
    run_main,
    seed_label,
)
from envs.config import ConfigError, load_config, parse_override  # noqa: E402

ALGOS = ("ppo", "a2c", "dqn", "sac")
CONSTRAINTS = ("pid", "fixed", "none")
DEFAULT_SEED = 1000  # training seeds from 1000 up: far from the evaluation seeds (0, 1, 2, ...)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_args(parser)
    agent = parser.add_argument_group("agent")
    agent.add_argument(
        "--algo",
        type=str.lower,
        choices=ALGOS,
        default="ppo",
        help=f"learning algorithm: {', '.join(ALGOS)} (default: ppo)",
    )
    agent.add_argument(
        "--constraint",
        choices=CONSTRAINTS,
        default="pid",
        help="how training handles the M3+ cap (default: pid, see above)",
    )
    agent.add_argument(
        "--timesteps",
        type=positive_int,
        default=None,
        help="training budget [account-months], counted from 0 also with --resume "
        "(default: training.total_timesteps of configs/agents/<algo>.yaml)",
    )
    agent.add_argument(
        "--accounts",
        type=account_count,
        default=None,
        help="accounts in the training portfolio = parallel envs (default: training.num_accounts)",
    )
    agent.add_argument(
        "--seed",
        type=seed_label,
        default=DEFAULT_SEED,
        help=f"training seed: accounts, macro path and network initialisation; keep it apart "
        f"from evaluation seeds (default: {DEFAULT_SEED})",
    )
    agent.add_argument(
        "--agent-set",
        dest="agent_overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override an agent config value, e.g. --agent-set hyperparameters.gamma=0.99 or "
        "--agent-set n_steps=64; repeatable; the value is read as YAML",
    )
    agent.add_argument(
        "--resume",
        action="store_true",
        help="continue the run folder --name from its last checkpoint (step count, observation "
        "statistics and lambda restored; its own config is used). Resuming loads the checkpoint's SB3 "
        "model zip, which unpickles code: resume only run folders you made or trust",
    )
    add_output_args(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    agent_overrides = dict(parse_override(item) for item in args.agent_overrides)
    from agents.results import check_out_dir, check_run_name, default_run_name, run_status

    check_out_dir(args.out)
    if args.name is not None:
        check_run_name(args.name)
    if args.resume:
        if args.name is None:
            raise ValueError("--resume needs the --name of the run folder to continue")
        if args.overrides or agent_overrides:
            raise ConfigError(
                "--resume continues a run with its saved configs; --set and --agent-set cannot change them"
            )
        if not (args.out / args.name).is_dir():
            raise FileNotFoundError(f"--resume: run folder {args.out / args.name} not found")
        if run_status(args.out / args.name) == "running":
            raise FileExistsError(f"--resume: {args.out / args.name} is being written by a running process")
        config = load_config(args.out / args.name / "config.yaml")
    else:
        config = config_from_args(args)
    name = args.name or default_run_name(config.name, args.algo, f"s{args.seed}")

    # Heavy imports (torch, SB3) only once the input is known to be good.
    from agents.agent_config import load_agent_config
    from agents.results import RunFolder, collect_metadata, read_metadata
    from agents.training import check_resumable, check_trainable, train

    # Every check before the run folder is created or its records touched: a rejected command writes nothing.
    if args.resume:
        check_resumable(args.out / name, args.algo, args.constraint, args.seed, args.accounts)
    else:
        agent_config = load_agent_config(args.algo, config.name, agent_overrides)
        check_trainable(agent_config, config, args.constraint, args.accounts)
    previous = read_metadata(args.out / name) if args.resume else None
    run = RunFolder.create(args.out, name, exist_ok=args.resume, hint="pass --resume to continue it")
    metadata = {**collect_metadata(), "resumed": bool(args.resume)}
    if previous is not None:
        metadata["resumed_from"] = previous  # the earlier record, kept whatever this attempt ends as
    with run.track(metadata):
        if not args.resume:
            run.write_config(config)
            run.write_seeds(train=[args.seed])
        print(
            f"training {args.algo} ({args.constraint} constraint) on {config.name} -> {run.agents_dir / args.algo}",
            file=sys.stderr,
        )
        started = time.perf_counter()
        agent = train(
            args.algo,
            config,
            run.path,
            total_timesteps=args.timesteps,
            seed=args.seed,
            num_accounts=args.accounts,
            agent_overrides=agent_overrides or None,
            constraint=args.constraint,
            resume=args.resume,
            progress=not args.no_progress,
        )
        seconds = time.perf_counter() - started
    print(
        f"{agent.model.num_timesteps:,} timesteps in {seconds / 60:.1f} min ({seconds:.0f} s); "
        f"written to {run.agents_dir / args.algo}"
    )
    print(f"evaluate: python scripts/evaluate.py --run {run.path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
