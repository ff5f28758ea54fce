"""The headline study: on every preset, tuned baselines, the oracle, policy search and PPO over seeds.

For each preset, in ``<out>/<preset>/``, one *cell* after another, each written atomically and skipped
when its file is already there (an interrupted study resumes where it stopped):

1. ``baselines.json``: best static multiplier, "low and grow" rule and oracle, each tuned on the tuning
   seeds under the cap with the same budget (``trials`` random-search trials for the rule and the oracle);
2. ``policy_search.json``: CMA-ES on training seeds, selected on the tuning seeds (agents.policy_search);
3. ``risk_policy.json``: the risk-model line policy (agents.risk_policy): a scorecard fitted on histories of
   the policy-search training seeds (both agents learn from training seeds; neither sees tuning or
   evaluation accounts), its thresholds tuned on the tuning seeds with the rule's ``trials``; the scorecard
   and thresholds are the JSON itself (no pickle);
4. ``ppo/seed_<i>/``: PPO-Lagrangian run ``i`` on its own training seeds (8 sub-books, randomised macro
   and product parameters), the checkpoint kept by model selection on the tuning seeds (agents.training);
5. ``summary.csv`` and ``per_seed.csv``: every policy on the evaluation seeds (agents.evaluation.evaluate),
   with the PPO runs summarised as ``ppo_mean_over_seeds`` (mean over runs, bootstrap interval over runs)
   and ``ppo`` (the run with the best tuning-seed score among those meeting the cap there).

Seeds (labels, agents.evaluation): one disjoint range each for training (policy search first, then 8 per
PPO run), tuning and evaluation, checked disjoint before anything runs and written to ``seeds.json``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from agents.atomic_io import save_figure, write_csv, write_json
from agents.evaluation import bootstrap_ci, check_disjoint, evaluate, split_seeds
from agents.oracle import Oracle, OracleParams
from agents.policies import BestStatic, RuleBased, RuleParams, StaticHold
from agents.policy_search import LinearScorePolicy, load_policy_search_config, train_policy_search
from agents.risk_policy import RiskPolicy
from agents.risk_scorecard import load_risk_policy_config
from agents.risk_tuning import train_risk_policy
from agents.tuning import tune_best_static, tune_oracle, tune_rule
from envs.config import Config, load_config

POLICY_SEARCH_SEEDS = 8  # training seeds of policy search
SUB_BOOKS = 8  # training seeds (sub-books) of one PPO run
# What the headline table shows, in this order.
COLUMNS = [
    "preset",
    "policy",
    "per_user_revenue",
    "per_user_revenue_ci_low",
    "per_user_revenue_ci_high",
    "m3plus_rate",
    "m3plus_rate_stress",
    "m3plus_rate_normal",
    "cap",
    "meets_cap",
    "uplift_vs_best_static",
    "uplift_ci_low",
    "uplift_ci_high",
    "uplift_vs_rule",
    "uplift_vs_rule_ci_low",
    "uplift_vs_rule_ci_high",
    "oracle_share",
    "attrition_rate",
    "average_line",
]


class Budget(NamedTuple):
    """What the study spends; the defaults of scripts/headline.py are stated (and timed) there."""

    accounts: int  # per evaluation and tuning portfolio
    eval_seeds: int
    tune_seeds: int
    trials: int  # rule and oracle random-search trials
    ps_generations: int | None  # None: configs/agents/policy_search.yaml
    ppo_seeds: int  # independent PPO runs (0: no PPO)
    ppo_timesteps: int  # [account-months] per run
    ppo_accounts: int  # parallel accounts per run (split over the sub-books)
    seed: int  # first seed label


def study_seeds(budget: Budget) -> dict[str, list[int]]:
    """Disjoint seed labels: policy search, each PPO run, tuning, evaluation."""
    training = POLICY_SEARCH_SEEDS + SUB_BOOKS * budget.ppo_seeds
    split = split_seeds(training, budget.tune_seeds, budget.eval_seeds, start=budget.seed)
    seeds = {"policy_search": list(split.training[:POLICY_SEARCH_SEEDS])}
    for i in range(budget.ppo_seeds):
        lo = POLICY_SEARCH_SEEDS + SUB_BOOKS * i
        seeds[f"ppo_{i}"] = list(split.training[lo : lo + SUB_BOOKS])
    seeds["tuning"], seeds["evaluation"] = list(split.tuning), list(split.evaluation)
    check_disjoint(**seeds)
    return seeds


def _cell(path: Path, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The JSON at ``path``, computed and written atomically first if it is not there yet."""
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    data = compute()
    write_json(path, data)
    return data


