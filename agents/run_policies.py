"""A run folder's policies, config and seeds, as plain specs that can be rebuilt anywhere.

What-if studies, sweeps and reports all re-evaluate the policies of a run made by ``scripts/compare.py``:
its tuned baselines (``baselines.json``) and its trained agents (``agents/<algo>/``, read through
:func:`agents.training.load_agent`). A policy is carried as a **spec**, a small dict such as
``{"kind": "best_static", "x": 1.5}`` or ``{"kind": "agent", "run": "results/demo", "algo": "ppo"}``,
and built with :func:`build_policies` where it is used: in this process, in a worker process or in a Ray
task on another machine. Building afresh also matters for correctness: :class:`RandomPolicy` advances its
generator with every call, so each evaluation gets its own instance and the same actions.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from agents.policies import BestStatic, Policy, RandomPolicy, RuleBased, RuleParams, StaticHold
from envs.config import Config, load_config

BASELINE_KINDS = ("static_hold", "best_static", "rule", "random")
PolicySpec = dict[str, Any]


# -- the run folder -----------------------------------------------------------------------------------------
def check_run(run_dir: str | Path) -> Path:
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"--run: run folder {run} not found")
    return run


def run_config(run_dir: str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """The run's own ``config.yaml`` (what its agents were trained and its baselines tuned on)."""
    path = check_run(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass --preset to choose the base config")
    return load_config(path, overrides)


def run_seeds(run_dir: str | Path) -> dict[str, list[int]]:
    """``seeds.json`` of the run (train, tune, eval lists); empty lists when the run recorded none."""
    path = Path(run_dir) / "seeds.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return {key: [int(s) for s in data.get(key, [])] for key in ("train", "tune", "eval")}


def evaluation_seeds(used: Mapping[str, Sequence[int]], count: int | None, start: int = 0) -> tuple[int, ...]:
    """The run's evaluation seeds (its numbers are reproduced), the first ``count`` of them, or extended
    past every seed the run used when more are asked for; without recorded seeds, ``count`` seeds from
    ``start``. Always disjoint from the run's training and tuning seeds."""
    from agents.evaluation import check_disjoint

    own = list(used.get("eval", []))
    if count is None:
        count = len(own) or 5
    if len(own) >= count:
        seeds = tuple(own[:count])
    else:
        taken = [s for key in ("train", "tune", "eval") for s in used.get(key, [])]
        first = max(taken, default=start - 1) + 1
        seeds = (*own, *range(first, first + count - len(own)))
    check_disjoint(training=used.get("train", []), tuning=used.get("tune", []), evaluation=seeds)
    return seeds


def tuning_seeds(used: Mapping[str, Sequence[int]], count: int, evaluation: Sequence[int]) -> tuple[int, ...]:
    """The run's tuning seeds (the first ``count``), else ``count`` seeds past every seed in use."""
    own = list(used.get("tune", []))
    if len(own) >= count:
        return tuple(own[:count])
    taken = [s for key in ("train", "tune", "eval") for s in used.get(key, [])] + list(evaluation)
    first = max(taken, default=-1) + 1
    return (*own, *range(first, first + count - len(own)))


# -- specs ----------------------------------------------------------------------------------------------
def baseline_specs(run_dir: str | Path | None, random_seed: int = 0) -> dict[str, PolicySpec]:
    """The baselines of a run: static hold, its tuned best static and rule (if ``baselines.json`` has them),
    and random. A missing tuned baseline is left out; :func:`missing_baselines` says which."""
    from agents.results import read_baselines

    tuned = read_baselines(run_dir) if run_dir is not None else {}
    specs: dict[str, PolicySpec] = {"static_hold": {"kind": "static_hold"}}
    if "best_static" in tuned:
        specs["best_static"] = {"kind": "best_static", "x": float(tuned["best_static"]["x"])}
    if "rule" in tuned:
        specs["rule"] = rule_spec(tuned["rule"], f"{run_dir}/baselines.json")
    specs["random"] = {"kind": "random", "seed": int(random_seed)}
    return specs


def rule_spec(params: Mapping[str, Any] | RuleParams, source: str = "rule parameters") -> PolicySpec:
    """A rule spec from a RuleParams or a mapping of its fields (unknown fields: ValueError naming them)."""
    data = asdict(params) if isinstance(params, RuleParams) else dict(params)
    allowed = [f.name for f in fields(RuleParams)]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(f"{source}: unknown rule parameters {unknown}; allowed: {allowed}")
    RuleParams(**data)  # its own checks name a bad value
    return {"kind": "rule", "params": data}


def agent_specs(run_dir: str | Path) -> dict[str, PolicySpec]:
    """One spec per trained agent folder ``agents/<algo>/`` of the run (none for a baselines-only run)."""
    folder = Path(run_dir) / "agents"
    found = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not found:
        return {}
    from agents.agent_config import ALGORITHM_NAMES

    specs = {}
    for algo in found:
        if algo not in ALGORITHM_NAMES:
            print(f"warning: {folder / algo} is not an agent of {ALGORITHM_NAMES}; skipped", file=sys.stderr)
            continue
        specs[algo] = {"kind": "agent", "run": str(Path(run_dir).resolve()), "algo": algo}
    return specs


def run_specs(run_dir: str | Path, random_seed: int = 0) -> dict[str, PolicySpec]:
    """Every policy of a run: its baselines, then its agents."""
    return {**baseline_specs(run_dir, random_seed), **agent_specs(run_dir)}


def with_tuned(specs: Mapping[str, PolicySpec], best_static: float, rule: RuleParams) -> dict[str, PolicySpec]:
    """``specs`` with the best static and the rule replaced (or added) by newly tuned ones."""
    out = dict(specs)
    out["best_static"] = {"kind": "best_static", "x": float(best_static)}
    out["rule"] = rule_spec(rule)
    return dict(sorted(out.items(), key=lambda item: _order(item[1])))


def _order(spec: PolicySpec) -> int:
    kind = spec["kind"]
    return BASELINE_KINDS.index(kind) if kind in BASELINE_KINDS else len(BASELINE_KINDS)


def is_agent(spec: PolicySpec) -> bool:
    return spec["kind"] == "agent"


def build_policy(spec: PolicySpec) -> Policy:
    """The policy a spec describes (agents are loaded from their run folder)."""
    kind = spec.get("kind")
    if kind == "static_hold":
        return StaticHold()
    if kind == "best_static":
        return BestStatic(spec["x"])
    if kind == "rule":
        return RuleBased(RuleParams(**spec["params"]))
    if kind == "random":
        return RandomPolicy(spec.get("seed", 0))
    if kind == "agent":
        from agents.training import load_agent  # torch and SB3: only when there is an agent

        return load_agent(spec["run"], spec["algo"])
    raise ValueError(f"unknown policy kind {kind!r} in {spec}; known: {[*BASELINE_KINDS, 'agent']}")


def build_policies(specs: Mapping[str, PolicySpec]) -> dict[str, Policy]:
    return {name: build_policy(spec) for name, spec in specs.items()}
