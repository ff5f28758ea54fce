"""A scorecard's logit in one compiled pass over the accounts, bit for bit the numpy of ``agents.risk_scorecard``.

``RiskModel.predict_risk`` builds every attribute as a float64 column (``risk_scorecard.features``), bins each
with ``np.searchsorted(edges, values, side="right")`` and adds each attribute's coefficient to the intercept,
attribute after attribute: about 18 numpy passes and as many temporaries per model and month, most of the
risk policy's cost on a 1M-account book (``scripts/benchmark.py``). :func:`scorecard_logit` does the same
arithmetic in one numba pass over chunks of accounts: the same casts, the same IEEE ``max`` / ``-`` / ``/``
in float64, the same bin (NaN-aware comparisons, as numpy's sort order puts NaN last), the same additions in
the same order (no ``fastmath``, so no reassociation or fused multiply-add). The logistic (``exp``) stays in
numpy.

It answers None where it could not promise numpy's bins, and the caller keeps its numpy path: edges not
sorted in numpy's order (numpy's binary search on unsorted edges depends on its search path), observations
neither float32 nor float64, a ``previous_balance`` not one value per row.
``tests/agents/test_scorecard.py`` checks it against that numpy path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numba
import numpy as np

from agents.policies import obs_index

# Derived attributes of risk_scorecard.features (not observation columns): the line as a multiple of the
# origination line, and the balance's change since last month as a share of the line.
_LINE_RATIO, _DRAWDOWN = -1, -2


_CHUNK = 1024  # rows per pass: the chunk's columns stay in the L1 cache while every edge is compared


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _at_least_one(x: float) -> float:
    """np.maximum(x, 1.0) of one float64 (NaN stays NaN)."""
    return x if (x >= 1.0) | (x != x) else 1.0


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _logit_kernel(
    obs: np.ndarray,  # (n, 17) float32 or float64
    previous: np.ndarray,  # (n,) float64 [CNY]; read only when has_previous
    has_previous: bool,
    codes: np.ndarray,  # (attributes,) int64: observation column, or _LINE_RATIO / _DRAWDOWN
    edge_start: np.ndarray,  # (attributes + 1,) int64: attribute k's edges are edges[edge_start[k]:edge_start[k+1]]
    edges: np.ndarray,  # float64, each attribute's edges sorted (NaN last)
    coef_start: np.ndarray,  # (attributes,) int64: attribute k's coefficient of bin i is coefs[coef_start[k] + i]
    coefs: np.ndarray,  # float64
    intercept: float,
    columns: np.ndarray,  # int64 (line, origination_line, balance)
    out: np.ndarray,  # (n,) float64: the logit
) -> None:
    n = obs.shape[0]
    value, line, logit = np.empty(_CHUNK), np.empty(_CHUNK), np.empty(_CHUNK)
    bin_ = np.empty(_CHUNK, np.int64)
    for start in range(0, n, _CHUNK):
        m = min(n, start + _CHUNK) - start
        for r in range(m):
            logit[r] = intercept
            line[r] = _at_least_one(np.float64(obs[start + r, columns[0]]))
        for k in range(codes.shape[0]):  # the attributes in the model's order: numpy's order of additions
            code = codes[k]
            if code >= 0:
                for r in range(m):
                    value[r] = np.float64(obs[start + r, code])
            elif code == _LINE_RATIO:
                for r in range(m):
                    value[r] = line[r] / _at_least_one(np.float64(obs[start + r, columns[1]]))
            else:
                for r in range(m):
                    balance = np.float64(obs[start + r, columns[2]])
                    value[r] = (balance - (previous[start + r] if has_previous else balance)) / line[r]
            # searchsorted(side="right"): the number of edges e with not less(v, e) in numpy's NaN-aware
            # order, less(v, e) = v < e or (e is NaN and v is not); counted edge by edge over the chunk
            # (no branch per account, so the comparisons vectorise).
            for r in range(m):
                bin_[r] = 0
            for j in range(edge_start[k], edge_start[k + 1]):
                e = edges[j]
                if e != e:
                    for r in range(m):
                        bin_[r] += value[r] != value[r]
                else:
                    for r in range(m):
                        bin_[r] += not (value[r] < e)
            first = coef_start[k]
            for r in range(m):
                logit[r] += coefs[first + bin_[r]]
        for r in range(m):
            out[start + r] = logit[r]


def _sorted_as_numpy_sorts(e: np.ndarray) -> bool:
    """Whether ``e`` is in np.sort's order (ascending, NaN last), where binning by a scan equals searchsorted."""
    a, b = e[:-1], e[1:]
    return not bool(np.any((b < a) | (np.isnan(a) & ~np.isnan(b))))


def scorecard_logit(
    edges: Mapping[str, Sequence[float]],
    coef: Mapping[str, Sequence[float]],
    intercept: float,
    obs: np.ndarray,
    previous_balance: np.ndarray | None,
) -> np.ndarray | None:
    """``intercept`` plus each attribute's bin coefficient, attributes in ``edges``' order, for every row of
    ``obs`` (n, 17); None when the numpy path must answer (module docstring). ``previous_balance``: each
    account's balance a month before [CNY] (None: no drawdown)."""
    obs = np.asarray(obs)
    if obs.ndim != 2 or obs.dtype not in (np.float32, np.float64):
        return None
    n = len(obs)
    has_previous = previous_balance is not None
    previous = np.asarray(previous_balance, dtype=np.float64) if has_previous else np.zeros(0)
    if has_previous and previous.shape != (n,):
        return None
    from agents.risk_scorecard import CATEGORICAL, CONTINUOUS  # (imported here: risk_scorecard imports this module)

    col, derived = obs_index(), {"line_ratio": _LINE_RATIO, "drawdown": _DRAWDOWN}
    codes: list[int] = []
    flat_edges: list[np.ndarray] = []
    flat_coefs: list[np.ndarray] = []
    for name, e in edges.items():
        e_, c_ = np.asarray(e, dtype=np.float64), np.asarray(coef[name], dtype=np.float64)
        if e_.ndim != 1 or c_.shape != (len(e_) + 1,) or not _sorted_as_numpy_sorts(e_):
            return None
        if name not in CONTINUOUS + CATEGORICAL:  # features() has no such attribute: numpy's KeyError
            return None
        codes.append(col[name] if name in col else derived[name])
        flat_edges.append(e_)
        flat_coefs.append(c_)
    edge_start = np.cumsum([0] + [len(e) for e in flat_edges], dtype=np.int64)
    coef_start = np.cumsum([0] + [len(c) for c in flat_coefs], dtype=np.int64)[:-1]
    out = np.empty(n, dtype=np.float64)
    _logit_kernel(
        obs,
        previous,
        has_previous,
        np.asarray(codes, dtype=np.int64),
        edge_start,
        np.concatenate(flat_edges) if flat_edges else np.zeros(0),
        coef_start,
        np.concatenate(flat_coefs) if flat_coefs else np.zeros(0),
        float(intercept),
        np.array([col["line"], col["origination_line"], col["balance"]], dtype=np.int64),
        out,
    )
    return out