def _baselines(config: Config, seeds: dict[str, list[int]], budget: Budget, progress: bool) -> dict[str, Any]:
    tuning, holdout, n, search = seeds["tuning"], seeds["evaluation"], budget.trials, budget.seed
    x, _ = tune_best_static(config, tuning, budget.accounts, progress=progress, holdout_seeds=holdout)
    rule = tune_rule(config, tuning, budget.accounts, n, progress, holdout, search)
    oracle = tune_oracle(config, tuning, budget.accounts, n, progress, holdout, search)
    return {
        "best_static": x,
        "rule": dataclasses.asdict(rule.params),
        "oracle": dataclasses.asdict(oracle.params),
        "tuning_seeds": seeds["tuning"],
        "trials": budget.trials,
    }


def _policy_search(
    config: Config, seeds: dict[str, list[int]], budget: Budget, folder: Path, progress: bool
) -> dict[str, Any]:
    overrides = {} if budget.ps_generations is None else {"generations": budget.ps_generations}
    settings = load_policy_search_config(config.name, overrides)
    result = train_policy_search(
        config,
        seeds["policy_search"],
        seeds["tuning"],
        holdout_seeds=seeds["evaluation"],
        settings=settings,
        search_seed=budget.seed,
        progress=progress,
    )
    write_csv(folder / "policy_search_history.csv", result.history)
    return {"weights": result.policy.weights.tolist(), "selected": result.selected, **settings.model_dump()}


def _risk_policy(
    config: Config, seeds: dict[str, list[int]], budget: Budget, folder: Path, progress: bool
) -> dict[str, Any]:
    settings = load_risk_policy_config(
        config.name, {"accounts": budget.accounts}
    )  # histories as big as the study's books
    training = seeds["policy_search"][: settings.training_seeds]
    result = train_risk_policy(
        config,
        training,
        seeds["tuning"],
        budget.accounts,
        budget.trials,  # the rule's and the oracle's budget
        holdout_seeds=seeds["evaluation"],
        settings=settings,
        search_seed=budget.seed,
        progress=progress,
    )
    write_csv(folder / "risk_policy_tuning.csv", result.tuning)
    return {
        **result.policy.to_dict(),
        "holdout_auc": result.holdout_auc,
        "holdout_base_rate": result.holdout_base_rate,
        "uptake_auc": result.uptake_auc,
        "training_seeds": training,
        "settings": settings.model_dump(),
    }


