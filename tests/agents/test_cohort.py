"""agents.cohort: a ``rowwise`` policy acts on the cohort's accounts only, and every recorded figure is
what acting on the whole book gives."""

from __future__ import annotations

import numpy as np

import envs
from agents.cohort import run_cohort
from agents.policies import RuleBased


class _Counting(RuleBased):
    """The rule (an account's action depends on its own observation only), counting the rows it is asked."""

    def __init__(self, rowwise: bool):
        super().__init__()
        self.rowwise = rowwise
        self.rows: list[int] = []

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        self.rows.append(len(observation))
        return super().predict(observation, state, episode_start, deterministic)


def _run(policy, months: int = 24):
    venv = envs.make_portfolio("wechat", 2000, seed=3)
    return run_cohort(policy, venv, months, run_off_months=60)


def test_rowwise_policy_acts_on_the_cohort_only_and_records_the_same_figures():
    whole, subset = _Counting(rowwise=False), _Counting(rowwise=True)
    a, b = _run(whole), _run(subset)
    assert set(whole.rows) == {2000}
    assert subset.rows[0] == 2000 and subset.rows[-1] < 2000  # accounts that ended are not asked
    for name in a.sums:
        assert np.array_equal(a.sums[name], b.sums[name]), name
    assert np.array_equal(a.stress, b.stress) and np.array_equal(a.left, b.left) and a.simulated == b.simulated
