"""Who gains and who loses: each policy's outcomes by segment, and disparity ratios between segments.

The evaluator reports whole-book numbers and the observed segments; a risk committee also asks about
segments the lender does not see. :func:`cohort_outcomes` therefore follows every account of the initial
cohort (as the evaluator does: same portfolios, same seeds, same cohort) and records its own outcome,
with its hidden income and latent risk read from ``Simulator.hidden_traits()``. Those two are **hidden
traits, used for the analysis only**: no policy sees them. Like the evaluator (``agents.cohort``), revenue
and M3+ count over the accounts' **whole lives**: the window (``env.horizon`` months under the policy), then
the run-off of the balances left at its end (lines frozen, up to ``RUN_OFF_MONTHS``); raises, cuts, the
average line and attrition are window measures, where the policy sets the lines. Summed over the segments
of one seed, revenue per user is the evaluator's ``per_user_revenue``.

Segments:

| segment | levels | seen by the lender |
|---|---|---|
| ``file`` | full-file, thin-file | yes (observation ``thin_file``) |
| ``income_band`` | low < 5,000, middle 5,000-10,000, high >= 10,000 CNY/month | no (hidden trait) |
| ``risk_band`` | low < -0.5, middle, high > 0.5 sd of latent risk | no (hidden trait) |

Income bands are an assumption: cut points around the tier medians (5,500 / 8,000 / 12,000 CNY, configs/
base.yaml). Risk bands: half a standard deviation either side of the population centre (assumption).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

import envs
from agents.cohort import CHARGED_OFF, M3PLUS_BUCKETS, RUN_OFF_MONTHS, _multipliers
from agents.evaluation import portfolio_seed
from agents.policies import Policy, is_continuous, obs_index
from envs.config import Config

INCOME_CUTS = (5000.0, 10000.0)  # [CNY/month] assumption, see the module docstring
RISK_CUTS = (-0.5, 0.5)  # [sd of latent risk] assumption
SEGMENT_LEVELS = {
    "file": ("full-file", "thin-file"),
    "income_band": ("low", "middle", "high"),
    "risk_band": ("low", "middle", "high"),
}
HIDDEN_SEGMENTS = ("income_band", "risk_band")
# Pairs compared by a disparity ratio: (segment, numerator level, denominator level).
DISPARITY_PAIRS = (("file", "thin-file", "full-file"), ("income_band", "low", "high"), ("risk_band", "high", "low"))
# Outcomes compared by ratios: non-negative ones (a ratio of revenues, which can be losses, means nothing;
# the segment tables give revenue per user).
OUTCOMES = ("cut_rate", "raise_rate", "average_line", "m3plus_rate", "attrition")


def cohort_outcomes(
    policy: Policy, config: Config, num_accounts: int, seed: int, observations: list | None = None
) -> pd.DataFrame:
    """One row per account of the initial cohort of evaluation seed ``seed``: its segments and outcome.

    Columns: seed, file, income_band, risk_band (levels), revenue [CNY, whole life], m3_balance and balance
    [CNY summed over the months of its whole life], raises, cuts and decisions (months it was decided on),
    line_months [CNY summed over its open months in the window], open_months, closed (bool: the borrower
    closed it, not a charge-off).

    Args:
        observations: if a list, (observation, action) batches of the cohort's months are appended to it.
    """
    venv = envs.make_portfolio(
        config, num_accounts, seed=portfolio_seed(seed), continuous=is_continuous(policy), **{"macro.seed": int(seed)}
    )
    obs = venv.reset()
    bind = getattr(policy, "bind_simulator", None)
    if callable(bind):
        bind(venv.sim)
    col = obs_index()
    traits = venv.sim.hidden_traits()  # of the cohort: read right after reset, before any replacement
    thin = obs[:, col["thin_file"]] == 1.0
    n = num_accounts
    alive = np.ones(n, dtype=bool)
    sums = {k: np.zeros(n) for k in ("revenue", "m3_balance", "balance", "raises", "cuts", "decisions")}
    sums |= {"line_months": np.zeros(n), "open_months": np.zeros(n)}
    closed = np.zeros(n, dtype=bool)
    state, episode_start = None, np.ones(n, dtype=bool)
    sim = venv.sim
    for t in range(config.env.horizon):
        actions, state = policy.predict(obs, state=state, episode_start=episode_start, deterministic=True)
        if observations is not None:
            observations.append((obs[alive].copy(), np.asarray(actions)[alive].copy()))
        line_before = obs[:, col["line"]].astype(np.float64)
        if t < config.env.horizon - 1:
            step_obs, _, dones, _ = venv.step(actions)
            obs = np.asarray(step_obs)
            info = venv.last_info  # the month's end before ended accounts were replaced
            revenue, mpd, balance, line = info["revenue"], info["months_past_due"], info["balance"], info["line"]
        else:  # the last month on the simulator itself, as the evaluator does: the venv would replace accounts
            result = sim.step(_multipliers(venv, actions))
            dones, revenue = result.terminated, result.revenue
            mpd, balance, line = sim.state.months_past_due, sim.state.balance, sim.state.line
        # A done here is a closure or a charge-off (the horizon is never reached within the loop).
        charged_off = mpd == CHARGED_OFF
        closes = dones & ~charged_off
        is_open = ~dones
        m3 = (mpd >= M3PLUS_BUCKETS[0]) & (mpd <= M3PLUS_BUCKETS[1]) & (balance > 0)
        sums["revenue"] += np.where(alive, revenue, 0.0)
        sums["m3_balance"] += np.where(alive & m3, balance, 0.0)
        sums["balance"] += np.where(alive, balance, 0.0)
        sums["raises"] += alive & (line > line_before)
        sums["cuts"] += alive & (line < line_before)
        sums["decisions"] += alive
        sums["line_months"] += np.where(alive & is_open, line, 0.0)
        sums["open_months"] += alive & is_open
        closed |= alive & closes
        alive &= ~dones
        episode_start = dones
    # Run-off (agents.cohort.run_cohort's): lines held, no drawing, until each account is repaid or charged off.
    sim.start_run_off(np.flatnonzero(alive))
    hold = np.ones(n)
    for _ in range(RUN_OFF_MONTHS):
        if not alive.any():
            break
        result = sim.step(hold)
        mpd, balance = sim.state.months_past_due, sim.state.balance
        m3 = (mpd >= M3PLUS_BUCKETS[0]) & (mpd <= M3PLUS_BUCKETS[1]) & (balance > 0)
        sums["revenue"] += np.where(alive, result.revenue, 0.0)
        sums["m3_balance"] += np.where(alive & m3, balance, 0.0)
        sums["balance"] += np.where(alive, balance, 0.0)
        alive &= ~result.terminated
    frame = pd.DataFrame(sums)
    frame.insert(0, "seed", int(seed))
    frame.insert(1, "file", np.where(thin, "thin-file", "full-file"))
    frame.insert(2, "income_band", _band(traits["income"], INCOME_CUTS))
    frame.insert(3, "risk_band", _band(traits["risk"], RISK_CUTS))
    frame["closed"] = closed
    return frame


def _band(values: np.ndarray, cuts: tuple[float, float]) -> np.ndarray:
    return np.array(["low", "middle", "high"])[np.digitize(values, cuts)]


def segment_table(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per segment level: accounts and the outcomes, pooled over the accounts (and seeds) of the level.

    per_user_revenue [CNY/account]; m3plus_rate = M3+ balance / balance over the months; raise_rate and
    cut_rate per account-month decided; average_line [CNY] over open account-months; attrition = share of
    the level's accounts that their borrower closed within the window.
    """
    rows = []
    for segment, levels in SEGMENT_LEVELS.items():
        for level in levels:
            part = outcomes[outcomes[segment] == level]
            total = part.sum(numeric_only=True)
            rows.append(
                {
                    "segment": segment,
                    "level": level,
                    "hidden": segment in HIDDEN_SEGMENTS,
                    "accounts": len(part),
                    "per_user_revenue": _div(total["revenue"], len(part)),
                    "m3plus_rate": _div(total["m3_balance"], total["balance"]),
                    "raise_rate": _div(total["raises"], total["decisions"]),
                    "cut_rate": _div(total["cuts"], total["decisions"]),
                    "average_line": _div(total["line_months"], total["open_months"]),
                    "attrition": _div(float(part["closed"].sum()), len(part)),
                }
            )
    return pd.DataFrame(rows)


