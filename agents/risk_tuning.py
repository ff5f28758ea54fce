"""Training the risk policy: the scorecards fitted on the training seeds, the thresholds tuned on the tuning seeds.

:func:`train_risk_policy` simulates the histories and fits both scorecards (``agents.risk_scorecard``); the last
training seed is held out and the ROC AUC of each model there is its check. The thresholds of the line rules
(``agents.risk_policy``) are then tuned on the *tuning* seeds under the cap with the rule's budget by a local
search around the best so far (:func:`tune_risk_policy`, choosing with ``agents.tuning.select_under_cap``).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from agents.evaluation import check_disjoint
from agents.population import population_summary
from agents.risk_policy import RiskParams, RiskPolicy
from agents.risk_scorecard import (
    RiskModel,
    RiskPolicyConfig,
    fit_risk_model,
    fit_uptake_model,
    load_risk_policy_config,
    simulate_histories,
)
from agents.tuning import select_under_cap
from envs.actions import LIMIT_MULTIPLIERS
from envs.config import Config, resolve_config

# Search space: choices uniform, (low, high) of a probability log-uniform (risks span decades).
RISK_SPACE: dict[str, tuple] = {
    "cut_risk": (0.02, 0.9),
    "cut_multiplier": tuple(m for m in LIMIT_MULTIPLIERS if m < 1.0),
    "line_floor": (0.25, 0.5, 0.75, 1.0),
    "raise_risk": (0.002, 0.3),
    "raise_multiplier": tuple(m for m in LIMIT_MULTIPLIERS if m > 1.0),
    "min_utilisation": (0.0, 0.2, 0.4, 0.6, 0.8, 0.9),
    "line_cap": (1.25, 1.5, 2.0, 3.0, 5.0, None),
    "start_line": tuple(m for m in LIMIT_MULTIPLIERS if m <= 1.0),
    "raise_wait": (1, 2, 3, 6),
    "cut_drawdown": (0.1, 0.2, 0.3, 0.5, 2.0),
    "min_uptake": (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "start_safe_risk": (0.0, 0.005, 0.01, 0.02, 0.05, 1.0),
    "start_uptake": (0.0, 0.5, 0.7, 0.9),
    "start_safe": LIMIT_MULTIPLIERS,
    "fast_uptake": (0.6, 0.7, 0.8, 0.9, 2.0),
    "fast_multiplier": tuple(m for m in LIMIT_MULTIPLIERS if m > 1.0),
    "used_raise_share": (0.5, 0.8, 1.0, 1.2, None),
    "jump_drawdown": (0.1, 0.15, 0.2, 0.3, 2.0),
    "jump_quiet": (2, 3, 4, 6),
    "jump_floor": (0.0625, 0.125, 0.25, 0.5),
}
_LOG_RANGES = ("cut_risk", "raise_risk")
SEARCH_ROUNDS = 4  # local search: the trial budget in this many rounds, each around the best so far


def _draw(name: str, rng: np.random.Generator) -> Any:
    options = RISK_SPACE[name]
    if name in _LOG_RANGES:
        return float(math.exp(rng.uniform(math.log(options[0]), math.log(options[1]))))
    return options[int(rng.integers(len(options)))]


def sample_risk_params(rng: np.random.Generator) -> RiskParams:
    """One random draw from :data:`RISK_SPACE`."""
    return RiskParams(**{name: _draw(name, rng) for name in RISK_SPACE})


def perturb_risk_params(params: RiskParams, rng: np.random.Generator, max_changes: int = 3) -> RiskParams:
    """``params`` with 1 to ``max_changes`` of its entries drawn afresh from :data:`RISK_SPACE`."""
    names = list(RISK_SPACE)
    changed = rng.choice(len(names), size=int(rng.integers(1, max_changes + 1)), replace=False)
    return dataclasses.replace(params, **{names[i]: _draw(names[i], rng) for i in changed})


class RiskTuning(NamedTuple):
    """The chosen thresholds and one row per trial (parameters, search round and the evaluator's metrics)."""

    params: RiskParams
    table: pd.DataFrame


def tune_risk_policy(
    model: RiskModel,
    config: Config | str,
    seeds: Sequence[int],
    num_accounts: int,
    n_trials: int = 40,
    progress: bool = True,
    holdout_seeds: Iterable[int] = (),
    search_seed: int = 0,
    uptake: RiskModel | None = None,
) -> RiskTuning:
    """A local search over :class:`RiskParams` on tuning ``seeds`` under the cap, with ``agents.tuning.tune_rule``'s
    budget, evaluator and choice (``select_under_cap``): ``n_trials`` in :data:`SEARCH_ROUNDS` rounds; trial 0
    is the defaults, every other trial the best so far with 1-3 entries redrawn (:func:`perturb_risk_params`;
    the rule's plain random draws over this many entries never beat the defaults)."""
    config = resolve_config(config)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("tuning needs at least one seed")
    check_disjoint(tuning=seeds, holdout=holdout_seeds)
    if not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    rng = np.random.default_rng(search_seed)
    sizes = [len(r) for r in np.array_split(np.arange(n_trials), min(SEARCH_ROUNDS, n_trials))]
    trials: list[RiskParams] = []
    tables: list[pd.DataFrame] = []
    best = 0
    for round_, size in enumerate(sizes):
        batch = [RiskParams()] if not trials else []
        batch += [perturb_risk_params(trials[best] if trials else batch[0], rng) for _ in range(size - len(batch))]
        policies = {f"trial_{len(trials) + i}": RiskPolicy(model, p, uptake=uptake) for i, p in enumerate(batch)}
        # All trials of a round in one batched simulator per seed (agents.population: the evaluator's figures).
        summary = population_summary(policies, config, num_accounts, seeds, progress=progress, n_boot=10)
        summary = summary.set_index("policy").loc[list(policies)].reset_index(drop=True)
        metrics = summary[["per_user_revenue", "m3plus_rate", "cap", "meets_cap", "average_line", "attrition_rate"]]
        head = pd.DataFrame({"trial": range(len(trials), len(trials) + len(batch)), "round": round_})
        tables.append(pd.concat([head, pd.DataFrame([dataclasses.asdict(p) for p in batch]), metrics], axis=1))
        trials += batch
        table = pd.concat(tables, ignore_index=True)
        with warnings.catch_warnings():  # an early round may have no trial under the cap: warned at the end
            warnings.simplefilter("ignore")
            best = select_under_cap(table)
    best = select_under_cap(table)
    table["chosen"] = np.arange(len(table)) == best
    return RiskTuning(trials[best], table)


def _auc(label: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC, NaN when the held-out rows hold one class only (a tiny book)."""
    return float(roc_auc_score(label, score)) if 0 < label.sum() < len(label) else float("nan")


class RiskPolicyResult(NamedTuple):
    policy: RiskPolicy
    tuning: pd.DataFrame  # one row per threshold trial
    holdout_auc: float  # ROC AUC of the model on the held-out training seed
    holdout_base_rate: float  # share of held-out rows with the outcome
    uptake_auc: float  # ROC AUC of the need model on the held-out seed's raises


def train_risk_policy(
    config: Config | str,
    training_seeds: Sequence[int],
    tuning_seeds: Sequence[int],
    tune_accounts: int,
    n_trials: int = 40,  # tune_rule's default budget
    holdout_seeds: Iterable[int] = (),
    settings: RiskPolicyConfig | None = None,
    search_seed: int = 0,
    progress: bool = True,
) -> RiskPolicyResult:
    """Histories of ``training_seeds`` (all but the last fit the model, the last measures it), then the
    thresholds tuned on ``tuning_seeds``. Every seed set is checked disjoint from the others."""
    config = resolve_config(config)
    settings = load_risk_policy_config(config.name) if settings is None else settings
    training, holdout = list(training_seeds), list(holdout_seeds)
    if len(training) < 2:
        raise ValueError(f"the risk policy needs at least 2 training seeds (one is held out), got {training}")
    check_disjoint(training=training, tuning=tuning_seeds, evaluation=holdout)
    data = simulate_histories(config, training, settings)
    fitting, held = data.subset(data.seed != training[-1]), data.subset(data.seed == training[-1])
    model, uptake = fit_risk_model(fitting, settings), fit_uptake_model(fitting, settings)
    auc = _auc(held.label, model.predict_risk(held.obs, held.previous_balance))
    raised = ~np.isnan(held.uptake)
    uptake_auc = _auc(held.uptake[raised] > 0.5, uptake.predict_risk(held.obs[raised], held.previous_balance[raised]))
    tuned = tune_risk_policy(
        model, config, tuning_seeds, tune_accounts, n_trials, progress, holdout, search_seed, uptake=uptake
    )
    policy = RiskPolicy(model, tuned.params, uptake=uptake)
    return RiskPolicyResult(policy, tuned.table, auc, float(held.label.mean()), uptake_auc)
