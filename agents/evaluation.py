"""The one evaluator: every policy, baseline or trained, on the same accounts and shocks, across seeds.

For each evaluation seed ``s`` and each policy, a fresh ``make_portfolio`` is built on the account block of
``s`` (:func:`portfolio_seed`) with the macro path ``macro.seed = s``, so every policy meets the same
accounts, the same replacements and the same macro regime (common random numbers; actions never feed the
random stream). Per policy and seed the evaluator computes revenue, the capped M3+ rate and the book's
shape; across seeds it reports means with percentile-bootstrap confidence intervals, and each policy's
paired difference from a reference policy (``best_static``).

Seeds. Account ``i`` of ``make_portfolio(seed=k)`` is keyed on ``k + i``, so portfolios seeded 0 and 1
share all but one account. An evaluation seed ``s`` therefore owns the block ``[s * 2**32, s * 2**32 +
num_accounts)`` of account keys: seeds are labels 0, 1, 2, ... whose accounts never overlap. Training code
should build its portfolios through :func:`portfolio_seed` too, or it may train on evaluation accounts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import envs
from agents.policies import Policy, is_continuous, obs_index
from envs.config import AGE_BANDS, CITY_TIERS, Config, resolve_config

SEED_BLOCK = 2**32  # account keys owned by one evaluation seed
SEGMENTS: dict[str, tuple[str, ...]] = {"age_band": AGE_BANDS, "city_tier": CITY_TIERS, "thin_file": ("no", "yes")}
M3PLUS_BUCKETS = (3, 5)  # months past due counted as M3+ (6 is charged off and off the book)
CHARGED_OFF = 6  # months_past_due reported for a charge-off
METRICS = (
    "per_user_revenue",
    "m3plus_rate",
    "m3plus_rate_accounts",
    "utilisation",
    "average_line",
    "attrition_rate",
    "charge_off_rate",
)


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


# -- bootstrap --------------------------------------------------------------------------------------------
def bootstrap_ci(
    values: Sequence[float], rng: np.random.Generator, n_boot: int = 2000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``values`` (NaN, NaN with fewer than two).

    Args:
        values: one number per independent unit (here: per seed).
        rng: the generator the resamples come from (seed it for reproducible intervals).
        n_boot: bootstrap resamples.
        level: coverage, e.g. 0.95.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return float("nan"), float("nan")
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


class PairedDifference(NamedTuple):
    """``a`` against reference ``b`` on the same seeds: mean difference and relative uplift, with CIs."""

    difference: float
    difference_ci: tuple[float, float]
    uplift: float  # mean(a) / mean(b) - 1, NaN when mean(b) <= 0
    uplift_ci: tuple[float, float]


def paired_difference(
    a: Sequence[float], b: Sequence[float], rng: np.random.Generator, n_boot: int = 2000, level: float = 0.95
) -> PairedDifference:
    """Paired percentile bootstrap: the same resampled seeds for ``a`` and ``b``.

    The uplift is a ratio of means, undefined (NaN) when the reference's mean is not positive.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"paired samples need two equal-length non-empty 1-d arrays, got {x.shape} and {y.shape}")
    nan2 = (float("nan"), float("nan"))
    diff = float(np.mean(x - y))
    ref = float(np.mean(y))
    uplift = diff / ref if ref > 0 else float("nan")
    if x.size < 2:
        return PairedDifference(diff, nan2, uplift, nan2)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    d = (x[idx] - y[idx]).mean(axis=1)
    r = y[idx].mean(axis=1)
    u = np.where(r > 0, d / np.where(r > 0, r, 1.0), np.nan)
    tail = (1 - level) / 2 * 100
    diff_ci = tuple(float(v) for v in np.percentile(d, [tail, 100 - tail]))
    uplift_ci = tuple(float(v) for v in np.nanpercentile(u, [tail, 100 - tail])) if ref > 0 else nan2
    return PairedDifference(diff, diff_ci, uplift, uplift_ci)


# -- one run ----------------------------------------------------------------------------------------------
def _groups(obs: np.ndarray) -> np.ndarray:
    """Indicator matrix (n, groups): column 0 is every account, then one column per segment level."""
    col, offset = obs_index(), 1
    member = np.zeros((len(obs), _NUM_GROUPS))
    member[:, 0] = 1.0
    rows = np.arange(len(obs))
    for name, levels in SEGMENTS.items():
        member[rows, offset + obs[:, col[name]].astype(np.int64)] = 1.0
        offset += len(levels)
    return member


