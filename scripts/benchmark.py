"""Measure simulator speed and memory; print account-months per second and the batched / per-account ratio.

Targets (issue 2): ``make_portfolio`` at 100k accounts runs at least 10 million account-months per second on
one core, at least 100x the per-account path (``DummyVecEnv`` over single ``CreditLine-v0`` envs); one
million accounts fit in under 1 GB. Both paths run in the same process, one after the other, so their
ratio is meaningful on a shared machine; CPU time (this process only) is shown beside wall time because
wall time also counts time the process waited for a core. Each figure is the best of ``--repeats`` runs
(as ``timeit`` advises: slower runs measure other tenants of the machine, not the code).

Trained agents (issue 9: a trained agent on 1M accounts x 36 months in at most 30 s on 2 cores): the PPO
(``--agent``) and the risk-model policy (``--risk-policy``), each evaluated by ``agents.evaluation.evaluate``
on ``--agent-accounts`` accounts over the horizon and the run-off, beside holding every line (the simulator
and the evaluator alone); one run each, wall time.

    python scripts/benchmark.py
    python scripts/benchmark.py --agent results/demo --risk-policy results/headline/wechat
    python scripts/benchmark.py --accounts 100000 --steps 50 --write results/benchmark.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import gymnasium as gym  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402

import envs  # noqa: E402
from envs.config import ConfigError  # noqa: E402


def _timed_steps(
    venv, steps: int, num_envs: int, seed: int, hold: bool = False, read_infos: bool = False
) -> tuple[float, float]:
    """Wall and CPU seconds for ``steps`` steps with random line actions (drawn before timing), or holding.

    Random actions are the harsh case: random cuts make about 5% of accounts close each month, and every
    replacement costs an origination; a policy that holds churns about 1.5% a month. ``read_infos`` reads
    the step's infos as an SB3 algorithm does every step, which builds the ended accounts' info dicts
    (``make_portfolio`` builds them on first read; ``DummyVecEnv`` always has).
    """
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, len(envs.LIMIT_MULTIPLIERS), size=(steps, num_envs))
    if hold:
        actions[:] = envs.HOLD_ACTION
    venv.reset()
    venv.step(actions[0])  # warm-up: first-touch allocations
    wall, cpu = time.perf_counter(), time.process_time()
    for t in range(1, steps):
        infos = venv.step(actions[t])[3]
        if read_infos:
            infos[0].get("terminal_observation")
    return time.perf_counter() - wall, time.process_time() - cpu


def batched(
    preset: str, accounts: int, steps: int, hold: bool = False, read_infos: bool = False
) -> tuple[float, float]:
    venv = envs.make_portfolio(preset, accounts, seed=0)
    wall, cpu = _timed_steps(venv, steps, accounts, 1, hold, read_infos)
    return accounts * (steps - 1) / wall, accounts * (steps - 1) / cpu


def core_only(preset: str, accounts: int, steps: int) -> float:
    """CPU account-months/s of the monthly step alone (Simulator, every line held, no VecEnv, no renewal)."""
    sim = envs.Simulator(envs.load_config(preset), accounts)
    idx = np.arange(accounts)
    sim.seed_accounts(idx, idx.astype(np.uint64))
    sim.restart_calendar()
    hold = np.ones(accounts)
    sim.step(hold)
    cpu = time.process_time()
    for _ in range(1, steps):
        sim.step(hold)
    return accounts * (steps - 1) / (time.process_time() - cpu)


def per_account(preset: str, accounts: int, steps: int) -> tuple[float, float]:
    venv = DummyVecEnv([lambda: gym.make("CreditLine-v0", preset=preset) for _ in range(accounts)])
    venv.seed(0)
    wall, cpu = _timed_steps(venv, steps, accounts, 1)
    return accounts * (steps - 1) / wall, accounts * (steps - 1) / cpu


def peak_memory(preset: str, accounts: int, steps: int = 3) -> float:
    """Peak bytes allocated (numpy arrays and Python objects, via tracemalloc) to build and step a portfolio."""
    tracemalloc.start()
    venv = envs.make_portfolio(preset, accounts, seed=0)
    venv.reset()
    hold = np.full(accounts, envs.HOLD_ACTION)
    for _ in range(steps):
        venv.step(hold)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del venv
    return float(peak)


def ppo_actor(preset: str, run_dir: Path | None = None) -> Any:
    """A PPO actor, batched (``agents.policy_export.ExportedPolicy``): the PPO trained in ``run_dir``, or
    without it a new PPO of ``configs/agents/ppo.yaml``'s architecture and initial hold bias (a trained one
    costs the same per step; its actions, like a trained agent's, mostly hold)."""
    from stable_baselines3.common.vec_env import VecNormalize

    from agents.agent_config import load_agent_config
    from agents.lagrangian import LambdaHolder
    from agents.policy_export import ExportedPolicy
    from agents.training import _build_env, _new_model, load_agent

    if run_dir is not None:
        return load_agent(run_dir, "ppo")  # the exported actor (agents.policy_export), batched already
    agent = load_agent_config("ppo", preset)
    config = envs.load_config(preset)
    _, vecnorm = _build_env(config, 256, 0, False, agent, LambdaHolder())
    assert isinstance(vecnorm, VecNormalize)
    vecnorm.reset()  # observation statistics from one month of a real book, as after training starts
    return ExportedPolicy.from_model("ppo", _new_model(agent, vecnorm, 0), vecnorm, agent.policy.activation)


