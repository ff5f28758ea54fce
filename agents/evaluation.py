"""The one evaluator: every policy, baseline or trained, on the same accounts and shocks, across seeds.

For each evaluation seed ``s`` and each policy, a fresh ``make_portfolio`` is built on the account block of
``s`` (:func:`portfolio_seed`) with the macro path ``macro.seed = s``, so every policy meets the same
accounts, the same replacements and the same macro regime (common random numbers; actions never feed the
random stream). Per policy and seed the evaluator computes revenue, the capped M3+ rate and the book's
shape; across seeds it reports means with BCa bootstrap confidence intervals (``agents.bootstrap``), and
each policy's paired difference from a reference (``best_static``) and from the rule (``rule``), and its
share of the oracle's gain (``oracle``).

Whole-life accounting (``agents.cohort``): the initial cohort is followed under the policy for the window
(``months``, default ``env.horizon``), then its open accounts run off with their lines frozen until each is
repaid or charged off; revenue, credit losses and M3+ count over these whole lives.

Seeds. Account ``i`` of ``make_portfolio(seed=k)`` is keyed on ``k + i``, so portfolios seeded 0 and 1
share all but one account. An evaluation seed ``s`` therefore owns the block ``[s * 2**32, s * 2**32 +
num_accounts)`` of account keys: seeds are labels 0, 1, 2, ... whose accounts never overlap. Training code
should build its portfolios through :func:`portfolio_seed` too, or it may train on evaluation accounts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import envs
from agents.bootstrap import PairedDifference, bootstrap_ci, mean_intervals, paired_difference
from agents.cohort import METRICS, RUN_OFF_MONTHS, SEGMENTS, cohort_metrics, monthly_table, run_cohort
from agents.policies import Policy, is_continuous
from envs.config import Config, resolve_config

__all__ = [
    "evaluate",
    "Evaluation",
    "portfolio_seed",
    "check_disjoint",
    "split_seeds",
    "SeedSplit",
    "bootstrap_ci",
    "paired_difference",
    "PairedDifference",
    "RUN_OFF_MONTHS",
    "SEGMENTS",
    "METRICS",
]

SEED_BLOCK = 2**32  # account keys owned by one evaluation seed


# -- seeds ------------------------------------------------------------------------------------------------
def portfolio_seed(seed: int) -> int:
    """The ``make_portfolio`` seed of evaluation (or training) seed ``seed``: the start of its account block."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < SEED_BLOCK:
        raise ValueError(f"seeds must be integers in [0, 2**32), got {seed!r}")
    return int(seed) * SEED_BLOCK


def check_disjoint(**seed_sets: Iterable[int]) -> None:
    """Raise ValueError if any two named seed sets share a seed, e.g. ``check_disjoint(tuning=a, evaluation=b)``."""
    named = {name: set(int(s) for s in seeds) for name, seeds in seed_sets.items()}
    names = list(named)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = named[a] & named[b]
            if common:
                raise ValueError(
                    f"{a} and {b} seeds overlap on {sorted(common)[:10]}"
                    f"{' ...' if len(common) > 10 else ''}; they must be disjoint"
                )


class SeedSplit(NamedTuple):
    """Disjoint seed ranges: ``training`` for agents, ``tuning`` for baselines, ``evaluation`` for results."""

    training: tuple[int, ...]
    tuning: tuple[int, ...]
    evaluation: tuple[int, ...]


def split_seeds(training: int, tuning: int, evaluation: int, start: int = 0) -> SeedSplit:
    """Consecutive, disjoint seed ranges of the given sizes, starting at ``start``.

    Args:
        training, tuning, evaluation: how many seeds each range holds (non-negative).
        start: the first seed.
    """
    sizes = {"training": training, "tuning": tuning, "evaluation": evaluation}
    for name, size in sizes.items():
        if not isinstance(size, (int, np.integer)) or size < 0:
            raise ValueError(f"{name} must be a non-negative number of seeds, got {size!r}")
    portfolio_seed(start)
    portfolio_seed(start + training + tuning + evaluation)
    a, b = start + training, start + training + tuning
    split = SeedSplit(tuple(range(start, a)), tuple(range(a, b)), tuple(range(b, b + evaluation)))
    check_disjoint(**split._asdict())
    return split


