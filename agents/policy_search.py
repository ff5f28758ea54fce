"""Direct policy search: CMA-ES over a linear target line on the observations, on the batched simulator.

The policy (:class:`LinearScorePolicy`) computes, each month, a target line for every account: ``exp(w .
features(obs))`` times its origination line (clipped to :data:`TARGET_RANGE`, 0.02x-5x; the product's floor
and maximum bound the line itself), and takes the line step that brings the line closest to it, holding
within half a step (as the best static policy approaches its one target). Zero weights hold every line.
Besides linear terms the features hold a few hinges and flags on the signals that precede default (score
bins, a full line, minimum payments, delinquency x utilisation), and ``log(line / origination line)``, with
which the target can follow today's line rather than the origination line. A target, unlike a score read
as "raise now", does not compound month after month, so small weight changes make small policy changes,
which is what an evolution strategy needs. The features are fixed transforms of the observation (no fitted
statistics), so a policy is its weights, saved as JSON.

Training (:func:`train_policy_search`), with the ``cma`` package (Hansen's CMA-ES, the reference
implementation) as the optimiser:

- every candidate of every generation runs on the same first ``training_seeds`` *training* seeds (common
  random numbers: the same accounts and macro paths, so candidates differ only by what they do; a fixed
  set, because a macro path moves the M3+ rate more than most policies do, and fresh paths each generation
  made the ranking chase the paths);
- the search starts at the best flat target of :data:`START_TARGETS` on those seeds (:func:`static_start`),
  not at hold, which earns 35-60% less than the best flat target on every preset;
- the whole population runs in one batched simulator per seed (:func:`population_rollout`), measured as
  the evaluator measures it: per-user revenue of the cohort and its pooled M3+ rate, means over the seeds;
- the cap by feasibility first (Deb's rule): candidates whose M3+ rate is at most ``target_share x cap``
  rank above every candidate that is not, by revenue among themselves, by their excess over the cap below;
- model selection on the *tuning* seeds every ``select_every`` generations: the distribution's mean and the
  generation's best candidate are evaluated there (by the same batched rollout), and the one with the
  highest revenue meeting the cap over the whole run is kept (the starting policy is the first). The
  evaluation seeds are never seen: :func:`agents.evaluation.check_disjoint` guards all three ranges.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import cma
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm.auto import tqdm

from agents.atomic_io import write_json
from agents.cohort import RUN_OFF_MONTHS
from agents.evaluation import check_disjoint
from agents.policies import _Baseline, obs_index
from agents.population import population_metrics
from envs.actions import HOLD_ACTION, LIMIT_MULTIPLIERS
from envs.config import CONFIG_DIR, Config, ConfigError, read_yaml, resolve_config

FORMAT = "creditline-rl/linear-target-policy/v2"
POLICY_SEARCH_CONFIG = CONFIG_DIR / "agents" / "policy_search.yaml"

# name -> what it is; every feature is O(1) for typical accounts, so one step size suits all weights. Besides
# the linear terms, a few hinges and flags on the signals that precede default in the dynamics (the distressed
# draw toward the line, pay what is due and no more, and their score falls: envs.dynamics steps 5, 6 and 9),
# so that a target can drop for the few who show them without moving for everyone else.
FEATURES: dict[str, str] = {
    "bias": "1",
    "utilisation": "balance / line, clipped to [0, 2]",
    "high_utilisation": "1 if utilisation >= 0.8",
    "full_utilisation": "1 if utilisation >= 0.95",
    "drawn_of_origination": "balance / origination line, clipped to [0, 3]",
    "delinquent": "1 if months_past_due >= 1",
    "months_past_due": "months_past_due / 3",
    "delinquent_utilisation": "delinquent x utilisation",
    "min_payment_ratio": "lowest of the three observed payment ratios",
    "minimum_payer": "1 if the lowest payment ratio <= 0.1 (about what is due, or less)",
    "full_payer": "1 if the lowest payment ratio >= 0.99 (a transactor)",
    "score": "(behaviour_score - 600) / 100",
    "score_below_550": "max(0, 550 - behaviour_score) / 100",
    "score_below_650": "max(0, 650 - behaviour_score) / 100",
    "score_above_700": "max(0, behaviour_score - 700) / 100",
    "stress_score": "score x macro_stress (a score can count for more in a recession)",
    "utilisation_score": "utilisation x score (a heavy user with a good score, or a bad one)",
    "apr": "(apr - 0.12) x 10",
    "seasoning": "min(months_on_book, 36) / 36",
    "thin_file": "thin_file flag",
    "young": "1 if age band 18-24",
    "lower_tier": "1 if lower-tier city",
    "stress": "macro_stress flag",
    "origination_line": "log(origination_line / 10,000 CNY)",
    "line_unchanged": "min(months_since_line_change, 12) / 12",
    "current_multiple": "log(line / origination line): weight 1 makes the rest a move relative to today's line",
}
# [log multiple of the origination line] Wide: the product's own floor (min_line) and maximum bound the line,
# and the best static target is at 0.5x on every preset, so the cut for the risky can go well below it.
TARGET_RANGE = (float(np.log(0.02)), float(np.log(5.0)))
_LOG_STEPS = np.log(np.array(LIMIT_MULTIPLIERS))
# [multiple of the origination line] flat targets tried for the starting point (1 = hold)
START_TARGETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0, 1.25, 1.5)


def features(obs: np.ndarray) -> np.ndarray:
    """The ``(n, len(FEATURES))`` float64 features of observations ``(n, 17)``, in the order of FEATURES."""
    col = obs_index()
    o = np.asarray(obs, dtype=np.float64)
    raw_score = o[:, col["behaviour_score"]]
    score = (raw_score - 600.0) / 100.0
    stress = o[:, col["macro_stress"]]
    mpd = o[:, col["months_past_due"]]
    utilisation = np.clip(o[:, col["utilisation"]], 0.0, 2.0)
    origination = np.maximum(o[:, col["origination_line"]], 1.0)
    low_ratio = o[:, [col[f"payment_ratio_{k}"] for k in (1, 2, 3)]].min(axis=1)
    delinquent = mpd >= 1
    columns = [
        np.ones(len(o)),
        utilisation,
        utilisation >= 0.8,
        utilisation >= 0.95,
        np.clip(o[:, col["balance"]] / origination, 0.0, 3.0),
        delinquent,
        mpd / 3.0,
        delinquent * utilisation,
        low_ratio,
        low_ratio <= 0.1,
        low_ratio >= 0.99,
        score,
        np.maximum(550.0 - raw_score, 0.0) / 100.0,
        np.maximum(650.0 - raw_score, 0.0) / 100.0,
        np.maximum(raw_score - 700.0, 0.0) / 100.0,
        score * stress,
        utilisation * score,
        (o[:, col["apr"]] - 0.12) * 10.0,
        np.minimum(o[:, col["months_on_book"]], 36.0) / 36.0,
        o[:, col["thin_file"]],
        o[:, col["age_band"]] == 0,
        o[:, col["city_tier"]] == 2,
        stress,
        np.log(origination / 10_000.0),
        np.minimum(o[:, col["months_since_line_change"]], 12.0) / 12.0,
        np.log(np.maximum(o[:, col["line"]], 1.0) / origination),
    ]
    return np.stack(columns, axis=1).astype(np.float64)


def actions_toward(obs: np.ndarray, log_target: np.ndarray) -> np.ndarray:
    """The line step that brings each line closest to ``exp(log_target) x origination line`` (hold on ties).

    As :class:`agents.policies.BestStatic` does for one target: a move must strictly improve on holding, so
    a line within half a step of its target stays where it is, and no line is raised and cut back forever.
    """
    col = obs_index()
    line = np.maximum(obs[:, col["line"]].astype(np.float64), 1.0)
    current = np.log(line / np.maximum(obs[:, col["origination_line"]].astype(np.float64), 1.0))
    gap = current - np.clip(log_target, *TARGET_RANGE)  # > 0: above target
    after = np.abs(gap[:, None] + _LOG_STEPS[None, :])
    best = np.argmin(after, axis=1)
    improves = after[np.arange(len(obs)), best] < after[:, HOLD_ACTION] - 1e-9
    return np.where(improves, best, HOLD_ACTION).astype(np.int64)


class LinearScorePolicy(_Baseline):
    """A target line of ``exp(weights . features(obs))`` x the origination line, approached step by step.

    Args:
        weights: one per entry of :data:`FEATURES`; all zeros holds every line.
        continuous: return Box actions instead of indices.
    """

    def __init__(self, weights: Sequence[float] | np.ndarray, continuous: bool = False):
        super().__init__(continuous)
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(FEATURES),) or not np.all(np.isfinite(w)):
            raise ValueError(f"weights must be {len(FEATURES)} finite numbers (one per feature), got shape {w.shape}")
        self.weights = w

    def _actions(self, obs: np.ndarray) -> np.ndarray:
        return actions_toward(obs, features(obs) @ self.weights)

    def save(self, path: str | Path, **metadata: Any) -> None:
        """Write the policy as JSON (atomically): format, feature names, weights and ``metadata``."""
        write_json(
            Path(path),
            {"format": FORMAT, "features": list(FEATURES), "weights": self.weights.tolist(), "metadata": metadata},
        )

    @classmethod
    def load(cls, path: str | Path) -> LinearScorePolicy:
        """The policy :meth:`save` wrote; an error naming the file if it is not one."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no policy-search agent at {path}")
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} file")
        if data.get("features") != list(FEATURES):
            raise ValueError(f"{path} was saved with features {data.get('features')}, this code has {list(FEATURES)}")
        return cls(data["weights"])

    def __repr__(self) -> str:
        return f"LinearScorePolicy({np.round(self.weights, 3).tolist()})"