_NUM_GROUPS = 1 + sum(len(levels) for levels in SEGMENTS.values())
_SUMS = ("m3_balance", "balance", "m3_accounts", "open_accounts", "line", "closures", "charge_offs", "account_months")


@dataclass
class _Run:
    """Sums of one policy on one seed: ``sums[name]`` has shape (months, groups); cohort revenue by group."""

    sums: dict[str, np.ndarray]
    cohort_revenue: np.ndarray  # (months, groups) [CNY] revenue of the initial cohort
    cohort_size: np.ndarray  # (groups,)
    first_obs: np.ndarray  # the observation at reset (for checks that every policy saw the same accounts)


def _run(policy: Policy, config: Config, num_accounts: int, seed: int, months: int) -> _Run:
    venv = envs.make_portfolio(
        config, num_accounts, seed=portfolio_seed(seed), continuous=is_continuous(policy), **{"macro.seed": int(seed)}
    )
    obs = venv.reset()
    bind = getattr(policy, "bind_simulator", None)
    if callable(bind):  # a privileged policy (the oracle) reads hidden state from this run's simulator
        bind(venv.sim)
    first_obs = obs.copy()
    cohort_groups = _groups(obs)
    alive = np.ones(num_accounts, dtype=bool)  # slot still holds its initial (cohort) account
    sums = {name: np.zeros((months, _NUM_GROUPS)) for name in _SUMS}
    cohort_revenue = np.zeros((months, _NUM_GROUPS))
    state, episode_start = None, np.ones(num_accounts, dtype=bool)
    ones = np.ones(num_accounts)
    for t in range(months):
        actions, state = policy.predict(obs, state=state, episode_start=episode_start, deterministic=True)
        groups = _groups(obs)  # segments of the accounts acting this month (fixed over an account's life)
        obs, _, dones, infos = venv.step(actions)
        info = venv.last_info
        mpd, balance, line = info["months_past_due"], info["balance"], info["line"]
        done_idx = np.flatnonzero(dones)
        truncated = np.zeros(num_accounts, dtype=bool)
        truncated[done_idx] = [infos[i]["TimeLimit.truncated"] for i in done_idx]
        charged_off = mpd == CHARGED_OFF
        closed = dones & ~truncated & ~charged_off
        is_open = ~(charged_off | closed)  # still on the book at month end
        m3 = (mpd >= M3PLUS_BUCKETS[0]) & (mpd <= M3PLUS_BUCKETS[1]) & (balance > 0)
        weights = np.column_stack(
            [
                np.where(m3, balance, 0.0),
                balance,
                m3 & is_open,
                is_open,
                np.where(is_open, line, 0.0),
                closed,
                charged_off,
                ones,
            ]
        )
        weights *= alive[:, None]  # the cohort only: see evaluate()
        for name, total in zip(_SUMS, (groups.T @ weights).T, strict=False):  # one matrix product sums every group
            sums[name][t] = total
        cohort_revenue[t] = cohort_groups.T @ np.where(alive, info["revenue"], 0.0)
        alive &= ~dones
        episode_start = dones
    return _Run(sums, cohort_revenue, cohort_groups.sum(axis=0), first_obs)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(np.shape(num), np.nan), where=np.asarray(den) > 0)


def _metrics(run: _Run) -> dict[str, np.ndarray]:
    """Window metrics of a run, one value per group (all accounts, then each segment level)."""
    total = {name: s.sum(axis=0) for name, s in run.sums.items()}
    years = total["account_months"] / 12
    return {
        "per_user_revenue": _ratio(run.cohort_revenue.sum(axis=0), run.cohort_size),
        "m3plus_rate": _ratio(total["m3_balance"], total["balance"]),
        "m3plus_rate_accounts": _ratio(total["m3_accounts"], total["open_accounts"]),
        "utilisation": _ratio(total["balance"], total["line"]),
        "average_line": _ratio(total["line"], total["open_accounts"]),
        "attrition_rate": _ratio(total["closures"], years),
        "charge_off_rate": _ratio(total["charge_offs"], years),
    }