def _div(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else float("nan")


def disparity(segments: Mapping[str, pd.DataFrame], reference: str | None) -> pd.DataFrame:
    """Ratios between segment levels (thin- to full-file, low to high income, high to low risk) of every
    outcome, per policy, set against the reference policy's (the rule): ``vs_reference`` = ratio / ratio
    of the reference; above 1, the policy widens the gap the rule has."""
    rows = []
    for policy, table in segments.items():
        indexed = table.set_index(["segment", "level"])
        for segment, num, den in DISPARITY_PAIRS:
            for outcome in OUTCOMES:
                values = indexed[outcome].to_dict()
                ratio = _div(values[(segment, num)], values[(segment, den)])
                rows.append(
                    {"policy": policy, "pair": f"{num} / {den} ({segment})", "outcome": outcome, "ratio": ratio}
                )
    frame = pd.DataFrame(rows)
    if reference is None or reference not in segments:
        frame["reference_ratio"] = float("nan")
    else:
        ref = frame[frame["policy"] == reference].set_index(["pair", "outcome"])["ratio"]
        frame["reference_ratio"] = [
            ref.get((p, o), float("nan")) for p, o in zip(frame["pair"], frame["outcome"], strict=True)
        ]
    frame["vs_reference"] = frame["ratio"] / frame["reference_ratio"]
    return frame


def pooled_outcomes(
    policy_factory, config: Config, num_accounts: int, seeds: Sequence[int], observations: list | None = None
) -> pd.DataFrame:
    """:func:`cohort_outcomes` over several seeds, a fresh policy from ``policy_factory()`` for each."""
    return pd.concat(
        [cohort_outcomes(policy_factory(), config, num_accounts, s, observations) for s in seeds], ignore_index=True
    )
