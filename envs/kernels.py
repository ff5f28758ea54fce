"""Compiled loops (numba) for the hottest passes over every account, bit for bit the numpy they replace.

Each kernel is one pass over the accounts where numpy makes one pass per operation (a temporary per
operation, each larger than the CPU's cache at 100k accounts). They do only what rounds the same on every
CPU and in any compiler: integer hashing and bit moves, copies, casts, comparisons, clips, and IEEE
``+ - * /`` in numpy's precision (float32 where numpy computed in float32) and numpy's order of operations
(numba contracts nothing into fused multiply-adds without ``fastmath``, which is off). No transcendental
function: exp, log, tanh stay in numpy, whose vectorised versions round differently from the C library's.
``tests/envs/test_kernels.py`` checks each kernel against the numpy expressions it replaces.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True, boundscheck=False)

_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_S9, _S27, _S30, _S31, _S32 = (np.uint64(s) for s in (9, 27, 30, 31, 32))
_LOW32 = np.uint64(0xFFFFFFFF)
_ONE_F32_BITS = np.uint64(0x3F800000)  # exponent of 1.0f


@_jit
def _mix64(x: np.uint64) -> np.uint64:
    """SplitMix64 finaliser of one word (as envs.random_stream._mix64_; uint64 arithmetic wraps)."""
    x ^= x >> _S30
    x *= _MUL1
    x ^= x >> _S27
    x *= _MUL2
    x ^= x >> _S31
    return x


@_jit
def monthly_bits(position: np.ndarray, second_word: np.uint64, out: np.ndarray) -> None:
    """The float32 bit patterns in [1, 2) of the monthly draws of ``random_stream.monthly_uniforms_at``:
    ``out`` (uint32, shape (4, n)) gets the high halves of words 0 and 1, then their low halves, each
    shifted to the top 23 mantissa bits under the exponent of 1.0f. ``second_word``: word 1's offset."""
    for i in range(position.shape[0]):
        w0 = _mix64(position[i])
        w1 = _mix64(position[i] + second_word)
        out[0, i] = ((w0 >> _S32) >> _S9) | _ONE_F32_BITS
        out[1, i] = ((w1 >> _S32) >> _S9) | _ONE_F32_BITS
        out[2, i] = ((w0 & _LOW32) >> _S9) | _ONE_F32_BITS
        out[3, i] = ((w1 & _LOW32) >> _S9) | _ONE_F32_BITS


@_jit
def _clip(x: np.float32, low: np.float32, high: np.float32) -> np.float32:
    """np.clip of one float32 (NaN stays NaN)."""
    if x < low:
        return low
    if x > high:
        return high
    return x


@_jit
def observe_rows(
    rows: np.ndarray,
    idx: np.ndarray,
    full: bool,
    line: np.ndarray,
    origination_line: np.ndarray,
    balance: np.ndarray,
    months_past_due: np.ndarray,
    months_on_book: np.ndarray,
    payment_ratios: np.ndarray,
    score: np.ndarray,
    apr: np.ndarray,
    age_band: np.ndarray,
    city_tier: np.ndarray,
    thin_file: np.ndarray,
    repayment_mode: np.ndarray,
    months_since_line_change: np.ndarray,
    stress: np.float32,
    low: np.ndarray,
    high: np.ndarray,
) -> None:
    """Fill ``rows`` (float32, (17, m)) with the observations of the accounts ``idx`` (every account if
    ``full``: then m is their number and ``idx`` is not read), in the layout
    of ``envs.observation.observation_entries``; balance, utilisation and the month counts clipped to
    ``[low, high]`` (the space's float32 bounds). Utilisation is divided in float64, then rounded."""
    if full:
        _observe_all(
            rows,
            line,
            origination_line,
            balance,
            months_past_due,
            months_on_book,
            payment_ratios,
            score,
            apr,
            age_band,
            city_tier,
            thin_file,
            repayment_mode,
            months_since_line_change,
            stress,
            low,
            high,
        )
        return
    for j in range(rows.shape[1]):
        i = idx[j]
        rows[0, j] = line[i]
        rows[1, j] = origination_line[i]
        rows[2, j] = _clip(np.float32(balance[i]), low[2], high[2])
        rows[3, j] = _clip(np.float32(balance[i] / line[i]), low[3], high[3])
        rows[4, j] = months_past_due[i]
        rows[5, j] = _clip(np.float32(months_on_book[i]), low[5], high[5])
        rows[6, j] = payment_ratios[0, i]
        rows[7, j] = payment_ratios[1, i]
        rows[8, j] = payment_ratios[2, i]
        rows[9, j] = score[i]
        rows[10, j] = apr[i]
        rows[11, j] = age_band[i]
        rows[12, j] = city_tier[i]
        rows[13, j] = np.float32(1.0) if thin_file[i] else np.float32(0.0)
        rows[14, j] = repayment_mode[i]
        rows[15, j] = _clip(np.float32(months_since_line_change[i]), low[15], high[15])
        rows[16, j] = stress