# -- the evaluator ----------------------------------------------------------------------------------------
class Evaluation(NamedTuple):
    """What :func:`evaluate` returns. Rates and uplift are fractions; revenue is CNY per account.

    - ``summary``: one row per policy; means over seeds with ``*_ci_low`` / ``*_ci_high`` (95% BCa bootstrap
      over seeds, NaN with one seed), ``cap``, ``meets_cap`` (mean whole-life M3+ rate <= cap),
      ``meets_cap_share`` (share of seeds meeting it); against the reference ``revenue_diff_vs_best_static``
      [CNY per user] (``revenue_diff_ci_low/high``) and ``uplift_vs_best_static`` (``uplift_ci_low/high``);
      against the rule ``revenue_diff_vs_rule`` and ``uplift_vs_rule`` (with ``_ci_low/_ci_high``), all
      paired-bootstrap intervals; ``comparison_vs_best_static`` / ``comparison_vs_rule`` name the column a
      table should show: ``uplift``, or ``revenue_diff`` when the reference's revenue is not positive on
      every seed (a relative uplift over a loss means nothing, and a resample of those seeds has none);
      ``oracle_share`` = (policy - reference) / (oracle - reference) on mean per-user revenue (NaN without
      an oracle, or when the oracle does not beat the reference).
    - ``per_seed``: one row per policy and seed.
    - ``monthly``: policy, seed, month (by the cohort's age, 1 .. the longest run's last month, the same for
      every run: a run's months after its last cohort account ended earn 0 and have no rates), ``phase``
      (``window`` or ``run_off``) and that month's ``revenue_per_user`` (cohort revenue / cohort size,
      summing to ``per_user_revenue``), ``m3plus_rate``, ``m3plus_rate_accounts``, ``average_line``,
      ``utilisation``, ``macro_stress`` (empty for months not simulated).
    - ``by_segment``: policy, segment (age_band, city_tier, thin_file), level, ``cohort_accounts`` and every
      metric, mean and CI over seeds.
    """

    summary: pd.DataFrame
    per_seed: pd.DataFrame
    monthly: pd.DataFrame
    by_segment: pd.DataFrame