# -- configuration --------------------------------------------------------------------------------------
class PolicySearchConfig(BaseModel):
    """``configs/agents/policy_search.yaml`` (see the comments there)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    generations: int = Field(ge=1)
    popsize: int = Field(ge=4)
    sigma0: float = Field(gt=0)
    accounts: int = Field(ge=1)
    training_seeds: int = Field(ge=1)
    target_share: float = Field(gt=0, le=1)
    select_every: int = Field(ge=1)
    select_accounts: int = Field(ge=1)


def load_policy_search_config(
    preset: str | None = None, overrides: Mapping[str, Any] | None = None, path: str | Path | None = None
) -> PolicySearchConfig:
    """Read the YAML, merge its ``presets.<preset>`` section and ``overrides`` (field names), validate."""
    path = Path(path) if path is not None else POLICY_SEARCH_CONFIG
    data = read_yaml(path)
    presets = data.pop("presets", None) or {}
    data.update(presets.get(preset) or {})
    data.update(overrides or {})
    try:
        return PolicySearchConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])} = {e.get('input')!r}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("\n".join([f"invalid policy-search config ({path.name}):", *lines])) from None


# -- training -------------------------------------------------------------------------------------------
class PolicySearchResult(NamedTuple):
    """The selected policy, one row per generation (training and selection metrics), and where it came from."""

    policy: LinearScorePolicy
    history: pd.DataFrame
    selected: str  # e.g. "generation 15 mean", or "initial (static x0.5)"


def _measure(
    policies: dict[str, LinearScorePolicy], config: Config, accounts: int, seeds: Sequence[int]
) -> pd.DataFrame:
    """Mean per-user revenue and M3+ rate of each policy over ``seeds``: the evaluator's summary means, computed
    by :func:`population_rollout` (one batched simulator a seed; a test checks it against ``evaluate``)."""
    weights = [policy.weights for policy in policies.values()]
    per_seed = [population_rollout(weights, config, accounts, seed) for seed in seeds]
    revenue = np.mean([r for r, _ in per_seed], axis=0)
    m3 = np.mean([m for _, m in per_seed], axis=0)
    return pd.DataFrame({"per_user_revenue": revenue, "m3plus_rate": m3}, index=pd.Index(list(policies)))


def population_rollout(
    weights: Sequence[np.ndarray],
    config: Config | str,
    accounts: int,
    seed: int,
    months: int | None = None,
    run_off_months: int = RUN_OFF_MONTHS,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-user revenue and whole-life M3+ rate of each weight vector on seed ``seed``, all in one simulator.

    Candidate c acts on block c of one batched simulator holding the evaluator's accounts of seed ``seed``
    in every block (:func:`agents.population.population_metrics`): the evaluator's run of each candidate,
    stepped together (a test checks both against ``evaluate``).
    """
    policies = [LinearScorePolicy(w) for w in weights]
    metrics = population_metrics(policies, config, accounts, seed, months, run_off_months)
    return metrics["per_user_revenue"], metrics["m3plus_rate"]