# -- the evaluator ----------------------------------------------------------------------------------------
class Evaluation(NamedTuple):
    """What :func:`evaluate` returns. Rates and uplift are fractions; revenue is CNY per account.

    - ``summary``: one row per policy; means over seeds with ``*_ci_low`` / ``*_ci_high`` (95% percentile
      bootstrap over seeds, NaN with one seed), ``cap``, ``meets_cap`` (mean pooled M3+ rate <= cap),
      ``meets_cap_share`` (share of seeds meeting it), and against the reference ``revenue_diff_vs_best_static``
      and ``uplift_vs_best_static`` with their paired-bootstrap CIs.
    - ``per_seed``: one row per policy and seed.
    - ``monthly``: policy, seed, month (1..months) and that month's ``revenue_per_user`` (cohort revenue / cohort
      size, summing to ``per_user_revenue``), ``m3plus_rate``, ``m3plus_rate_accounts``, ``average_line``,
      ``utilisation``.
    - ``by_segment``: policy, segment (age_band, city_tier, thin_file), level, ``cohort_accounts`` and every
      metric, mean and CI over seeds.
    """

    summary: pd.DataFrame
    per_seed: pd.DataFrame
    monthly: pd.DataFrame
    by_segment: pd.DataFrame


def _aggregate(
    per_seed: pd.DataFrame, keys: list[str], metrics: Sequence[str], rng: np.random.Generator, n_boot: int
) -> pd.DataFrame:
    rows = []
    for key, group in per_seed.groupby(keys, sort=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=False))
        for m in metrics:
            values = group[m].dropna().to_numpy()
            row[m] = float(values.mean()) if values.size else float("nan")
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = bootstrap_ci(values, rng, n_boot)
        rows.append(row)
    return pd.DataFrame(rows)


