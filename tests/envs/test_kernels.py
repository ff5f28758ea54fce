"""The compiled kernels (envs.kernels) give, bit for bit, what the numpy expressions they replace give.

Each reference below is the numpy code the kernel replaced, written out here; the inputs include the
awkward values (ties of the rounding, values on and beyond the clip bounds, NaN, zero balances).
"""

from __future__ import annotations

import numpy as np

import envs
from envs import kernels
from envs import random_stream as rs
from envs.observation import observe


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_monthly_bits_are_numpys_splitmix_halves():
    rng = np.random.default_rng(0)
    position = rng.integers(0, 2**64, size=5000, dtype=np.uint64, endpoint=False)
    words = np.stack([position, position + rs._times_golden(rs._STREAMS)])
    mixed = rs.mix64(words)
    halves = np.concatenate([mixed >> np.uint64(32), mixed & np.uint64(0xFFFFFFFF)]).astype(np.uint32)
    expected = ((halves >> 9) | np.uint32(0x3F800000)).view(np.float32) - np.float32(1.0)
    assert _same(rs.monthly_uniforms_at(position), expected)


def _observe_numpy(s, stress, space, idx=None):
    """The row-by-row numpy observation the kernel replaced."""
    take = (lambda a: a) if idx is None else (lambda a: a[..., idx])  # noqa: E731
    n = len(s) if idx is None else len(idx)
    rows = np.empty((space.shape[0], n), dtype=np.float32)
    rows[0], rows[1], rows[2] = take(s.line), take(s.origination_line), take(s.balance)
    np.divide(take(s.balance), take(s.line), out=rows[3], casting="unsafe")
    rows[4], rows[5] = take(s.months_past_due), take(s.months_on_book)
    for lag, ratios in enumerate(s.payment_ratios):
        rows[6 + lag] = take(ratios)
    rows[9], rows[10], rows[11], rows[12] = take(s.score), take(s.apr), take(s.age_band), take(s.city_tier)
    rows[13], rows[14], rows[15] = take(s.thin_file), take(s.repayment_mode), take(s.months_since_line_change)
    rows[16] = stress
    for i in (2, 3, 5, 15):
        np.clip(rows[i], space.low[i], space.high[i], out=rows[i])
    return rows


def test_clip_of_one_value_is_numpys_clip_for_nan_infinities_and_bounds():
    # the branch-free clip relies on every comparison with NaN being false: NaN must come out as NaN
    x = np.array([np.nan, -np.inf, -2.5, 0.0, 0.25, 1.0, 1.5, np.inf], dtype=np.float32)
    for low, high in ((0.0, 1.0), (-1.0, np.inf), (0.25, 0.25)):
        lo, hi = np.float32(low), np.float32(high)
        clipped = np.array([kernels._np_clip(v, lo, hi) for v in x], dtype=np.float32)
        assert _same(clipped, np.clip(x, lo, hi)), (low, high, clipped)


def test_observation_kernel_matches_numpy_rows_including_clipped_and_nan_entries():
    venv = envs.make_portfolio("wechat", 3000, seed=5)
    venv.reset()
    rng = np.random.default_rng(1)
    for _ in range(4):
        venv.step(rng.integers(0, 7, 3000))
    s = venv.sim.state
    s.balance[:5] = [np.nan, 0.0, 1e9, s.line[3] * 10.0, s.line[4] * 12.0]  # NaN, zero, past the bounds
    s.months_on_book[5], s.months_since_line_change[6] = 10**6, 10**6
    for stress in (False, True):
        assert _same(observe(s, stress, venv._box), _observe_numpy(s, stress, venv._box))
        idx = np.array([4, 0, 2999, 5, 5, 17])
        assert _same(observe(s, stress, venv._box, idx), _observe_numpy(s, stress, venv._box, idx))


def test_new_lines_match_numpy_rounding_clipping_and_adaptation():
    rng = np.random.default_rng(2)
    n = 4000
    old = np.round(rng.uniform(100, 60_000, n), -2)
    old[:4] = [250.0, 350.0, 100.0, 50_000.0]
    multiplier = rng.choice(envs.LIMIT_MULTIPLIERS, n).astype(np.float64)
    multiplier[:4] = [1.0, 1.0, 0.5, 1.5]  # 250 x 1 and 350 x 1 are exact ties of the rounding to hundreds
    multiplier[4] = np.nan
    adapted, slow = old * rng.uniform(0.5, 1.5, n), old * rng.uniform(0.5, 1.5, n)
    lo, hi, rate, slow_rate = 500.0, 50_000.0, 0.3, 0.05
    line = old * multiplier / 100.0
    line = np.clip(np.rint(line) * 100.0, lo, hi)
    expected_adapted = adapted + np.clip(line - adapted, 0.0, np.inf) * rate
    expected_slow = slow + np.clip(line - slow, 0.0, np.inf) * slow_rate
    got, unchanged, cut = np.empty(n), np.empty(n, bool), np.empty(n, bool)
    kernels.new_lines(old, multiplier, lo, hi, got, unchanged, cut, adapted, slow, rate, slow_rate)
    assert _same(got, line) and np.isnan(got[4])
    assert _same(unchanged, line == old) and _same(cut, line < old)
    assert _same(adapted, expected_adapted) and _same(slow, expected_slow)


