"""The compiled scorecard (agents.scorecard) gives numpy's bits: the binning and sums it replaces, written out."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from agents.policies import obs_index
from agents.risk_scorecard import CATEGORICAL, CONTINUOUS, RiskModel, features
from agents.scorecard import scorecard_logit

NAMES = CONTINUOUS + CATEGORICAL


def numpy_logit(model: RiskModel, obs: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """RiskModel.predict_risk's numpy path before agents.scorecard: searchsorted per attribute, sums in order."""
    with np.errstate(invalid="ignore"):  # inf - inf in a drawdown: NaN, as in the kernel
        values = features(obs, previous)
    logit = np.full(len(obs), model.intercept)
    for name, e in model.edges.items():
        logit += np.asarray(model.coef[name])[np.searchsorted(np.asarray(e), values[name], side="right")]
    return logit


def random_model(rng: np.random.Generator, obs: np.ndarray, previous: np.ndarray) -> RiskModel:
    """Edges at quantiles of the rows' own values (so many values sit exactly on an edge), a few with NaN
    or infinite edges, one attribute without edges; random coefficients; the attributes in a shuffled order."""
    with np.errstate(invalid="ignore"):
        values = features(obs, previous)
    edges, coef = {}, {}
    for i, name in enumerate(rng.permutation(NAMES)):
        finite = values[name][np.isfinite(values[name])]
        e = np.unique(np.quantile(finite, rng.uniform(0, 1, int(rng.integers(1, 10))))).tolist()
        if i == 0:
            e = []
        elif i in (1, 2):
            e = [-np.inf, *e, np.inf]
        elif i == 3:
            e = [*e, np.nan]
        edges[name] = e
        coef[name] = rng.normal(0, 1, len(e) + 1).tolist()
    return RiskModel(edges, coef, float(rng.normal()), 3)


def book(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Observations of a real book a few months in, with NaN, infinities, zero and negative lines spliced in."""
    venv = envs.make_portfolio("wechat", n, seed=7)
    obs = venv.reset()
    for _ in range(3):
        obs = venv.step(rng.integers(0, len(envs.LIMIT_MULTIPLIERS), n))[0]
    obs = obs.copy()
    col = obs_index()
    rows = rng.choice(n, size=n // 5, replace=False)
    obs[rows[0::4], rng.integers(0, obs.shape[1], len(rows[0::4]))] = np.nan
    obs[rows[1::4], rng.integers(0, obs.shape[1], len(rows[1::4]))] = np.inf
    obs[rows[2::4], col["line"]] = rng.choice([0.0, -5.0, 0.5, 1.0], len(rows[2::4]))
    obs[rows[3::4], col["origination_line"]] = rng.choice([0.0, -np.inf, 1.0], len(rows[3::4]))
    previous = obs[:, col["balance"]].astype(np.float64) * rng.uniform(0.5, 1.5, n)
    previous[rows[:10]] = np.nan
    return obs, previous


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_compiled_logit_is_numpys_bit_for_bit(dtype):
    rng = np.random.default_rng(0)
    obs, previous = book(3000, rng)  # 3000 rows: more than one of the kernel's chunks
    obs = obs.astype(dtype)
    for _ in range(5):
        model = random_model(rng, obs, previous)
        for prev in (previous, None):
            fast = scorecard_logit(model.edges, model.coef, model.intercept, obs, prev)
            assert fast is not None
            expected = numpy_logit(model, obs, prev)
            assert fast.tobytes() == expected.tobytes()  # every bit, NaN included
            with np.errstate(invalid="ignore"):
                risk = model.predict_risk(obs, prev)
            assert risk.tobytes() == (1.0 / (1.0 + np.exp(-expected))).tobytes()
    # A test that can fail: another order of the same sums differs in the last bits on some rows.
    reordered = RiskModel(dict(reversed(model.edges.items())), model.coef, model.intercept, 3)
    other = scorecard_logit(reordered.edges, reordered.coef, reordered.intercept, obs, previous)
    assert other is not None and other.tobytes() != numpy_logit(model, obs, previous).tobytes()


def test_the_numpy_path_answers_what_the_kernel_cannot_promise():
    rng = np.random.default_rng(1)
    obs, previous = book(200, rng)
    model = random_model(rng, obs, previous)
    name = next(n for n, e in model.edges.items() if len(e) >= 3 and np.all(np.isfinite(e)))
    unsorted = {**model.edges, name: list(reversed(model.edges[name]))}  # searchsorted's search path decides
    for args in (
        (unsorted, model.coef, model.intercept, obs, previous),
        (model.edges, model.coef, model.intercept, np.zeros(obs.shape, np.float16), previous),
        (model.edges, model.coef, model.intercept, obs, previous[:-1]),
        (model.edges, model.coef, model.intercept, obs[0], None),
    ):
        assert scorecard_logit(*args) is None
    odd = RiskModel(unsorted, model.coef, model.intercept, 3)
    with np.errstate(invalid="ignore"):
        risk = odd.predict_risk(obs, previous)
    assert risk.tobytes() == (1.0 / (1.0 + np.exp(-numpy_logit(odd, obs, previous)))).tobytes()