def _validate(
    policies: Mapping[str, Policy], num_accounts: int, seeds: Sequence[int], months: int, reference: str | None
) -> None:
    if not isinstance(policies, Mapping) or not policies:
        raise ValueError("policies must be a non-empty dict of name -> policy")
    for name, policy in policies.items():
        if not callable(getattr(policy, "predict", None)):
            raise TypeError(f"policy '{name}' has no predict() method (got {type(policy).__name__})")
    if reference is not None and reference not in policies:
        raise ValueError(
            f"reference policy '{reference}' is not among the policies {list(policies)}; add it or pass reference=None"
        )
    if not isinstance(num_accounts, (int, np.integer)) or num_accounts < 1:
        raise ValueError(f"num_accounts must be a positive integer, got {num_accounts!r}")
    if not isinstance(months, (int, np.integer)) or months < 1:
        raise ValueError(f"months must be a positive integer, got {months!r}")
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
    n_boot: int = 2000,
    bootstrap_seed: int = 0,
) -> Evaluation:
    """Run every policy on the same portfolios and summarise revenue and risk across seeds.

    Per-user revenue is **cohort-based**: the ``num_accounts`` accounts open at the start are followed
    until each ends (closure, charge-off, horizon) or the window ends, and their total ``revenue`` (interest
    + fees - funding - net credit loss - acquisition cost) is divided by ``num_accounts``. Why not "window
    revenue / accounts acquired in the window": replacements acquired late in the window pay their
    acquisition cost but earn only a few months, so that ratio mixes whole and truncated lives and moves
    with how many accounts a policy churns, not only with what an account is worth. With the default
    ``months = env.horizon`` every cohort life is complete, which is the lifetime revenue per acquired user
    of DOMAIN.md section 2; the cohort is also identical for every policy, which keeps the comparison
    paired. Book metrics (M3+ rates, utilisation, line, attrition, charge-offs) are pooled over the same
    cohort's account-months. Why the cohort and not the whole book: a run starts from a new book, so the
    replacements are young and the book's M3+ rate over the window understates a seasoned book's; pooled
    over complete lives, by the renewal-reward argument, the cohort's ratio equals the steady-state rate of a
    book that replaces its accounts, which is what the presets are calibrated to (scripts/calibration_table.py).

    - ``m3plus_rate``: sum over months of the balance in M3..M5 / sum of the total month-end balance.
    - ``m3plus_rate_accounts``: M3..M5 accounts / open accounts, summed over months.
    - ``utilisation``: sum of balance / sum of line; ``average_line`` [CNY] over open account-months.
    - ``attrition_rate`` and ``charge_off_rate``: closures (terminated, not charged off) and charge-offs
      per account-year.

    Args:
        policies: name -> anything with SB3's ``predict`` (a baseline from ``agents.policies`` or a trained
            model); a policy with ``continuous`` True or a Box ``action_space`` gets Box-action portfolios.
        config: a preset name or ``Config``; its ``env.m3plus_cap`` is the cap.
        num_accounts: accounts in each portfolio (slots: an account that ends is replaced).
        seeds: evaluation seeds (labels, see :func:`portfolio_seed`); keep them disjoint from training seeds.
        months: months simulated per run; default ``config.env.horizon``.
        progress: show a tqdm bar over (seed, policy) runs.
        reference: the policy others are compared with (paired over seeds); None for no comparison.
        n_boot: bootstrap resamples.
        bootstrap_seed: seed of the bootstrap's generator.

    Returns:
        An :class:`Evaluation` of DataFrames. The ``*_vs_best_static`` columns compare with ``reference``
        whatever its name (NaN when it is None). With a single seed every CI is NaN (there is no spread to
        resample: accounts within a seed share one macro path, so resampling them would understate it);
        with few seeds (under about 5) the percentile bootstrap gives intervals that are too narrow.

    The ``monthly`` path is by month since the cohort's origination (its age).
    """
    config = resolve_config(config)
    months = config.env.horizon if months is None else months
    seeds = list(seeds)
    _validate(policies, num_accounts, seeds, months, reference)
    cap = config.env.m3plus_cap
    labels = [f"{segment}={level}" for segment, levels in SEGMENTS.items() for level in levels]
    per_seed, monthly, segment_rows = [], [], []
    bar = tqdm(total=len(seeds) * len(policies), desc="evaluate", disable=not progress)
    for seed in seeds:
        first_obs = None
        for name, policy in policies.items():
            run = _run(policy, config, num_accounts, seed, months)
            if first_obs is not None and not np.array_equal(first_obs, run.first_obs):
                raise RuntimeError(
                    f"policy '{name}' saw different accounts on seed {seed}: common random numbers are broken"
                )
            first_obs = run.first_obs
            metrics = _metrics(run)
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
            s = run.sums
            monthly.append(
                pd.DataFrame(
                    {
                        "policy": name,
                        "seed": seed,
                        "month": np.arange(1, months + 1),
                        "revenue_per_user": run.cohort_revenue[:, 0] / num_accounts,
                        "m3plus_rate": _ratio(s["m3_balance"][:, 0], s["balance"][:, 0]),
                        "m3plus_rate_accounts": _ratio(s["m3_accounts"][:, 0], s["open_accounts"][:, 0]),
                        "average_line": _ratio(s["line"][:, 0], s["open_accounts"][:, 0]),
                        "utilisation": _ratio(s["balance"][:, 0], s["line"][:, 0]),
                    }
                )
            )
            bar.update()
    bar.close()

    per_seed_df = pd.DataFrame(per_seed)
    rng = np.random.default_rng(bootstrap_seed)
    summary = _aggregate(per_seed_df, ["policy"], METRICS, rng, n_boot)
    summary["cap"] = cap
    summary["meets_cap"] = summary["m3plus_rate"] <= cap
    summary["meets_cap_share"] = summary["policy"].map(per_seed_df.groupby("policy")["meets_cap"].mean())
    summary = summary.join(_versus(per_seed_df, reference, rng, n_boot), on="policy")
    by_segment = _aggregate(
        pd.DataFrame(segment_rows), ["policy", "segment", "level"], ("cohort_accounts", *METRICS), rng, n_boot
    )
    by_segment = by_segment.drop(columns=["cohort_accounts_ci_low", "cohort_accounts_ci_high"])
    return Evaluation(summary, per_seed_df, pd.concat(monthly, ignore_index=True), by_segment)


def _versus(per_seed: pd.DataFrame, reference: str | None, rng: np.random.Generator, n_boot: int) -> pd.DataFrame:
    """Paired comparison of each policy's per-user revenue with ``reference`` on the same seeds."""
    columns = [
        "revenue_diff_vs_best_static",
        "revenue_diff_ci_low",
        "revenue_diff_ci_high",
        "uplift_vs_best_static",
        "uplift_ci_low",
        "uplift_ci_high",
    ]
    table = per_seed.pivot(index="seed", columns="policy", values="per_user_revenue")
    rows = {}
    for name in table.columns:
        if reference is None:
            rows[name] = [float("nan")] * len(columns)
            continue
        d = paired_difference(table[name].to_numpy(), table[reference].to_numpy(), rng, n_boot)
        rows[name] = [d.difference, *d.difference_ci, d.uplift, *d.uplift_ci]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)