@_jit
def _observe_all(rows, line, origination_line, balance, months_past_due, months_on_book, payment_ratios,
                 score, apr, age_band, city_tier, thin_file, repayment_mode, months_since_line_change, stress,
                 low, high):  # fmt: skip
    """observe_rows of every account, row by row (contiguous loops the compiler vectorises)."""
    m = rows.shape[1]
    for j in range(m):
        rows[0, j] = line[j]
        rows[1, j] = origination_line[j]
    for j in range(m):
        rows[2, j] = _clip(np.float32(balance[j]), low[2], high[2])
        rows[3, j] = _clip(np.float32(balance[j] / line[j]), low[3], high[3])
    for j in range(m):
        rows[4, j] = months_past_due[j]
        rows[5, j] = _clip(np.float32(months_on_book[j]), low[5], high[5])
    for j in range(m):
        rows[6, j] = payment_ratios[0, j]
        rows[7, j] = payment_ratios[1, j]
        rows[8, j] = payment_ratios[2, j]
    for j in range(m):
        rows[9, j] = score[j]
        rows[10, j] = apr[j]
    for j in range(m):
        rows[11, j] = age_band[j]
        rows[12, j] = city_tier[j]
        rows[13, j] = thin_file[j]
        rows[14, j] = repayment_mode[j]
    for j in range(m):
        rows[15, j] = _clip(np.float32(months_since_line_change[j]), low[15], high[15])
        rows[16, j] = stress


@_jit
def _np_clip(x: Any, low: Any, high: Any) -> Any:  # (float32 or float64: compiled for each)
    """np.clip of one value as numpy computes it (bounds not NaN): max(x, low), then min(., high); NaN stays
    NaN because every comparison with it is false, and x equal to a bound (+0 and -0) gives the bound. No
    isnan branch, so the two selects vectorise."""
    t = low if x <= low else x
    return high if t >= high else t


@_jit
def new_lines(
    old_line: np.ndarray,
    multiplier: np.ndarray,
    min_line: float,
    max_line: float,
    line: np.ndarray,
    unchanged: np.ndarray,
    cut: np.ndarray,
    adapted_line: np.ndarray,
    slow_adapted_line: np.ndarray,
    adapt_rate: float,
    slow_adapt_rate: float,
) -> None:
    """Step 1 of envs.dynamics.step: the new line ``rint(old x multiplier / 100) x 100`` inside [min_line,
    max_line], whether it is unchanged or cut, and the borrower's adjustment to a raise (each adapted line
    moves up by its rate times the gap, never down). Float64 throughout, in numpy's order of operations."""
    for i in range(old_line.shape[0]):
        x = old_line[i] * multiplier[i]
        x /= 100.0
        x = np.rint(x)
        x *= 100.0
        x = _np_clip(x, min_line, max_line)
        line[i] = x
        unchanged[i] = x == old_line[i]
        cut[i] = x < old_line[i]
        up = _np_clip(x - adapted_line[i], 0.0, np.inf)
        up *= adapt_rate
        adapted_line[i] += up
        up = _np_clip(x - slow_adapted_line[i], 0.0, np.inf)
        up *= slow_adapt_rate
        slow_adapted_line[i] += up


@_jit
def behaviour_score_points(
    balance: np.ndarray,
    origination_line: np.ndarray,
    utilisation_average: np.ndarray,
    payment_ratios: np.ndarray,
    missed_payments: np.ndarray,
    months_on_book: np.ndarray,
    origination_score: np.ndarray,
    trend_memory: np.float32,
    utilisation_points: np.float32,
    trend_points: np.float32,
    payment_points: np.float32,
    history_points: np.float32,
    tenure_points: np.float32,
    centre_points: np.float32,
    low: np.float32,
    high: np.float32,
    score: np.ndarray,
) -> None:
    """envs.dynamics._behaviour_score in one pass, float32 in its order of operations: utilisation of the
    origination line (divided in float64, rounded, clipped to [0, 1]), its rise over the running average
    (which it updates), the payment ratios' sum, remembered misses and months on book, each times its
    points, on the origination score less the centre, clipped to [low, high]."""
    for i in range(balance.shape[0]):
        util = np.float32(balance[i] / origination_line[i])
        util = np.float32(_np_clip(util, np.float32(0.0), np.float32(1.0)))
        trend = util - utilisation_average[i]
        utilisation_average[i] += trend * trend_memory
        s = util * utilisation_points
        s += trend * trend_points
        paid = payment_ratios[0, i] + payment_ratios[1, i]
        paid += payment_ratios[2, i]
        s += paid * payment_points
        s += missed_payments[i] * history_points
        s += np.float32(months_on_book[i]) * tenure_points
        s += origination_score[i]
        s -= centre_points
        score[i] = _np_clip(s, low, high)