def feasibility_first(revenue: np.ndarray, m3plus: np.ndarray, limit: float) -> np.ndarray:
    """CMA-ES fitness (lower is better): -revenue when M3+ <= ``limit``, else above every feasible value."""
    revenue, m3plus = np.asarray(revenue, dtype=np.float64), np.asarray(m3plus, dtype=np.float64)
    worst_feasible = np.max(np.abs(revenue)) + 1.0
    excess = np.where(np.isfinite(m3plus), m3plus / limit - 1.0, 1e3)
    return np.where(m3plus <= limit, -revenue, worst_feasible + 1e4 * excess)


def static_start(config: Config, seeds: Sequence[int], accounts: int, limit: float) -> tuple[np.ndarray, str]:
    """The search's starting weights: the bias at the best of :data:`START_TARGETS` on the training ``seeds``.

    Holding (zero weights) earns far less than the best flat target on every preset, and from there most of a
    small step size's budget goes into moving the bias; a 1-D search in one batched rollout a seed is cheap.
    """
    grid = [np.eye(len(FEATURES))[0] * math.log(x) for x in START_TARGETS]
    per_seed = [population_rollout(grid, config, accounts, seed) for seed in seeds]
    revenue = np.mean([r for r, _ in per_seed], axis=0)
    m3 = np.mean([m for _, m in per_seed], axis=0)
    best = int(np.argmin(feasibility_first(revenue, m3, limit)))
    return grid[best], f"initial (static x{START_TARGETS[best]:g})"