def test_behaviour_score_kernel_matches_numpy_float32_sequence():
    rng = np.random.default_rng(3)
    n = 4000
    f32 = np.float32
    balance = rng.uniform(0, 30_000, n)
    balance[:3] = [0.0, 1e7, np.nan]
    origination_line = rng.uniform(500, 20_000, n)
    average = rng.uniform(0, 1, n).astype(f32)
    ratios = rng.uniform(0, 1, (3, n)).astype(f32)
    missed = rng.uniform(0, 3, n).astype(f32)
    months = rng.integers(0, 400, n).astype(np.int32)
    origination_score = rng.uniform(300, 900, n).astype(f32)
    k = [f32(v) for v in (0.3, -150.0, -40.0, 90.0, -70.0, 0.2, 35.0)]
    util = np.empty(n, f32)
    np.divide(balance, origination_line, out=util, casting="unsafe")
    np.clip(util, 0.0, 1.0, out=util)
    trend = util - average
    expected_average = average + trend * k[0]
    score = util * k[1] + trend * k[2]
    score += np.sum(ratios, axis=0, dtype=f32) * k[3]
    score += missed * k[4]
    score += months.astype(f32) * k[5]
    score += origination_score
    score -= k[6]
    np.clip(score, 300.0, 900.0, out=score)
    got = np.empty(n, f32)
    kernels.behaviour_score_points(
        balance, origination_line, average, ratios, missed, months, origination_score, *k, f32(300), f32(900), got
    )
    assert _same(got, score) and _same(average, expected_average)


def test_balance_kernels_match_numpy_step_six():
    rng = np.random.default_rng(4)
    n = 4000
    f32 = np.float32
    line = np.round(rng.uniform(500, 50_000, n), -2)
    balance = line * rng.uniform(0, 1.6, n)
    balance[:3] = [0.0, np.nan, line[2]]  # a zero balance, NaN, a balance exactly at the line
    adapted, slow, origination = line * rng.uniform(0.8, 1.2, n), line * rng.uniform(0.8, 1.2, n), line * 0.9
    response, headroom, target_balance = rng.uniform(0, 0.5, n), rng.uniform(0, 5000, n), line * 0.4
    draw = rng.uniform(0, 1, n).astype(f32)
    floor = balance * 0.95
    interest = balance * 0.015
    share, noise_sd, rate = 0.3, 0.05, 0.4
    expected_target = adapted * (1.0 - share)
    expected_target += share * slow
    expected_target = np.minimum((expected_target - origination) * response, headroom) + target_balance
    expected_noise = ((draw * f32(2 * noise_sd)) - f32(noise_sd)) * line
    expected_wanted = (expected_target - balance) * rate + balance + expected_noise
    target, noise, wanted = np.empty(n), np.empty(n), np.empty(n)
    kernels.balance_targets(
        adapted, slow, origination, response, headroom, target_balance, draw, line, balance,
        1.0 - share, share, f32(2 * noise_sd), f32(noise_sd), rate, target, noise, wanted,
    )  # fmt: skip
    assert _same(target, expected_target) and _same(noise, expected_noise) and _same(wanted, expected_wanted)
    bounded = np.maximum(wanted, floor * (balance > line))
    bounded = np.clip(np.minimum(bounded, np.maximum(line, floor)), 0.0, np.inf)
    kernels.bounded_wanted(wanted, balance, line, floor)
    assert _same(wanted, bounded)
    drawn, statement, repaid = np.empty(n), np.empty(n), np.empty(n)
    kernels.payments(wanted, floor, balance, interest, drawn, statement, repaid)
    expected_drawn = np.clip(wanted - floor, 0.0, np.inf)
    assert _same(drawn, expected_drawn) and _same(statement, balance + interest)
    assert _same(repaid, balance + interest + expected_drawn - wanted)


