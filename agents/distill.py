"""A learned policy written down as rules a person can read: a shallow decision tree fitted to its actions.

The tree (``sklearn.tree.DecisionTreeClassifier``) learns the agent's action from the observation, on
the observations the agent meets when it runs on *distillation seeds*; its **fidelity** is its agreement
with the agent on observations of other, held-out seeds (the evaluation seeds), next to the agreement of
always predicting the agent's most common action (a tree must beat that to say anything). Run as a policy
(:class:`DistilledPolicy`, the evaluator's ``predict`` API), the tree earns its own revenue and M3+ rate:
if it keeps most of the agent's revenue at the same risk, the rules are a fair account of the agent.

A continuous-action agent's actions are mapped to the nearest discrete line multiplier first.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from sklearn.tree import DecisionTreeClassifier, export_text

from envs.actions import LIMIT_MULTIPLIERS, continuous_to_multiplier

_LOG_MULTIPLIERS = np.log(np.array(LIMIT_MULTIPLIERS))


def action_labels(actions: np.ndarray, continuous: bool) -> np.ndarray:
    """Discrete action indices (into LIMIT_MULTIPLIERS); Box actions go to the nearest multiplier (log scale)."""
    a = np.asarray(actions)
    if not continuous:
        return a.reshape(-1).astype(np.int64)
    log_m = np.log(continuous_to_multiplier(a))
    return np.argmin(np.abs(log_m[:, None] - _LOG_MULTIPLIERS[None, :]), axis=1).astype(np.int64)


class DistilledPolicy:
    """A fitted tree that speaks the baselines' ``predict`` API (discrete actions).

    Args:
        tree: a fitted ``DecisionTreeClassifier`` whose classes are action indices.
    """

    continuous = False

    def __init__(self, tree: DecisionTreeClassifier):
        self.tree = tree

    def predict(
        self, observation: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        obs = np.asarray(observation, dtype=np.float64)
        single = obs.ndim == 1
        actions = self.tree.predict(obs.reshape(1, -1) if single else obs).astype(np.int64)
        return (actions[0] if single else actions), None


class Distillation(NamedTuple):
    """The fitted tree, its rules as text, and how well it agrees with the agent on held-out observations."""

    policy: DistilledPolicy
    rules: str
    fidelity: float  # share of held-out observations where the tree takes the agent's action
    majority_fidelity: float  # the same for always taking the agent's most common action
    held_out: int  # held-out observations
    fitted_on: int  # observations fitted on


def distill(
    fit_obs: np.ndarray,
    fit_actions: np.ndarray,
    test_obs: np.ndarray,
    test_actions: np.ndarray,
    feature_names: list[str],
    max_depth: int = 3,
    min_samples_leaf: int = 50,
    seed: int = 0,
) -> Distillation:
    """Fit a tree of depth ``max_depth`` to (``fit_obs``, ``fit_actions``) and score it on the test set.

    Args:
        fit_obs, fit_actions: observations and discrete actions from the distillation seeds.
        test_obs, test_actions: the same from held-out seeds.
        feature_names: the observation's column names (for the rules).
        max_depth: depth of the tree; 3 gives at most 8 rules, which a person can read.
        min_samples_leaf: smallest leaf, so no rule rests on a handful of accounts.
        seed: the tree's random state (ties between equally good splits).
    """
    if len(fit_obs) == 0 or len(test_obs) == 0:
        raise ValueError("distillation needs observations to fit on and held-out observations to score")
    if not isinstance(max_depth, int) or max_depth < 1:
        raise ValueError(f"max_depth must be a positive integer, got {max_depth!r}")
    tree = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=min_samples_leaf, random_state=seed)
    tree.fit(np.asarray(fit_obs, dtype=np.float64), np.asarray(fit_actions))
    predicted = tree.predict(np.asarray(test_obs, dtype=np.float64))
    test_actions = np.asarray(test_actions)
    values, counts = np.unique(fit_actions, return_counts=True)
    majority = values[np.argmax(counts)]
    class_names = [f"x{LIMIT_MULTIPLIERS[int(c)]:g}" for c in tree.classes_]
    if len(class_names) == 1:  # export_text names a lone class by its index, not its label
        rules = f"always {class_names[0]} (the agent took one action on every observation)\n"
    else:
        rules = export_text(tree, feature_names=feature_names, class_names=class_names, decimals=3)
    return Distillation(
        DistilledPolicy(tree),
        rules,
        float(np.mean(predicted == test_actions)),
        float(np.mean(test_actions == majority)),
        len(test_obs),
        len(fit_obs),
    )