QUICK_RISK_SEEDS = (1, 2)  # training seeds of the quickly fitted risk policy (the evaluation is on seed 0)


def risk_policy_actor(preset: str, path: Path | None = None) -> Any:
    """The risk-model line policy (``agents.risk_policy``): the one saved at ``path`` (a ``risk_policy.json``
    as ``scripts/headline.py`` writes it in ``<out>/<preset>/``, or that folder), or without it one fitted
    quickly: its two scorecards on the histories of :data:`QUICK_RISK_SEEDS` (2,000 accounts each) with the
    default thresholds, untuned (a tuned one costs the same per step: the same scorecards and rules).
    Raises ValueError naming the file when ``path`` holds no saved risk policy."""
    from agents.risk_policy import RiskParams, RiskPolicy
    from agents.risk_scorecard import fit_risk_model, fit_uptake_model, load_risk_policy_config, simulate_histories

    if path is not None:
        file = path / "risk_policy.json" if path.is_dir() else path
        try:
            return RiskPolicy.from_dict(json.loads(file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, AttributeError) as exc:
            raise ValueError(f"--risk-policy {path}: cannot load a risk policy from {file}: {exc}") from None
    config = envs.load_config(preset)
    settings = load_risk_policy_config(preset, {"accounts": 2000})
    history = simulate_histories(config, QUICK_RISK_SEEDS, settings)
    uptake = fit_uptake_model(history, settings)
    return RiskPolicy(fit_risk_model(history, settings), RiskParams(), uptake=uptake)


def agent_evaluation(preset: str, accounts: int, actor: Any) -> float:
    """Wall seconds of ``agents.evaluation.evaluate`` of ``actor`` on ``accounts`` accounts over the horizon
    and the run-off (one seed; the actor built beforehand, untimed)."""
    from agents.evaluation import evaluate

    start = time.perf_counter()
    evaluate({"agent": actor}, preset, accounts, [0], progress=False, reference=None, n_boot=10)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="wechat", help="preset to simulate (default wechat)")
    parser.add_argument("--accounts", type=int, default=100_000, help="portfolio size for speed (default 100000)")
    parser.add_argument("--steps", type=int, default=50, help="months simulated per measurement (default 50)")
    parser.add_argument("--single-envs", type=int, default=64, help="single envs in the DummyVecEnv (default 64)")
    parser.add_argument(
        "--memory-accounts",
        type=int,
        default=1_000_000,
        help="portfolio size for the memory check (default 1000000; 0 skips it)",
    )
    parser.add_argument(
        "--agent-accounts",
        type=int,
        default=1_000_000,
        help="portfolio size of the trained-agent evaluation, whole horizon, one seed (default 1000000; 0 skips it)",
    )
    parser.add_argument("--agent", type=Path, help="run folder of a trained PPO for that row (default: a new PPO)")
    parser.add_argument(
        "--risk-policy",
        type=Path,
        help="saved risk policy for its row: a risk_policy.json as scripts/headline.py writes it, or its folder "
        "(e.g. results/headline/wechat); default: one fitted in a few seconds on 2 x 2000-account histories "
        "with the default thresholds (untuned: the same cost per step)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement, best reported (default 3)")
    parser.add_argument("--write", type=Path, help="also write the table as Markdown to this file")
    args = parser.parse_args(argv)
    if (
        min(args.accounts, args.steps - 1, args.single_envs, args.repeats) < 1
        or min(args.memory_accounts, args.agent_accounts) < 0
    ):
        print(
            "error: --accounts, --single-envs, --repeats must be positive, --steps at least 2, "
            "--memory-accounts and --agent-accounts at least 0",
            file=sys.stderr,
        )
        return 2
    try:
        envs.load_config(args.preset)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.write is not None and (
        args.write.is_dir() or (args.write.parent.exists() and not args.write.parent.is_dir())
    ):
        print(f"error: --write {args.write}: not a file that can be written", file=sys.stderr)
        return 2

    actors: dict[str, Any] = {}
    if args.agent_accounts:  # the agents are built before the minutes of timing: a bad path fails at once
        try:
            actors["risk"] = risk_policy_actor(args.preset, args.risk_policy)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            actors["ppo"] = ppo_actor(args.preset, args.agent)
        except (OSError, ValueError, RuntimeError) as exc:  # (torch's load error is a RuntimeError)
            print(f"error: --agent {args.agent}: {exc}", file=sys.stderr)
            return 2

    best = lambda runs: tuple(max(values) for values in zip(*runs, strict=False))  # noqa: E731  (rates: higher is better)
    print(
        f"timing make_portfolio({args.preset!r}, {args.accounts}) over {args.steps} months, best of {args.repeats} ...",
        flush=True,
    )
    fast_wall, fast_cpu = best(batched(args.preset, args.accounts, args.steps) for _ in range(args.repeats))
    _, sb3_cpu = best(batched(args.preset, args.accounts, args.steps, read_infos=True) for _ in range(args.repeats))
    hold_wall, hold_cpu = best(batched(args.preset, args.accounts, args.steps, hold=True) for _ in range(args.repeats))
    _, hold_sb3_cpu = best(
        batched(args.preset, args.accounts, args.steps, hold=True, read_infos=True) for _ in range(args.repeats)
    )
    core_cpu = max(core_only(args.preset, args.accounts, args.steps) for _ in range(args.repeats))
    print(f"timing DummyVecEnv of {args.single_envs} CreditLine-v0 envs over {args.steps} months ...", flush=True)
    slow_wall, slow_cpu = best(per_account(args.preset, args.single_envs, args.steps) for _ in range(args.repeats))
    rows = [
        ("make_portfolio, random actions, account-months/s (wall)", f"{fast_wall / 1e6:.2f} M"),
        ("make_portfolio, random actions, account-months/s (CPU)", f"{fast_cpu / 1e6:.2f} M"),
        ("make_portfolio, random actions, infos read as by SB3 (CPU)", f"{sb3_cpu / 1e6:.2f} M"),
        ("make_portfolio, holding, account-months/s (CPU)", f"{hold_cpu / 1e6:.2f} M"),
        ("make_portfolio, holding, infos read as by SB3 (CPU)", f"{hold_sb3_cpu / 1e6:.2f} M"),
        ("monthly step alone (Simulator), holding (CPU)", f"{core_cpu / 1e6:.2f} M"),
        ("DummyVecEnv, account-months/s (wall)", f"{slow_wall / 1e3:.1f} k"),
        ("DummyVecEnv, account-months/s (CPU)", f"{slow_cpu / 1e3:.1f} k"),
        ("speed-up, batched / per-account, random actions (CPU)", f"{fast_cpu / slow_cpu:,.0f}x"),
    ]
    if args.memory_accounts:
        print(f"measuring peak memory of make_portfolio({args.preset!r}, {args.memory_accounts}) ...", flush=True)
        peak = peak_memory(args.preset, args.memory_accounts)
        rows.append((f"peak memory, {args.memory_accounts:,} accounts", f"{peak / 2**30:.2f} GiB"))
    if args.agent_accounts:
        from agents.policies import StaticHold

        n = args.agent_accounts
        print(f"evaluating a PPO actor on {n:,} accounts over the horizon ...", flush=True)
        seconds = agent_evaluation(args.preset, n, actors["ppo"])
        rows.append((f"PPO agent evaluated, {n:,} accounts x horizon (wall)", f"{seconds:.1f} s"))
        what = args.risk_policy if args.risk_policy is not None else "fitted on a small history, default thresholds"
        print(f"evaluating the risk policy ({what}) on {n:,} accounts over the horizon ...", flush=True)
        seconds = agent_evaluation(args.preset, n, actors["risk"])
        rows.append((f"risk policy evaluated, {n:,} accounts x horizon (wall)", f"{seconds:.1f} s"))
        seconds = agent_evaluation(args.preset, n, StaticHold())
        rows.append((f"holding evaluated, {n:,} accounts x horizon (wall)", f"{seconds:.1f} s"))
    width = max(len(name) for name, _ in rows)
    table = "\n".join(f"| {name:<{width}} | {value:>10} |" for name, value in rows)
    table = f"| {'measure':<{width}} | {'value':>10} |\n|{'-' * (width + 2)}|{'-' * 12}|\n" + table
    print(table)
    if args.write:
        from agents.atomic_io import write_text  # fsync'ed, the usual file mode, no temporary file left behind

        write_text(
            args.write,
            f"Printed by `python scripts/benchmark.py --write {args.write}` "
            f"({os.cpu_count()} CPUs, numpy {np.__version__}; best of {args.repeats} runs per figure)."
            f"\n\n{table}\n",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