def _ppo_run(config: Config, seeds: dict[str, list[int]], i: int, budget: Budget, folder: Path, progress: bool):
    """PPO run ``i`` (trained unless its selection record exists; a half-finished run is started again)."""
    from agents.training import load_agent, train  # torch and SB3 only when PPO runs

    run_dir = folder / "ppo" / f"seed_{i}"
    done = run_dir / "agents" / "ppo" / "selection.json"
    if not done.is_file():
        if run_dir.exists():
            shutil.rmtree(run_dir)
        train(
            "ppo",
            config,
            run_dir,
            total_timesteps=budget.ppo_timesteps,
            seed=seeds[f"ppo_{i}"][0],
            num_accounts=budget.ppo_accounts,
            progress=progress,
            book_seeds=seeds[f"ppo_{i}"],
            tuning_seeds=seeds["tuning"],
            holdout_seeds=seeds["evaluation"],
            # about five checks on the tuning seeds whatever the budget (and the YAML's interval at most)
            agent_overrides={"training.selection_every": max(1, min(500_000, budget.ppo_timesteps // 5))},
        )
    selection = pd.read_csv(run_dir / "agents" / "ppo" / "selection.csv")
    return load_agent(run_dir, "ppo"), selection[selection["kept"]].iloc[0]


def _evaluate(policies: dict[str, Any], config: Config, seeds: Sequence[int], accounts: int, progress: bool):
    """The evaluator, with the comparisons against best static and the rule and the oracle share."""
    return evaluate(
        policies, config, accounts, seeds, progress=progress, reference="best_static", rule="rule", oracle="oracle"
    )


def _ppo_over_seeds(summary: pd.DataFrame, names: list[str], selected: str | None) -> pd.DataFrame:
    """Rows ``ppo_mean_over_seeds`` (mean of the runs, bootstrap interval over runs) and ``ppo`` (selected)."""
    runs = summary.set_index("policy").loc[names]
    rng = np.random.default_rng(0)
    row: dict[str, Any] = {"policy": "ppo_mean_over_seeds"}
    for m in ("per_user_revenue", "uplift_vs_best_static", "uplift_vs_rule"):
        values = runs[m].to_numpy(dtype=float)
        low, high = bootstrap_ci(values.tolist(), rng)
        row[m] = float(np.mean(values))
        suffix = {"per_user_revenue": "per_user_revenue_ci", "uplift_vs_best_static": "uplift_ci"}.get(
            m, "uplift_vs_rule_ci"
        )
        row[f"{suffix}_low"], row[f"{suffix}_high"] = low, high
    for m in (
        "m3plus_rate",
        "m3plus_rate_stress",
        "m3plus_rate_normal",
        "oracle_share",
        "attrition_rate",
        "average_line",
    ):
        row[m] = float(runs[m].mean())
    row["cap"] = float(runs["cap"].iloc[0])
    row["meets_cap"] = bool(runs["meets_cap"].all())
    rows = [pd.DataFrame([row])]
    if selected is not None:
        rows.append(summary[summary["policy"] == selected].assign(policy="ppo"))
    return pd.concat([summary, *rows], ignore_index=True)


def run_preset(preset: str, out: Path, budget: Budget, progress: bool = True) -> pd.DataFrame:
    """Every cell of one preset (see the module docstring); its headline rows."""
    config = load_config(preset)
    folder = out / preset
    folder.mkdir(parents=True, exist_ok=True)
    seeds = study_seeds(budget)
    _cell(folder / "seeds.json", lambda: seeds)
    if json.loads((folder / "seeds.json").read_text(encoding="utf-8")) != seeds:
        raise ValueError(f"{folder} was started with other seeds or budget; use another --out or delete it")
    # The seeds do not show every budget item (the trials, the generations): the budget is checked as well.
    _cell(folder / "budget.json", lambda: budget._asdict())
    started = json.loads((folder / "budget.json").read_text(encoding="utf-8"))
    if started != budget._asdict():
        changed = sorted(k for k in budget._asdict() if started.get(k) != budget._asdict()[k])
        raise ValueError(f"{folder} was started with another budget ({', '.join(changed)}); use another --out")
    base = _cell(folder / "baselines.json", lambda: _baselines(config, seeds, budget, progress))
    ps = _cell(folder / "policy_search.json", lambda: _policy_search(config, seeds, budget, folder, progress))
    risk = _cell(folder / "risk_policy.json", lambda: _risk_policy(config, seeds, budget, folder, progress))
    policies: dict[str, Any] = {
        "static_hold": StaticHold(),
        "best_static": BestStatic(base["best_static"]),
        "rule": RuleBased(RuleParams(**base["rule"])),
        "oracle": Oracle(OracleParams(**base["oracle"])),
        "policy_search": LinearScorePolicy(ps["weights"]),
        "risk_policy": RiskPolicy.from_dict(risk),
    }
    ppo_names, selected, best = [], None, -np.inf
    for i in range(budget.ppo_seeds):
        agent, kept = _ppo_run(config, seeds, i, budget, folder, progress)
        name = f"ppo_seed_{i}"
        policies[name] = agent  # the exported actor (agents.policy_export), batched
        ppo_names.append(name)
        score = float(kept["per_user_revenue"]) if bool(kept["meets_cap"]) else -np.inf
        if selected is None or score > best:  # selection over runs on the tuning seeds, never evaluation
            selected, best = name, score
    summary_path = folder / "summary.csv"
    if summary_path.is_file():
        table = pd.read_csv(summary_path)
    else:
        evaluation = _evaluate(policies, config, seeds["evaluation"], budget.accounts, progress)
        table = evaluation.summary
        if ppo_names:
            table = _ppo_over_seeds(table, ppo_names, selected)
        write_csv(folder / "per_seed.csv", evaluation.per_seed)
        write_csv(summary_path, table)
    return table.assign(preset=preset)[COLUMNS]


def plot_uplift(table: pd.DataFrame):
    """Uplift over best static with its 95% interval, one panel per preset (ppo_seed_* rows left out)."""
    from agents.plots import new_figure

    shown = table[~table["policy"].str.startswith("ppo_seed_")]
    presets = list(dict.fromkeys(shown["preset"]))
    fig = new_figure(4.0 * len(presets), 3.6)
    axes = fig.subplots(1, len(presets), squeeze=False)[0]
    for ax, preset in zip(axes, presets, strict=True):
        rows = shown[shown["preset"] == preset]
        y = rows["uplift_vs_best_static"].to_numpy(dtype=float) * 100
        low = y - rows["uplift_ci_low"].to_numpy(dtype=float) * 100
        high = rows["uplift_ci_high"].to_numpy(dtype=float) * 100 - y
        colours = ["tab:green" if m else "tab:red" for m in rows["meets_cap"].astype(bool)]
        ax.bar(range(len(rows)), y, color=colours, alpha=0.7)
        ax.errorbar(range(len(rows)), y, yerr=np.nan_to_num([low, high]), fmt="none", ecolor="black", capsize=3)
        ax.axhline(18.0, color="grey", linestyle="--", linewidth=1, label="source document: +18%")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(rows)), rows["policy"], rotation=45, ha="right")
        ax.set_title(preset)
        ax.set_ylabel("uplift vs best static [%]")
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle("Per-user revenue uplift over best static, 95% paired interval (red: breaks the M3+ cap)")
    return fig


def write_headline(tables: list[pd.DataFrame], out: Path) -> pd.DataFrame:
    """``summary.csv`` (every preset) and ``uplift.png`` in ``out``."""
    table = pd.concat(tables, ignore_index=True)
    write_csv(out / "summary.csv", table)
    save_figure(out / "uplift.png", plot_uplift(table))
    return table