@_jit
def _np_maximum(a: Any, b: Any) -> Any:
    """np.maximum of two values: NaN propagates; of two equal values (+0 and -0) the second, as the SIMD
    loops return."""
    if np.isnan(a):
        return a
    if np.isnan(b):
        return b
    return a if a > b else b


@_jit
def _np_minimum(a: Any, b: Any) -> Any:
    """np.minimum of two values, the counterpart of :func:`_np_maximum`."""
    if np.isnan(a):
        return a
    if np.isnan(b):
        return b
    return a if a < b else b


@_jit
def balance_targets(
    adapted_line: np.ndarray,
    slow_adapted_line: np.ndarray,
    origination_line: np.ndarray,
    line_response: np.ndarray,
    need_headroom: np.ndarray,
    target_balance: np.ndarray,
    noise_draw: np.ndarray,
    line: np.ndarray,
    balance: np.ndarray,
    fast_share: float,
    slow_share: float,
    noise_span: np.float32,
    noise_half: np.float32,
    adjust_rate: float,
    target: np.ndarray,
    noise: np.ndarray,
    wanted: np.ndarray,
) -> None:
    """Step 6 of envs.dynamics.step before its per-subset corrections, in numpy's order of operations:
    ``target`` (the adapted lines weighted, less the original line, times the response, capped by the
    headroom, plus the target balance), ``noise`` (float32 ``draw x span - half``, then times the line in
    float64) and ``wanted`` (the balance moved toward the target by the adjustment rate, plus the noise)."""
    for i in range(balance.shape[0]):
        t = adapted_line[i] * fast_share
        t += slow_share * slow_adapted_line[i]
        t -= origination_line[i]
        t *= line_response[i]
        t = _np_minimum(t, need_headroom[i])
        t += target_balance[i]
        target[i] = t
        z = noise_draw[i] * noise_span
        z -= noise_half
        e = np.float64(z) * line[i]
        noise[i] = e
        w = t - balance[i]
        w *= adjust_rate
        w += balance[i]
        w += e
        wanted[i] = w


@_jit
def bounded_wanted(wanted: np.ndarray, balance: np.ndarray, line: np.ndarray, floor: np.ndarray) -> None:
    """Step 6's bounds on the wanted balance, in place: at least the floor where the balance is above the
    line (``floor x (balance > line)``, 0 elsewhere), at most ``max(line, floor)``, at least 0."""
    for i in range(wanted.shape[0]):
        lower = floor[i] * (1.0 if balance[i] > line[i] else 0.0)
        w = _np_maximum(wanted[i], lower)
        w = _np_minimum(w, _np_maximum(line[i], floor[i]))
        wanted[i] = _np_clip(w, 0.0, np.inf)


@_jit
def payments(
    wanted: np.ndarray, floor: np.ndarray, balance: np.ndarray, interest: np.ndarray, drawn: np.ndarray,
    statement: np.ndarray, repaid: np.ndarray,
) -> None:  # fmt: skip
    """Step 6's flows: ``drawn = max(wanted - floor, 0)``, ``statement = balance + interest``,
    ``repaid = statement + drawn - wanted`` (added, then subtracted, as numpy did)."""
    for i in range(wanted.shape[0]):
        d = _np_clip(wanted[i] - floor[i], 0.0, np.inf)
        drawn[i] = d
        st = balance[i] + interest[i]
        statement[i] = st
        r = st + d
        r -= wanted[i]
        repaid[i] = r


