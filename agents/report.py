"""The segment and explainability report of a run: who gains and who loses, and the agent as rules.

For every policy of the run (its baselines, its agents, and the distilled tree): per-segment outcomes
(:mod:`agents.segments`), disparity ratios between segments set against the rule's, and the whole-book
revenue and M3+ rate from :func:`agents.evaluation.evaluate`. The distilled policy (:mod:`agents.distill`)
is fitted to the first agent of the run, or to the rule when the run has no agent (said so in the report).
Seeds: the run's evaluation seeds for every number and as the held-out set of the tree's fidelity; the
tree is fitted on distillation seeds past every seed the run used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from agents.distill import Distillation, action_labels, distill
from agents.evaluation import check_disjoint, evaluate
from agents.policies import is_continuous, obs_index
from agents.run_policies import PolicySpec, build_policy
from agents.segments import HIDDEN_SEGMENTS, SEGMENT_LEVELS, disparity, pooled_outcomes, segment_table
from agents.uplift import comparison, format_versus
from envs.config import Config

SHOWN_OUTCOMES = {
    "per_user_revenue": ("revenue/user [CNY]", "{:.1f}"),
    "m3plus_rate": ("M3+ [%]", "{:.2%}"),
    "raise_rate": ("raises [% of account-months]", "{:.2%}"),
    "cut_rate": ("cuts [% of account-months]", "{:.2%}"),
    "average_line": ("average line [CNY]", "{:,.0f}"),
    "attrition": ("closed by borrower [%]", "{:.1%}"),
}


class Report(NamedTuple):
    segments: pd.DataFrame  # policy, segment, level, hidden, accounts, outcomes
    disparity: pd.DataFrame  # policy, pair, outcome, ratio, reference_ratio, vs_reference
    summary: pd.DataFrame  # the evaluator's summary of every policy, the tree included
    distillation: Distillation
    target: str  # the policy the tree imitates
    tree_name: str
    reference: str  # the rule the ratios are set against
    window: int  # [months] the window of the per-segment numbers (env.horizon)


def build_report(
    config: Config,
    specs: Mapping[str, PolicySpec],
    num_accounts: int,
    seeds: Sequence[int],
    distill_seeds: Sequence[int],
    max_depth: int = 3,
    progress: bool = True,
) -> Report:
    """Segments, disparities, the distilled tree and the summary, on evaluation ``seeds``.

    Args:
        config: the run's config.
        specs: the policies (random is left out: it has no strategy to explain).
        num_accounts: accounts per portfolio.
        seeds: evaluation seeds (held out from the tree's fit).
        distill_seeds: seeds whose observations the tree is fitted on (disjoint from ``seeds``).
        max_depth: depth of the tree.
        progress: the evaluator's progress bar.
    """
    check_disjoint(evaluation=seeds, distillation=distill_seeds)
    specs = {name: spec for name, spec in specs.items() if spec["kind"] != "random"}
    reference = "rule" if "rule" in specs else "rule_untuned"
    if reference not in specs:
        specs[reference] = {"kind": "rule", "params": {}}
    agents = [name for name, spec in specs.items() if spec["kind"] == "agent"]
    target = agents[0] if agents else reference
    continuous = is_continuous(build_policy(specs[target]))

    outcomes: dict[str, pd.DataFrame] = {}
    held_out: list = []
    for name, spec in specs.items():
        batches = held_out if name == target else None
        outcomes[name] = pooled_outcomes(lambda spec=spec: build_policy(spec), config, num_accounts, seeds, batches)
    fitted: list = []
    pooled_outcomes(lambda: build_policy(specs[target]), config, num_accounts, distill_seeds, fitted)
    names = list(obs_index())
    distilled = distill(
        *_stack(fitted, continuous), *_stack(held_out, continuous), feature_names=names, max_depth=max_depth
    )
    tree_name = f"{target}_tree"
    outcomes[tree_name] = pooled_outcomes(lambda: distilled.policy, config, num_accounts, seeds)

    segments = {name: segment_table(frame) for name, frame in outcomes.items()}
    policies = {name: build_policy(spec) for name, spec in specs.items()} | {tree_name: distilled.policy}
    ref = "best_static" if "best_static" in policies else None
    # The evaluator compares every policy with the rule the ratios are set against (its *_vs_rule columns).
    evaluation = evaluate(policies, config, num_accounts, seeds, progress=progress, reference=ref, rule=reference)
    summary = evaluation.summary
    segment_frame = pd.concat([t.assign(policy=n) for n, t in segments.items()], ignore_index=True)
    segment_frame = segment_frame[["policy", *[c for c in segment_frame.columns if c != "policy"]]]
    return Report(
        segment_frame,
        disparity(segments, reference),
        summary,
        distilled,
        target,
        tree_name,
        reference,
        config.env.horizon,
    )


def _stack(batches: list, continuous: bool) -> tuple[np.ndarray, np.ndarray]:
    obs = np.concatenate([o for o, _ in batches]) if batches else np.zeros((0, len(obs_index())))
    actions = np.concatenate([action_labels(a, continuous) for _, a in batches]) if batches else np.zeros(0)
    return obs, actions


# -- writing --------------------------------------------------------------------------------------------
def _fmt(value: float, spec: str) -> str:
    return "-" if value is None or not np.isfinite(value) else spec.format(value)


def segment_markdown(segments: pd.DataFrame) -> str:
    parts = []
    for segment, levels in SEGMENT_LEVELS.items():
        hidden = " (hidden trait: analysis only, no policy sees it)" if segment in HIDDEN_SEGMENTS else " (observed)"
        part = segments[segments["segment"] == segment]
        rows = []
        for policy in dict.fromkeys(part["policy"]):
            for level in levels:
                r = part[(part["policy"] == policy) & (part["level"] == level)].iloc[0]
                row = {"policy": policy, segment: level, "accounts": int(r["accounts"])}
                row |= {label: _fmt(r[key], spec) for key, (label, spec) in SHOWN_OUTCOMES.items()}
                rows.append(row)
        parts.append(f"### By {segment.replace('_', ' ')}{hidden}\n\n" + pd.DataFrame(rows).to_markdown(index=False))
    return "\n\n".join(parts)


def disparity_markdown(frame: pd.DataFrame, reference: str) -> str:
    rows = []
    for (policy, pair), part in frame.groupby(["policy", "pair"], sort=False):
        row = {"policy": policy, "ratio of": pair}
        for _, r in part.iterrows():
            label = SHOWN_OUTCOMES[r["outcome"]][0].split(" [")[0]
            shown = _fmt(r["ratio"], "{:.2f}")
            if policy != reference and np.isfinite(r["vs_reference"]):
                shown += f" ({_fmt(r['vs_reference'], '{:.2f}')}x {reference})"
            row[label] = shown
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False)


def summary_markdown(summary: pd.DataFrame, reference: str) -> str:
    rows = []
    versus_rule = comparison(summary, "rule", reference_policy=reference)
    for r in summary.to_dict("records"):
        versus = versus_rule.loc[r["policy"]].to_dict()
        rows.append(
            {
                "policy": r["policy"],
                "revenue/user [CNY]": f"{r['per_user_revenue']:.1f}",
                "M3+ [%]": f"{100 * r['m3plus_rate']:.2f}",
                "meets cap": "yes" if r["meets_cap"] else "NO",
                f"vs {reference} [95% CI]": format_versus(versus, is_reference=r["policy"] == reference),
            }
        )
    return pd.DataFrame(rows).to_markdown(index=False)


def report_markdown(report: Report, title: str, context: Mapping[str, Any]) -> str:
    d = report.distillation
    target_kind = "agent" if report.target != report.reference else "rule (the run has no trained agent)"
    book = report.summary.set_index("policy")
    revenue, m3 = book["per_user_revenue"].to_dict(), book["m3plus_rate"].to_dict()
    tree_revenue, tree_m3 = revenue[report.tree_name], m3[report.tree_name]
    target_revenue, target_m3 = revenue[report.target], m3[report.target]
    lines = [
        f"# Segment and explainability report: {title}",
        "",
        ", ".join(f"{k}: {v}" for k, v in context.items()),
        "",
        "Revenue and M3+ count over the initial cohort's **whole lives**, in the whole-book table (the "
        f"evaluator's) and in the per-segment tables alike: the {report.window}-month window under the policy, "
        "then the run-off of the balances left at its end. Raise and cut rates, average line and attrition "
        "cover the window, where the policy sets the lines. Segment rates are pooled over accounts and "
        "seeds. Income and risk bands are **hidden traits** (`Simulator.hidden_traits()`), used for this "
        "analysis only: no policy observes them.",
        "",
        "## Whole book",
        "",
        summary_markdown(report.summary, report.reference),
        "",
        "## Per-segment outcomes",
        "",
        segment_markdown(report.segments),
        "",
        f"## Disparity ratios, set against {report.reference}",
        "",
        f"Each cell: the ratio between the two segments, then that ratio divided by {report.reference}'s "
        f"(above 1: a wider gap than {report.reference} has).",
        "",
        disparity_markdown(report.disparity, report.reference),
        "",
        f"## Distilled policy: {report.tree_name}",
        "",
        f"A decision tree fitted to the actions of the {target_kind} `{report.target}` on {d.fitted_on:,} "
        f"observations of distillation seeds; scored on {d.held_out:,} held-out observations of the evaluation "
        "seeds. Actions are line multipliers (x1 holds).",
        "",
        f"- fidelity (agreement with `{report.target}`): **{d.fidelity:.1%}** "
        f"(always taking its most common action: {d.majority_fidelity:.1%})",
        f"- run as a policy: revenue/user {tree_revenue:.1f} CNY and M3+ {tree_m3:.2%}, against "
        f"{report.target}'s {target_revenue:.1f} CNY and {target_m3:.2%}",
        "",
        "```",
        d.rules.rstrip(),
        "```",
        "",
        "![segments](figures/segments.png)",
        "",
    ]
    return "\n".join(lines)


def plot_segments(segments: pd.DataFrame, title: str) -> Any:
    """Raise rate, cut rate and average line by segment level, one bar per policy."""
    from agents.plots import new_figure, policy_colours

    figure = new_figure(12, 9.5)
    axes = figure.subplots(3, len(SEGMENT_LEVELS), squeeze=False)
    policies = list(dict.fromkeys(segments["policy"]))
    colours = policy_colours(policies)
    width = 0.8 / len(policies)
    for j, (segment, levels) in enumerate(SEGMENT_LEVELS.items()):
        for i, (metric, scale, label) in enumerate(
            (
                ("raise_rate", 100.0, "raises [% of account-months]"),
                ("cut_rate", 100.0, "cuts [% of account-months]"),
                ("average_line", 1.0, "average line [CNY]"),
            )
        ):
            ax = axes[i, j]
            for k, policy in enumerate(policies):
                part = segments[(segments["policy"] == policy) & (segments["segment"] == segment)]
                values = part.set_index("level").reindex(levels)[metric].to_numpy(dtype=float) * scale
                ax.bar(np.arange(len(levels)) + k * width, values, width, label=policy, color=colours[policy])
            ax.set_xticks(np.arange(len(levels)) + 0.4 - width / 2, levels)
            hidden = " (hidden)" if segment in HIDDEN_SEGMENTS else ""
            ax.set_title(f"{segment}{hidden}", fontsize=9)
            ax.set_ylabel(label)
    axes[0, 0].legend(fontsize=7)
    figure.suptitle(title)
    return figure


def write_report(report: Report, folder: str | Path, title: str, context: Mapping[str, Any]) -> Path:
    """``folder/report.md`` with its tables as CSV and ``figures/segments.png``; returns the markdown's path."""
    from agents.atomic_io import save_figure, write_csv, write_text

    folder = Path(folder)
    write_csv(folder / "segments.csv", report.segments)
    write_csv(folder / "disparity.csv", report.disparity)
    write_csv(folder / "summary.csv", report.summary)
    write_text(folder / "distilled_rules.txt", report.distillation.rules)
    save_figure(folder / "figures" / "segments.png", plot_segments(report.segments, title))
    return write_text(folder / "report.md", report_markdown(report, title, context))