def _originate_numpy(state, idx, p):
    """The numpy writes of envs.population.originate that the kernel replaced (one assignment a field)."""
    from envs.population import NEVER_CUT, draw_applicants

    cfg, prod = p.config, p.config.product
    key = rs.account_keys(state.seed[idx], state.episode[idx])
    age, city, thin, risk, income, need, revolver, target, constraint, score, line, apr, mode = draw_applicants(key, p)
    beh, dflt, att = cfg.behaviour, cfg.default, cfg.attrition
    scheduled_share = p.scheduled_share[mode]
    burden_per_cny = dflt.payment_burden_effect / income
    monthly_rate = apr / 12
    state.key[idx] = key
    state.stream[idx] = rs.monthly_position(key, 0)
    state.unemployed[idx] = False
    state.closing[idx] = False
    segment = (age.astype(np.intp) * p.job_loss_rate.shape[1] + city) * 2 + thin
    z = risk - p.age_risk[age] - p.city_risk[city] - cfg.population.thin_file_risk * thin
    slope = dflt.job_loss_risk_slope
    job_loss = p.job_loss_rate.ravel()[segment] * np.exp(slope * z - 0.5 * slope**2)
    state.job_loss_rate[idx] = np.minimum(job_loss, 1.0)
    state.target_balance[idx] = target * line
    state.line_response[idx] = beh.max_line_response * constraint
    state.adapted_line[idx] = line
    state.slow_adapted_line[idx] = line
    state.distress[idx] = 0.0
    state.distress_onset[idx] = np.minimum(dflt.distress_onset_rate * np.exp(dflt.distress_risk_slope * risk), 1.0)
    state.shock_rate[idx] = state.job_loss_rate[idx] + state.distress_onset[idx]
    state.miss_logit_base[idx] = dflt.risk_intercept + dflt.risk_slope * risk - 0.5 * dflt.utilisation_effect
    state.burden_per_cny[idx] = burden_per_cny
    state.miss_per_cny[idx] = dflt.utilisation_effect / line + burden_per_cny * (monthly_rate + scheduled_share)
    state.attrition_logit_base[idx] = p.attrition_logit + att.apr_effect * 100 * (apr - prod.market_apr)
    state.log_need[idx] = np.log(need)
    state.need_headroom[idx] = np.maximum(need - target * line, 0.0)
    state.age_band[idx], state.city_tier[idx], state.thin_file[idx] = age, city, thin
    state.repayment_mode[idx], state.scheduled_share[idx] = mode, scheduled_share
    state.apr[idx], state.monthly_rate[idx] = apr, monthly_rate
    state.origination_score[idx], state.origination_line[idx], state.line[idx] = score, line, line
    state.balance[idx] = 0.0
    state.months_past_due[idx] = 0
    state.months_on_book[idx] = 0
    state.months_since_line_change[idx] = 0
    state.months_since_cut[idx] = NEVER_CUT
    state.months_to_balloon[idx] = p.first_balloon[mode]
    state.missed_payments[idx] = 0.0
    state.score[idx] = score
    state.utilisation_average[idx] = 0.0
    state.payment_ratios[:, idx] = 1.0
    state.provision[idx] = 0.0


def test_origination_kernel_writes_what_numpys_assignments_wrote():
    from envs.config import resolve_config
    from envs.population import originate
    from envs.simulator import Simulator

    for preset in ("wechat", "jd"):  # jd has interest-first accounts (balloon months)
        sim = Simulator(resolve_config(preset, {}), 400)
        sim.seed_accounts(np.arange(400), np.arange(400, dtype=np.uint64) + 5)
        rng = np.random.default_rng(3)
        for _ in range(8):  # every field away from a new account's values
            sim.step(rng.uniform(0.5, 1.5, 400))
        sim.state.episode += 1
        mask = rng.uniform(size=400) < 0.3
        # a boolean mask, a list with negative indices and a repeat, an empty selection
        for idx in (mask, [0, -1, 7, 7, -400 + 9], np.zeros(0, dtype=np.intp)):
            expected, got = sim.state.copy(), sim.state.copy()
            _originate_numpy(expected, idx, sim.params)
            originate(got, idx, sim.params)
            for name in expected.field_names():
                assert _same(getattr(got, name), getattr(expected, name)), (preset, name)


def _expected_loss_numpy(p, months_past_due, score, balance, line, late):
    """The numpy expected_loss the kernels replaced."""
    acc = p.config.accounting
    lgd = 1 - p.config.delinquency.recovery_rate
    slope = acc.pd_stage1_slope / 100
    pd_lgd = score * slope
    pd_lgd -= acc.pd_stage1_intercept + slope * p.config.population.score_center
    np.exp(pd_lgd, out=pd_lgd)
    pd_lgd += 1.0
    np.divide(lgd, pd_lgd, out=pd_lgd)
    pd_lgd[late] = p.stage2_pd[months_past_due[late]] * lgd
    exposure = line - balance
    np.clip(exposure, 0.0, np.inf, out=exposure)
    exposure *= acc.ccf
    exposure += balance
    exposure *= pd_lgd
    return exposure


def test_expected_loss_kernels_match_numpy_float32_pd_and_float64_exposure():
    from envs.accounting import expected_loss
    from envs.config import resolve_config
    from envs.params import SimParams

    p = SimParams.from_config(resolve_config("wechat", {}))
    rng = np.random.default_rng(5)
    n = 20_000
    score = rng.uniform(300, 900, n).astype(np.float32)
    score[:2] = [300.0, 900.0]
    mpd = rng.integers(0, 7, n).astype(np.int8) * (rng.uniform(size=n) < 0.2)
    line = np.round(rng.uniform(500, 50_000, n), -2)
    balance = line * rng.uniform(0, 1.5, n)
    balance[:3] = [0.0, line[1], np.nan]  # nothing drawn, exactly at the line, NaN
    late = np.flatnonzero(mpd > 0)
    expected = _expected_loss_numpy(p, mpd, score, balance, line, late)
    assert _same(expected_loss(p, mpd, score, balance, line, late), expected)
    assert _same(expected_loss(p, mpd, score, balance, line), expected)  # late found from months past due
    assert _same(expected_loss(p, mpd, score, balance, line, mpd > 0), expected)  # late as a mask