@_jit
def write_new_accounts(
    idx: np.ndarray,
    new: tuple,
    state: tuple,
    first_balloon: np.ndarray,
    never_cut: int,
) -> None:
    """Origination's writes (envs.population.originate) in one pass over the new accounts ``idx``: the
    values computed for them (``new``, one per account, in the order unpacked below) copied (cast to the
    state's dtype, as numpy's assignment casts) into the state's arrays (``state``, in the order unpacked
    below), the rest of a fresh account's state set to its starting value. ``shock_rate`` is the float32
    sum of the float32 job-loss and onset rates, as originate added them."""
    (key, stream, job_loss, target_balance, line_response, distress_onset, miss_logit_base, burden_per_cny,
     miss_per_cny, attrition_logit_base, log_need, need_headroom, age, city, thin, mode, scheduled_share, apr,
     monthly_rate, score, line) = new  # fmt: skip
    (s_key, s_stream, s_unemployed, s_closing, s_job_loss_rate, s_target_balance, s_line_response,
     s_adapted_line, s_slow_adapted_line, s_distress, s_distress_onset, s_shock_rate, s_miss_logit_base,
     s_burden_per_cny, s_miss_per_cny, s_attrition_logit_base, s_log_need, s_need_headroom, s_age_band,
     s_city_tier, s_thin_file, s_repayment_mode, s_scheduled_share, s_apr, s_monthly_rate, s_origination_score,
     s_origination_line, s_line, s_balance, s_months_past_due, s_months_on_book, s_months_since_line_change,
     s_months_since_cut, s_months_to_balloon, s_missed_payments, s_score, s_utilisation_average,
     s_payment_ratios, s_provision) = state  # fmt: skip
    for j in range(idx.shape[0]):
        i = idx[j]
        s_key[i] = key[j]
        s_stream[i] = stream[j]
        s_unemployed[i] = False
        s_closing[i] = False
        s_job_loss_rate[i] = job_loss[j]
        s_target_balance[i] = target_balance[j]
        s_line_response[i] = line_response[j]
        s_adapted_line[i] = line[j]
        s_slow_adapted_line[i] = line[j]
        s_distress[i] = 0.0
        s_distress_onset[i] = distress_onset[j]
        s_shock_rate[i] = s_job_loss_rate[i] + s_distress_onset[i]
        s_miss_logit_base[i] = miss_logit_base[j]
        s_burden_per_cny[i] = burden_per_cny[j]
        s_miss_per_cny[i] = miss_per_cny[j]
        s_attrition_logit_base[i] = attrition_logit_base[j]
        s_log_need[i] = log_need[j]
        s_need_headroom[i] = need_headroom[j]
        s_age_band[i] = age[j]
        s_city_tier[i] = city[j]
        s_thin_file[i] = thin[j]
        s_repayment_mode[i] = mode[j]
        s_scheduled_share[i] = scheduled_share[j]
        s_apr[i] = apr[j]
        s_monthly_rate[i] = monthly_rate[j]
        s_origination_score[i] = score[j]
        s_origination_line[i] = line[j]
        s_line[i] = line[j]
        s_balance[i] = 0.0
        s_months_past_due[i] = 0
        s_months_on_book[i] = 0
        s_months_since_line_change[i] = 0
        s_months_since_cut[i] = never_cut
        s_months_to_balloon[i] = first_balloon[mode[j]]
        s_missed_payments[i] = 0.0
        s_score[i] = score[j]
        s_utilisation_average[i] = 0.0
        for lag in range(s_payment_ratios.shape[0]):
            s_payment_ratios[lag, i] = 1.0
        s_provision[i] = 0.0


@_jit
def stage1_logit(score: np.ndarray, slope: np.float32, shift: np.float32, out: np.ndarray) -> None:
    """``score x slope - shift`` in float32 (envs.accounting.expected_loss before its exp)."""
    for i in range(score.shape[0]):
        x = score[i] * slope
        x -= shift
        out[i] = x


@_jit
def pd_lgd_exposure(
    exp_logit: np.ndarray, lgd: np.float32, late: np.ndarray, late_pd_lgd: np.ndarray, months_past_due: np.ndarray,
    line: np.ndarray, balance: np.ndarray, ccf: float, out: np.ndarray,
) -> None:  # fmt: skip
    """The rest of envs.accounting.expected_loss, numpy's order: ``pd_lgd = lgd / (exp_logit + 1)`` in
    float32 (written into ``exp_logit``), replaced at ``late`` by ``late_pd_lgd[months_past_due]``; then
    ``out = (max(line - balance, 0) x ccf + balance) x pd_lgd`` in float64."""
    for i in range(exp_logit.shape[0]):
        x = exp_logit[i] + np.float32(1.0)
        exp_logit[i] = lgd / x
    for j in range(late.shape[0]):
        i = late[j]
        exp_logit[i] = late_pd_lgd[months_past_due[i]]
    for i in range(line.shape[0]):
        e = _np_clip(line[i] - balance[i], 0.0, np.inf)
        e *= ccf
        e += balance[i]
        e *= np.float64(exp_logit[i])
        out[i] = e
