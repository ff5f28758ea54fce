"""Many candidate policies in one batched simulator per seed: the evaluator's metrics at a fraction of its cost.

A tuner compares hundreds of candidates on the same accounts and macro paths (common random numbers).
:func:`agents.evaluation.evaluate` runs each candidate on its own portfolio of ``num_accounts`` accounts, so
the simulator's per-step overhead is paid ``candidates x seeds`` times over some 80 months (window and
run-off). Here candidate ``c`` acts on block ``c`` of ``candidates x num_accounts`` slots of ONE
:class:`envs.simulator.Simulator` per seed: every block holds the accounts of the evaluator's seed (the
same account keys, :func:`agents.evaluation.portfolio_seed`) and the simulator has the seed's one macro
path (``macro.seed = seed``). Actions never feed the random streams and the monthly dynamics act on every
account alone, so each block is, month for month, the evaluator's run of its candidate on that seed.

The loop follows :func:`agents.cohort.run_cohort` (the window under the policy, ended accounts replaced
except in its last month, then the cohort's run-off with lines frozen), and each block is booked by its
own :class:`agents.cohort.CohortRun` with the evaluator's segment groups, so the sums are the same
products of the same numbers and :func:`population_summary` equals ``evaluate(...).summary`` exactly
(``tests/agents/test_population.py`` checks it for static, rule and oracle candidates).

A privileged policy (one with ``bind_simulator``, the oracle) is bound to a :class:`BlockView` of the
simulator: its ``state``, ``hidden_state()`` and ``num_accounts`` are those of its block's rows only, and
the hidden state is computed once a month for all blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from agents.cohort import METRICS, RUN_OFF_MONTHS, CohortRun, cohort_metrics, segment_groups
from agents.evaluation import aggregate_seeds, portfolio_seed, validate_evaluation
from agents.policies import Policy, is_continuous
from envs.actions import continuous_to_multiplier, discrete_to_multiplier
from envs.config import Config, resolve_config
from envs.observation import observation_space, observe
from envs.simulator import Simulator

__all__ = ["BlockView", "population_runs", "population_metrics", "population_summary", "MAX_SLOTS"]

# Slots of one batched simulator [accounts]: 240 candidates x 2,000 accounts fit in one (about 0.5 GB of
# state and temporaries); more candidates run in several batches of the same seed, one after the other.
MAX_SLOTS = 500_000


class _StateView:
    """The rows ``block`` of a :class:`envs.state.PortfolioState`, attribute by attribute (numpy views)."""

    def __init__(self, state: Any, block: slice):
        self._state, self._block = state, block

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state, name)[self._block]

    def __len__(self) -> int:
        return self._block.stop - self._block.start


class BlockView:
    """What a privileged policy reads of a simulator, restricted to one block of its rows.

    ``state`` reads the block's rows of the simulator's state, ``hidden_state()`` (and ``hidden_traits()``)
    the block's rows of the simulator's hidden state, computed once per calendar month for every block;
    ``config``, ``params``, ``stress`` and ``calendar_month`` are the simulator's.
    """

    def __init__(self, sim: Simulator, block: slice, shared: dict[str, Any]):
        self._sim, self._block, self._shared = sim, block, shared
        self.state = _StateView(sim.state, block)

    @property
    def num_accounts(self) -> int:
        return self._block.stop - self._block.start

    def __getattr__(self, name: str) -> Any:  # config, params, stress, calendar_month: the simulator's
        return getattr(self._sim, name)

    def hidden_state(self) -> dict[str, np.ndarray]:
        month = self._sim.calendar_month
        if self._shared.get("month") != month:  # the first block to ask this month computes every block's
            self._shared.update(month=month, hidden=self._sim.hidden_state())
        return {name: value[self._block].copy() for name, value in self._shared["hidden"].items()}

    def hidden_traits(self) -> dict[str, np.ndarray]:
        return self._sim.hidden_traits(np.arange(self._block.start, self._block.stop))


def population_runs(
    policies: Sequence[Policy],
    config: Config,
    num_accounts: int,
    seed: int,
    months: int,
    run_off_months: int = RUN_OFF_MONTHS,
) -> list[CohortRun]:
    """The evaluator's :class:`CohortRun` of every policy on seed ``seed``, all stepped in one simulator.

    Args:
        policies: anything with SB3's ``predict``; ``bind_simulator`` is called with the policy's
            :class:`BlockView` (so a privileged object may be a candidate once only).
        config: a validated preset (its ``macro.seed`` is replaced by ``seed``).
        num_accounts: accounts per candidate (a block).
        seed: the evaluation (or tuning) seed label.
        months: the window, at most ``env.horizon``.
        run_off_months: bound on the run-off [months].
    """
    config = resolve_config(config, {"macro.seed": int(seed)})
    p, a = len(policies), num_accounts
    n = p * a
    sim = Simulator(config, n)
    sim.seed_accounts(np.arange(n), np.tile(portfolio_seed(seed) + np.arange(a, dtype=np.uint64), p))
    sim.restart_calendar()
    space = observation_space(config)
    blocks = [slice(c * a, (c + 1) * a) for c in range(p)]
    continuous = [is_continuous(policy) for policy in policies]
    obs = observe(sim.state, sim.stress, space).T
    if not all(np.array_equal(obs[b], obs[blocks[0]]) for b in blocks[1:]):  # cheap, and guards the premise
        raise RuntimeError("the blocks of a population hold different accounts: common random numbers are broken")
    shared: dict[str, Any] = {}
    bound: set[int] = set()
    for policy, block in zip(policies, blocks, strict=True):
        bind = getattr(policy, "bind_simulator", None)
        if callable(bind):
            if id(policy) in bound:
                raise ValueError(f"the privileged policy {policy!r} is a candidate twice: it reads one block only")
            bound.add(id(policy))
            bind(BlockView(sim, block, shared))
    groups = [segment_groups(obs[b]) for b in blocks]  # the evaluator's segment groups, per block
    total = months + run_off_months  # [months] the longest a run can take
    runs = [CohortRun.empty(total, months, g, obs[b].copy()) for g, b in zip(groups, blocks, strict=True)]
    states: list[Any] = [None] * p
    episode_start = np.ones(n, dtype=bool)
    alive = np.ones(n, dtype=bool)  # the slot still holds its cohort account
    multiplier = np.empty(n)
    for t in range(months):
        for c, (policy, b) in enumerate(zip(policies, blocks, strict=True)):
            actions, states[c] = policy.predict(obs[b], state=states[c], episode_start=episode_start[b],
                                                deterministic=True)  # fmt: skip
            to_multiplier = continuous_to_multiplier if continuous[c] else discrete_to_multiplier
            multiplier[b] = _block_multipliers(to_multiplier(np.asarray(actions)), a)
        stress = sim.stress
        result = sim.step(multiplier)
        last = t == months - 1  # as the evaluator: the horizon is no end, and nothing is replaced
        ended = result.terminated if last else result.terminated | result.truncated
        _record(runs, groups, blocks, t, alive, result.revenue, result.components["credit_loss"], sim, ended, stress)
        alive &= ~ended
        episode_start = ended
        if not last:
            sim.renew(np.flatnonzero(ended))
            obs = observe(sim.state, sim.stress, space).T

    # The run-off: lines frozen, no drawing. Only the cohort accounts still open count, and the dynamics act
    # on every account alone (its draws keyed on the account), so the simulator is cut down to them, and
    # again each time half of them have ended: the same months for them, on fewer slots.
    slots = np.flatnonzero(alive)  # the slot (in the full simulator) of each row of the run-off simulator
    sim.start_run_off(slots)
    running, t = np.ones(len(slots), dtype=bool), months
    if len(slots):  # (every cohort account may have ended in the window)
        sim = _subset(sim, slots)
    while t < months + run_off_months and running.any():
        if running.sum() <= len(running) // 2:
            keep = np.flatnonzero(running)
            sim, slots, running = _subset(sim, keep), slots[keep], running[keep]
        stress = sim.stress
        result = sim.step(np.ones(len(slots)))
        s = sim.state
        rows = np.searchsorted(slots, [b.start for b in blocks] + [n])  # block c: rows[c]:rows[c + 1]
        for c, (run, g, b) in enumerate(zip(runs, groups, blocks, strict=True)):
            r = slice(rows[c], rows[c + 1])
            if not running[r].any():  # nothing left to book: the month's sums stay zero
                run.stress[t] = stress
                continue
            run.record(t, g[slots[r] - b.start], running[r], result.revenue[r],
                       {"credit_loss": result.components["credit_loss"][r]}, s.months_past_due[r], s.balance[r],
                       s.line[r], result.terminated[r], stress)  # fmt: skip
        running &= ~result.terminated
        t += 1
    left = np.zeros(n, dtype=bool)
    left[slots] = running
    return [run.ended(t, left[b], g) for run, g, b in zip(runs, groups, blocks, strict=True)]


def _subset(sim: Simulator, rows: np.ndarray) -> Simulator:
    """A simulator of the accounts at ``rows`` of ``sim`` only, in the same month of the same macro path."""
    state, n = sim.state, len(sim.state)
    arrays = {name: getattr(state, name) for name in state.field_names()}
    # Every state array is per account along its last axis (payment_ratios is (lags, accounts)).
    odd = [name for name, value in arrays.items() if np.ndim(value) == 0 or np.shape(value)[-1] != n]
    if odd:
        raise RuntimeError(f"state arrays {odd} are not per account along their last axis: cannot cut them down")
    out = Simulator(sim.config, len(rows))
    out.state = type(state)(**{name: value[..., rows] for name, value in arrays.items()})
    out.calendar_month, out.stress = sim.calendar_month, sim.stress
    if len(sim.new_accounts()):
        raise RuntimeError("a simulator with accounts in their first month cannot be cut down")
    return out


def _block_multipliers(multiplier: np.ndarray, accounts: int) -> np.ndarray:
    if multiplier.shape != (accounts,):
        raise ValueError(f"expected {accounts} actions from a candidate, got shape {multiplier.shape}")
    return multiplier


def _record(
    runs: list[CohortRun],
    groups: list[np.ndarray],
    blocks: list[slice],
    t: int,
    members: np.ndarray,
    revenue: np.ndarray,
    credit_loss: np.ndarray,
    sim: Simulator,
    ended: np.ndarray,
    stress: bool,
) -> None:
    """Month ``t`` into every block's run, each with its block's rows (as the evaluator's run has them)."""
    s = sim.state
    for run, g, b in zip(runs, groups, blocks, strict=True):
        run.record(t, g, members[b], revenue[b], {"credit_loss": credit_loss[b]}, s.months_past_due[b],
                   s.balance[b], s.line[b], ended[b], stress)  # fmt: skip


def population_metrics(
    policies: Sequence[Policy],
    config: Config | str,
    num_accounts: int,
    seed: int,
    months: int | None = None,
    run_off_months: int = RUN_OFF_MONTHS,
) -> dict[str, np.ndarray]:
    """:func:`agents.cohort.cohort_metrics` of every policy on seed ``seed`` (all accounts): metric name ->
    one value per policy, in order. E.g. a policy search's per-user revenue and M3+ rate of a generation."""
    config = resolve_config(config)
    months = config.env.horizon if months is None else months
    runs = population_runs(policies, config, num_accounts, seed, months, run_off_months)
    metrics = [cohort_metrics(run) for run in runs]
    return {name: np.array([m[name][0] for m in metrics]) for name in METRICS}


def population_summary(
    policies: Mapping[str, Policy],
    config: Config | str,
    num_accounts: int,
    seeds: Sequence[int],
    months: int | None = None,
    progress: bool = True,
    run_off_months: int = RUN_OFF_MONTHS,
    n_boot: int = 2000,
    bootstrap_seed: int = 0,
    max_slots: int = MAX_SLOTS,
) -> pd.DataFrame:
    """``evaluate(policies, ..., reference=None).summary``'s columns ``policy``, every metric with its CI,
    ``cap``, ``meets_cap`` and ``meets_cap_share``, equal to the evaluator's, from batched simulators.

    Args:
        policies, config, num_accounts, seeds, months, progress, run_off_months, n_boot, bootstrap_seed: as
            :func:`agents.evaluation.evaluate` (progress: a bar over seeds x batches).
        max_slots: accounts of one simulator; more candidates are split into batches of the same seed.
    """
    config = resolve_config(config)
    months = config.env.horizon if months is None else months
    seeds = list(seeds)
    validate_evaluation(policies, num_accounts, seeds, months, config.env.horizon, run_off_months, {})
    if not isinstance(max_slots, (int, np.integer)) or max_slots < 1:
        raise ValueError(f"max_slots must be a positive integer, got {max_slots!r}")
    names, members = list(policies), list(policies.values())
    per_batch = max(1, max_slots // num_accounts)
    batches = [slice(i, i + per_batch) for i in range(0, len(members), per_batch)]
    cap = config.env.m3plus_cap
    rows = []  # in the evaluator's order: seed after seed, every policy within a seed
    bar = tqdm(total=len(seeds) * len(batches), desc="population", disable=not progress)
    for seed in seeds:
        for batch in batches:
            runs = population_runs(members[batch], config, num_accounts, seed, months, run_off_months)
            for name, run in zip(names[batch], runs, strict=True):
                metrics = cohort_metrics(run)
                rows.append(
                    {
                        "policy": name,
                        "seed": seed,
                        **{m: float(v[0]) for m, v in metrics.items()},
                        "meets_cap": bool(metrics["m3plus_rate"][0] <= cap),
                    }
                )
            bar.update()
    bar.close()
    per_seed = pd.DataFrame(rows)
    summary = aggregate_seeds(per_seed, ["policy"], METRICS, np.random.default_rng(bootstrap_seed), n_boot)
    summary["cap"] = cap
    summary["meets_cap"] = summary["m3plus_rate"] <= cap
    summary["meets_cap_share"] = summary["policy"].map(per_seed.groupby("policy")["meets_cap"].mean())
    return summary