def aggregate_seeds(
    per_seed: pd.DataFrame, keys: list[str], metrics: Sequence[str], rng: np.random.Generator, n_boot: int
) -> pd.DataFrame:
    """One row per ``keys`` group of ``per_seed``: each metric's mean over the seeds (NaN ignored) and its
    bootstrap interval (``<metric>_ci_low`` / ``_ci_high``, ``n_boot`` resamples of the seeds from ``rng``)."""
    rows = []
    for key, group in per_seed.groupby(keys, sort=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        values = group[list(metrics)].to_numpy(dtype=np.float64).T  # (metrics, seeds)
        low, high = mean_intervals(values, rng, n_boot)  # one resampling of the seeds for every metric
        for i, m in enumerate(metrics):
            finite = values[i][~np.isnan(values[i])]
            row[m] = float(finite.mean()) if finite.size else float("nan")
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = float(low[i]), float(high[i])
        rows.append(row)
    return pd.DataFrame(rows)


def validate_evaluation(
    policies: Mapping[str, Policy],
    num_accounts: int,
    seeds: Sequence[int],
    months: int,
    horizon: int,
    run_off_months: int,
    names: Mapping[str, str | None],
) -> None:
    """Raise ValueError / TypeError naming the bad argument of an evaluation (``names``: role -> policy name)."""
    if not isinstance(policies, Mapping) or not policies:
        raise ValueError("policies must be a non-empty dict of name -> policy")
    for name, policy in policies.items():
        if not callable(getattr(policy, "predict", None)):
            raise TypeError(f"policy '{name}' has no predict() method (got {type(policy).__name__})")
    for role, given in names.items():
        if given is not None and not isinstance(given, str):
            raise TypeError(f"{role} must be a policy name or None, got {given!r}")
    if not isinstance(num_accounts, (int, np.integer)) or num_accounts < 1:
        raise ValueError(f"num_accounts must be a positive integer, got {num_accounts!r}")
    if not isinstance(months, (int, np.integer)) or not 1 <= months <= horizon:
        raise ValueError(
            f"months must be an integer in [1, env.horizon = {horizon}], got {months!r}: an account's life "
            "under the policy ends at the horizon, and its balance then runs off"
        )
    if not isinstance(run_off_months, (int, np.integer)) or run_off_months < 0:
        raise ValueError(f"run_off_months must be a non-negative integer, got {run_off_months!r}")
    if len(seeds) == 0:
        raise ValueError("seeds must hold at least one evaluation seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")
    for s in seeds:
        portfolio_seed(s)


def evaluate(
    policies: Mapping[str, Policy],
    config: Config | str,
    num_accounts: int,
    seeds: Sequence[int],
    months: int | None = None,
    progress: bool = True,
    reference: str | None = "best_static",
    rule: str | None = "rule",
    oracle: str | None = "oracle",
    run_off_months: int = RUN_OFF_MONTHS,
    n_boot: int = 2000,
    bootstrap_seed: int = 0,
) -> Evaluation:
    """Run every policy on the same portfolios and summarise revenue and risk across seeds.

    Per-user revenue is **cohort-based and whole-life**: the ``num_accounts`` accounts open at the start
    are followed under the policy until each ends (closure, charge-off) or the window ends, then run off
    (module docstring), and their total ``revenue`` (interest + fees - funding - net credit loss -
    acquisition cost) is divided by ``num_accounts``: the lifetime revenue per acquired user of DOMAIN.md
    section 2. Why not "window revenue / accounts acquired in the window": replacements acquired late in
    the window pay their acquisition cost but earn only a few months, so that ratio moves with how many
    accounts a policy churns, not only with what an account is worth; the cohort is also identical for
    every policy, which keeps the comparison paired.

    - ``m3plus_rate``: sum over the cohort's months (window and run-off) of the balance in M3..M5 / sum of
      the total month-end balance; ``m3plus_rate_normal`` / ``m3plus_rate_stress`` pool only the months of
      one macro regime (NaN if a run had none).
    - ``m3plus_rate_accounts``: M3..M5 accounts / open accounts, summed over the same months.
    - ``utilisation`` (sum of balance / sum of line) and ``average_line`` [CNY] over the window's open
      account-months; ``attrition_rate``: closures in the window per account-year in the window (a run-off
      account that repays is not attrition); ``charge_off_rate``: charge-offs per account-year over the
      whole lives.
    - ``run_off_revenue`` [CNY per user]: the part of ``per_user_revenue`` earned in the run-off;
      ``run_off_left``: share of the cohort still open when the run-off bound was reached (0 normally).

    Args:
        policies: name -> anything with SB3's ``predict`` (a baseline from ``agents.policies`` or a trained
            model); a policy with ``continuous`` True or a Box ``action_space`` gets Box-action portfolios.
            A policy with a ``bind_simulator(sim)`` method is handed each run's simulator after the reset,
            before its first ``predict`` (a privileged policy that reads hidden state: the oracle).
        config: a preset name or ``Config``; its ``env.m3plus_cap`` is the cap.
        num_accounts: accounts in each portfolio (slots: an account that ends is replaced).
        seeds: evaluation seeds (labels, see :func:`portfolio_seed`); keep them disjoint from training seeds.
        months: the evaluation window, months under the policy, at most and by default ``env.horizon``.
        progress: show a tqdm bar over (seed, policy) runs.
        reference: the policy others are compared with (paired over seeds), the ``*_vs_best_static`` columns;
            None, or a name not among the policies, leaves them NaN.
        rule: the policy of the ``*_vs_rule`` columns (same rules).
        oracle: the upper bound of ``oracle_share`` (same rules).
        run_off_months: bound on the run-off after the window [months]; 0 counts the window alone.
        n_boot: bootstrap resamples.
        bootstrap_seed: seed of the bootstrap's generator.

    Returns:
        An :class:`Evaluation` of DataFrames. With a single seed every CI is NaN (there is no spread to
        resample: accounts within a seed share one macro path, so resampling them would understate it);
        with few seeds (under about 5) bootstrap intervals are too narrow.
    """
    config = resolve_config(config)
    months = config.env.horizon if months is None else months
    seeds = list(seeds)
    validate_evaluation(
        policies,
        num_accounts,
        seeds,
        months,
        config.env.horizon,
        run_off_months,
        {"reference": reference, "rule": rule, "oracle": oracle},
    )
    cap = config.env.m3plus_cap
    labels = [f"{segment}={level}" for segment, levels in SEGMENTS.items() for level in levels]
    per_seed, monthly, segment_rows = [], [], []
    simulated = 0  # the longest run [months]: every run's monthly table is cut there
    bar = tqdm(total=len(seeds) * len(policies), desc="evaluate", disable=not progress)
    for seed in seeds:
        first_obs = None
        for name, policy in policies.items():
            venv = envs.make_portfolio(
                config,
                num_accounts,
                seed=portfolio_seed(seed),
                continuous=is_continuous(policy),
                **{"macro.seed": int(seed)},
            )
            run = run_cohort(policy, venv, months, run_off_months)
            if first_obs is not None and not np.array_equal(first_obs, run.first_obs):
                raise RuntimeError(
                    f"policy '{name}' saw different accounts on seed {seed}: common random numbers are broken"
                )
            first_obs = run.first_obs
            metrics = cohort_metrics(run)
            per_seed.append(
                {
                    "policy": name,
                    "seed": seed,
                    **{m: float(v[0]) for m, v in metrics.items()},
                    "meets_cap": bool(metrics["m3plus_rate"][0] <= cap),
                }
            )
            for g, label in enumerate(labels, start=1):
                segment, level = label.split("=")
                segment_rows.append(
                    {
                        "policy": name,
                        "seed": seed,
                        "segment": segment,
                        "level": level,
                        "cohort_accounts": float(run.cohort_size[g]),
                        **{m: float(v[g]) for m, v in metrics.items()},
                    }
                )
            monthly.append(monthly_table(name, seed, run, num_accounts))
            simulated = max(simulated, run.simulated)
            bar.update()
    bar.close()

    per_seed_df = pd.DataFrame(per_seed)
    rng = np.random.default_rng(bootstrap_seed)
    summary = aggregate_seeds(per_seed_df, ["policy"], METRICS, rng, n_boot)
    summary["cap"] = cap
    summary["meets_cap"] = summary["m3plus_rate"] <= cap
    summary["meets_cap_share"] = summary["policy"].map(per_seed_df.groupby("policy")["meets_cap"].mean())
    names = set(policies)
    reference = reference if reference in names else None
    rule = rule if rule in names else None
    oracle = oracle if oracle in names else None
    summary = summary.join(_versus(per_seed_df, reference, _VERSUS_REFERENCE, rng, n_boot), on="policy")
    summary = summary.join(_versus(per_seed_df, rule, _VERSUS_RULE, rng, n_boot), on="policy")
    summary["oracle_share"] = _oracle_share(summary, reference, oracle)
    by_segment = aggregate_seeds(
        pd.DataFrame(segment_rows), ["policy", "segment", "level"], ("cohort_accounts", *METRICS), rng, n_boot
    )
    by_segment = by_segment.drop(columns=["cohort_accounts_ci_low", "cohort_accounts_ci_high"])
    months_table = pd.concat(monthly, ignore_index=True)
    months_table = months_table[months_table["month"] <= simulated].reset_index(drop=True)
    return Evaluation(summary, per_seed_df, months_table, by_segment)


# Column names of the paired comparisons: difference, its CI, uplift, its CI, and which of the two to show.
_VERSUS_REFERENCE = (
    "revenue_diff_vs_best_static",
    "revenue_diff_ci_low",
    "revenue_diff_ci_high",
    "uplift_vs_best_static",
    "uplift_ci_low",
    "uplift_ci_high",
    "comparison_vs_best_static",
)
_VERSUS_RULE = (
    "revenue_diff_vs_rule",
    "revenue_diff_vs_rule_ci_low",
    "revenue_diff_vs_rule_ci_high",
    "uplift_vs_rule",
    "uplift_vs_rule_ci_low",
    "uplift_vs_rule_ci_high",
    "comparison_vs_rule",
)


def _versus(
    per_seed: pd.DataFrame, against: str | None, columns: Sequence[str], rng: np.random.Generator, n_boot: int
) -> pd.DataFrame:
    """Paired comparison of each policy's per-user revenue with policy ``against`` on the same seeds."""
    table = per_seed.pivot(index="seed", columns="policy", values="per_user_revenue")
    rows: dict[str, list] = {}
    # The relative uplift when the reference earns more than zero on every seed (so in every resample: its
    # interval is defined); otherwise a ratio over a loss would mean nothing, and the CNY difference is shown.
    shown = "uplift" if against is not None and (table[against] > 0).all() else "revenue_diff"
    for name in table.columns:
        if against is None:
            rows[name] = [float("nan")] * (len(columns) - 1) + [None]
            continue
        d = paired_difference(table[name].to_numpy(), table[against].to_numpy(), rng, n_boot)
        rows[name] = [d.difference, *d.difference_ci, d.uplift, *d.uplift_ci, shown]
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(columns))


def _oracle_share(summary: pd.DataFrame, reference: str | None, oracle: str | None) -> pd.Series:
    """(policy - reference) / (oracle - reference) on mean per-user revenue; NaN unless the oracle gains."""
    if reference is None or oracle is None:
        return pd.Series(np.nan, index=summary.index)
    revenue = summary.set_index("policy")["per_user_revenue"]
    gain = revenue[oracle] - revenue[reference]
    if not gain > 0:
        return pd.Series(np.nan, index=summary.index)
    return (summary["per_user_revenue"] - revenue[reference]) / gain