def train_policy_search(
    config: Config | str,
    training_seeds: Sequence[int],
    tuning_seeds: Sequence[int],
    holdout_seeds: Iterable[int] = (),
    settings: PolicySearchConfig | None = None,
    search_seed: int = 0,
    progress: bool = True,
) -> PolicySearchResult:
    """CMA-ES on ``training_seeds``, model selection on ``tuning_seeds`` (see the module docstring).

    Args:
        config: preset name or ``Config``; ``env.m3plus_cap`` is the cap.
        training_seeds: seed labels to train on (the first ``settings.training_seeds`` of them are used).
        tuning_seeds: seed labels of model selection.
        holdout_seeds: the evaluation seeds: an overlap with either range is an error.
        settings: a :class:`PolicySearchConfig` (default: the YAML, with the preset's section).
        search_seed: seed of the optimiser's own generator (its samples of candidates).
        progress: tqdm bar over generations.
    """
    config = resolve_config(config)
    settings = settings or load_policy_search_config(config.name)
    training, tuning = [int(s) for s in training_seeds], [int(s) for s in tuning_seeds]
    if not training or not tuning:
        raise ValueError("policy search needs at least one training seed and one tuning seed")
    check_disjoint(training=training, tuning=tuning, evaluation=holdout_seeds)
    cap = config.env.m3plus_cap
    seeds = training[: settings.training_seeds]  # fixed: every generation is ranked on the same paths
    rng = np.random.default_rng(search_seed)
    options = {
        "popsize": settings.popsize,
        "randn": lambda *shape: rng.standard_normal(shape),  # the optimiser's samples come from our generator
        "seed": float("nan"),  # ... and cma leaves numpy's global generator alone
        "verbose": -9,
        "CMA_elitist": "initial",  # the starting policy (best static target) competes until something beats it
    }
    start, start_name = static_start(config, seeds, settings.accounts, settings.target_share * cap)
    es = cma.CMAEvolutionStrategy(start, settings.sigma0, options)

    best_weights, best_revenue, best_m3, selected = start.copy(), -math.inf, math.inf, start_name
    fallback: tuple[float, np.ndarray, str] | None = None  # lowest tuning M3+ seen, if nothing meets the cap

    def select(candidates: dict[str, np.ndarray], gen: int) -> dict[str, float]:
        """Evaluate ``role -> weights`` on the tuning seeds; keep the best meeting the cap; their metrics."""
        nonlocal best_weights, best_revenue, best_m3, selected, fallback
        measured = _measure(
            {n: LinearScorePolicy(w) for n, w in candidates.items()}, config, settings.select_accounts, tuning
        )
        metrics = {role: (float(r), float(m)) for role, r, m in measured.itertuples()}
        for role, w in candidates.items():
            name = start_name if gen == 0 else f"generation {gen} {role}"
            revenue, m3 = metrics[role]
            if m3 <= cap and revenue > best_revenue:
                best_weights, best_revenue, best_m3, selected = w.copy(), revenue, m3, name
            if fallback is None or m3 < fallback[0]:
                fallback = (m3, w.copy(), name)
        out = {f"tuning_{role}_revenue": metrics[role][0] for role in candidates}
        return out | {f"tuning_{role}_m3plus_rate": metrics[role][1] for role in candidates}

    rows = [{"generation": 0, **select({"mean": start}, 0)}]
    bar = tqdm(range(1, settings.generations + 1), desc="policy search", disable=not progress, dynamic_ncols=True)
    for gen in bar:
        candidates = es.ask()
        per_seed = [population_rollout(candidates, config, settings.accounts, seed) for seed in seeds]
        revenue = np.mean([r for r, _ in per_seed], axis=0)  # means over seeds, as the evaluator's summary
        m3 = np.mean([m for _, m in per_seed], axis=0)
        fitness = feasibility_first(revenue, m3, settings.target_share * cap)
        es.tell(candidates, fitness.tolist())
        top = int(np.argmin(fitness))
        row: dict[str, Any] = {
            "generation": gen,
            "sigma": float(es.sigma),
            "training_feasible_share": float(np.mean(m3 <= settings.target_share * cap)),
            "training_best_revenue": float(revenue[top]),
            "training_best_m3plus_rate": float(m3[top]),
            "training_mean_revenue": float(np.mean(revenue)),
        }
        if gen % settings.select_every == 0 or gen == settings.generations:
            row.update(select({"mean": np.asarray(es.mean), "best": candidates[top]}, gen))
        row["selected"] = selected
        rows.append(row)
        bar.set_postfix(rev=f"{revenue[top]:.0f}", m3=f"{m3[top]:.4f}", kept=f"{best_revenue:.0f}", refresh=False)
    bar.close()
    if not math.isfinite(best_revenue):
        assert fallback is not None
        _, best_weights, selected = fallback
        warnings.warn(
            f"no policy met the M3+ cap {cap:.4f} on the tuning seeds; keeping the lowest ({selected})", stacklevel=2
        )
    return PolicySearchResult(LinearScorePolicy(best_weights), pd.DataFrame(rows), selected)
