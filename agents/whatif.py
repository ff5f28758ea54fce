"""A run's policies under its base config and under a named scenario, side by side, on the same seeds.

Both cases run on the same evaluation seeds, so each seed brings the same account keys and macro path
to both (the scenario changes what those accounts do, not who they are drawn from), and the change from
base is a paired difference over seeds. The agents are evaluated as trained (on the base case): a
what-if shows how a learned policy copes with a world it never saw. The baselines keep their tuning on
the base case too, unless ``retune``: then the best static multiplier and the rule are re-tuned under the
scenario on the tuning seeds, as a bank would re-tune its rules, and every comparison in the scenario
column is against the re-tuned baselines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from agents.evaluation import Evaluation, check_disjoint, evaluate
from agents.run_policies import PolicySpec, build_policies, is_agent, with_tuned
from agents.uplift import change_from_base, comparison, format_versus
from envs.config import Config
from envs.scenarios import Scenario, check_scenario, describe_changes

CASES = ("base", "scenario")


class WhatIf(NamedTuple):
    """What :func:`run_whatif` returns.

    - ``table``: tidy, one row per policy and case: ``per_user_revenue`` and ``m3plus_rate`` with CIs,
      ``cap``, ``meets_cap``, ``tuned_under``, the comparisons ``*_vs_best_static`` / ``*_vs_rule``
      (``revenue_diff``, ``uplift``, CIs, and the reference's revenue), and on scenario rows the paired
      ``revenue_change`` (with CI) and ``m3plus_change`` from base.
    - ``changes``: the scenario's keys with base and scenario values and their sources.
    """

    table: pd.DataFrame
    base: Evaluation
    scenario: Evaluation
    changes: pd.DataFrame
    scenario_config: Config


def run_whatif(
    config: Config,
    scenario: Scenario,
    specs: Mapping[str, PolicySpec],
    num_accounts: int,
    seeds: Sequence[int],
    retune: bool = False,
    tune_seeds: Sequence[int] = (),
    rule_trials: int | None = None,
    progress: bool = True,
) -> WhatIf:
    """Evaluate the policies of ``specs`` under ``config`` and under ``scenario`` applied to it.

    Args:
        config: the base case (usually the run's own config).
        scenario: the overlay (:func:`envs.scenarios.load_scenario`).
        specs: policy specs (:mod:`agents.run_policies`).
        num_accounts: accounts per portfolio.
        seeds: evaluation seeds, the same for both cases.
        retune: re-tune best static and rule under the scenario on ``tune_seeds``.
        tune_seeds: tuning seeds (disjoint from ``seeds``), used with ``retune``.
        rule_trials: rule parameter sets tried when re-tuning (default: agents.tuning's).
        progress: progress bars.
    """
    scenario_config = check_scenario(scenario, config)
    scenario_specs = dict(specs)
    if retune:
        from agents.tuning import tune_best_static, tune_rule

        if not tune_seeds:
            raise ValueError("--retune needs tuning seeds")
        check_disjoint(tuning=tune_seeds, evaluation=seeds)
        x, _ = tune_best_static(scenario_config, tune_seeds, num_accounts, progress=progress, holdout_seeds=seeds)
        trials = {} if rule_trials is None else {"n_trials": rule_trials}
        params, _ = tune_rule(
            scenario_config, tune_seeds, num_accounts, progress=progress, holdout_seeds=seeds, **trials
        )
        scenario_specs = with_tuned(specs, x, params)
    evaluations = {}
    for case, cfg, case_specs in (("base", config, specs), ("scenario", scenario_config, scenario_specs)):
        policies = build_policies(case_specs)  # fresh instances: the random policy replays its actions
        reference = "best_static" if "best_static" in policies else None
        evaluations[case] = evaluate(policies, cfg, num_accounts, seeds, progress=progress, reference=reference)
    tuned_under = {
        name: "trained on base" if is_agent(spec) else ("-" if spec["kind"] in ("static_hold", "random") else "base")
        for name, spec in specs.items()
    }
    table = _table(evaluations, tuned_under, retune)
    changes = pd.DataFrame(describe_changes(scenario, config), dtype=object)
    return WhatIf(table, evaluations["base"], evaluations["scenario"], changes, scenario_config)


def _table(evaluations: Mapping[str, Evaluation], tuned_under: Mapping[str, str], retune: bool) -> pd.DataFrame:
    rows = []
    for case, ev in evaluations.items():
        summary = ev.summary.set_index("policy")
        versus = {ref: comparison(ev.summary, ref) for ref in ("best_static", "rule")}
        for name in summary.index:
            s = summary.loc[name]
            tuned = tuned_under.get(name, "-")
            if case == "scenario" and retune and name in ("best_static", "rule"):
                tuned = "scenario"
            row: dict[str, Any] = {"policy": name, "case": case, "tuned_under": tuned}
            for metric in ("per_user_revenue", "m3plus_rate"):
                for suffix in ("", "_ci_low", "_ci_high"):
                    row[metric + suffix] = float(s[metric + suffix])
            row["cap"], row["meets_cap"] = float(s["cap"]), bool(s["meets_cap"])
            for ref, frame in versus.items():
                for column, value in frame.loc[name].items():
                    row[f"{column}_vs_{ref}"] = value if column == "shown" else float(value)
            rows.append(row)
    table = pd.DataFrame(rows)
    # The change from base: the same policy on the same seeds under two configs, paired over seeds (BCa).
    change = change_from_base(evaluations["base"].per_seed, evaluations["scenario"].per_seed, np.random.default_rng(0))
    scenario_rows = table["case"] == "scenario"
    for column in change.columns:
        table[column] = np.nan
        table.loc[scenario_rows, column] = table.loc[scenario_rows, "policy"].map(change[column])
    base_m3 = table[table["case"] == "base"].set_index("policy")["m3plus_rate"]
    table["m3plus_change"] = np.nan
    table.loc[scenario_rows, "m3plus_change"] = table.loc[scenario_rows, "m3plus_rate"] - table.loc[
        scenario_rows, "policy"
    ].map(base_m3)
    return table


def _versus_cell(row: Mapping[str, Any], ref: str) -> str:
    cells = {c.removesuffix(f"_vs_{ref}"): v for c, v in row.items() if str(c).endswith(f"_vs_{ref}")}
    return format_versus(cells, is_reference=row["policy"] == ref)


def format_whatif(table: pd.DataFrame) -> str:
    """The side-by-side table for a terminal: base and scenario columns, and the change from base."""
    rows = []
    for name in dict.fromkeys(table["policy"]):
        by_case = {case: table[(table["policy"] == name) & (table["case"] == case)] for case in CASES}
        if any(part.empty for part in by_case.values()):
            continue
        base, scen = (by_case[case].iloc[0] for case in CASES)
        label = f"{name} (as trained)" if base["tuned_under"] == "trained on base" else name
        if scen["tuned_under"] == "scenario":
            label += " (re-tuned for scenario)"
        ci = (
            ""
            if np.isnan(scen["revenue_change_ci_low"])
            else f" [{scen['revenue_change_ci_low']:+.1f}, {scen['revenue_change_ci_high']:+.1f}]"
        )
        rows.append(
            {
                ("policy", ""): label,
                ("revenue/user [CNY]", "base"): f"{base['per_user_revenue']:.1f}",
                ("revenue/user [CNY]", "scenario"): f"{scen['per_user_revenue']:.1f}",
                ("revenue/user [CNY]", "change [95% CI]"): f"{scen['revenue_change']:+.1f}{ci}",
                ("M3+ [%]", "base"): f"{100 * base['m3plus_rate']:.2f}",
                ("M3+ [%]", "scenario"): f"{100 * scen['m3plus_rate']:.2f}",
                ("meets cap", "base"): "yes" if base["meets_cap"] else "NO",
                ("meets cap", "scenario"): "yes" if scen["meets_cap"] else "NO",
                ("vs best static [95% CI]", "base"): _versus_cell(base, "best_static"),
                ("vs best static [95% CI]", "scenario"): _versus_cell(scen, "best_static"),
                ("vs rule [95% CI]", "base"): _versus_cell(base, "rule"),
                ("vs rule [95% CI]", "scenario"): _versus_cell(scen, "rule"),
            }
        )
    if not rows:
        return "(no policies evaluated)"
    frame = pd.DataFrame(rows)
    frame.columns = pd.MultiIndex.from_tuples(list(rows[0]))
    text = frame.to_string(index=False)
    if " CNY" in text:
        text += (
            "\nCNY cells: the reference earns zero or less on some evaluation seed, so an uplift in % means"
            "\nnothing; the paired revenue difference per user is shown instead."
        )
    return text


def format_changes(changes: pd.DataFrame) -> str:
    shown = changes[["key", "base", "scenario", "operation"]].astype(object)
    return shown.map(lambda v: "none" if v is None else f"{v:g}" if isinstance(v, float) else v).to_string(index=False)


def plot_whatif(table: pd.DataFrame, title: str) -> Any:
    """Revenue per user and M3+ rate of each policy, base against scenario, with 95% CIs and the caps."""
    from agents.plots import new_figure

    figure = new_figure(11, 4.2)
    axes = figure.subplots(1, 2)
    names = list(dict.fromkeys(table["policy"]))
    x = np.arange(len(names))
    width = 0.38
    for k, case in enumerate(CASES):
        part = table[table["case"] == case].set_index("policy").reindex(names)
        for ax, metric, scale in ((axes[0], "per_user_revenue", 1.0), (axes[1], "m3plus_rate", 100.0)):
            mean = scale * part[metric].to_numpy(dtype=float)
            low = scale * part[f"{metric}_ci_low"].to_numpy(dtype=float)
            high = scale * part[f"{metric}_ci_high"].to_numpy(dtype=float)
            err = np.nan_to_num(np.vstack([mean - low, high - mean]))
            ax.bar(x + (k - 0.5) * width, mean, width, yerr=err, capsize=3, label=case, color=f"C{k}")
    caps = {case: float(table.loc[table["case"] == case, "cap"].iloc[0]) for case in CASES}
    if caps["base"] == caps["scenario"]:
        axes[1].axhline(100 * caps["base"], color="black", linestyle="--", linewidth=1.2, label="M3+ cap")
    else:
        for k, case in enumerate(CASES):
            axes[1].axhline(100 * caps[case], color=f"C{k}", linestyle="--", linewidth=1.2, label=f"{case} cap")
    axes[0].axhline(0.0, color="black", linewidth=0.8)
    axes[0].set_ylabel("revenue per user [CNY]")
    axes[1].set_ylabel("M3+ rate [%] (balance-weighted)")
    for ax in axes:
        ax.set_xticks(x, names, rotation=20, ha="right")
        ax.legend(loc="best", fontsize=8)
    figure.suptitle(title)
    return figure
