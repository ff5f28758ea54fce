"""Counter-based random numbers keyed on (account seed, episode, month, draw).

Why counter-based: account i of a portfolio seeded ``s`` must see exactly the numbers a single account
seeded ``s + i`` sees, whatever else is in the batch. A stateful generator shared by the batch cannot do
that; a hash of the counter can, and it vectorises over accounts with a handful of integer array ops.

The mixer is the SplitMix64 finaliser (Steele, Lea & Flood 2014), a bijection on 64-bit integers whose
outputs pass BigCrush for sequential inputs. Each 64-bit output gives two 32-bit halves: float64 uniforms
in (0, 1) at origination, float32 uniforms in [0, 1) (the top 23 bits of each half) for the monthly draws.
"""

from __future__ import annotations

import numpy as np

from envs.kernels import monthly_bits

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32 = (np.uint64(s) for s in (30, 27, 31, 32))
_LOW32 = np.uint64(0xFFFFFFFF)
_S20 = np.uint64(20)  # 52 mantissa bits - 32 random bits
_ONE_AND_HALF_ULP = np.uint64(0x3FF0000000000000 | 1 << 19)  # exponent of 1.0, plus half a 2**-32 step
_STREAMS = 4  # interleaved sequences: monthly, origination, macro
_STREAM_MONTHLY = np.uint64(1)
_STREAM_ORIGINATION = np.uint64(2)
_STREAM_MACRO = np.uint64(3)


def _times_golden(k: int) -> np.uint64:
    """k x golden ratio mod 2**64, as a numpy scalar (numpy warns on scalar overflow; Python ints do not)."""
    return np.uint64(k * int(_GOLDEN) % 2**64)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser; returns a new uint64 array."""
    with np.errstate(over="ignore"):
        return _mix64_(x.astype(np.uint64, copy=True))


def _mix64_(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser in place (one scratch array instead of a temporary per shift)."""
    shifted = np.right_shift(x, _S30)
    x ^= shifted
    x *= _MUL1
    np.right_shift(x, _S27, out=shifted)
    x ^= shifted
    x *= _MUL2
    np.right_shift(x, _S31, out=shifted)
    x ^= shifted
    return x


def seed_to_key(seed: int) -> np.uint64:
    """Map any Python integer seed to a 64-bit key."""
    return np.uint64(int(seed) % 2**64)


def account_keys(seeds: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    """Key of each account's current life: a hash of its seed and how many lives it has had."""
    # (integer arrays wrap silently mod 2**64; only numpy scalars warn on overflow)
    return _mix64_(_mix64_(seeds.astype(np.uint64) * _GOLDEN) + episodes.astype(np.uint64))


def _mixed_words(keys: np.ndarray, counter: np.ndarray | int, stream: np.uint64, words: int) -> np.ndarray:
    """Words ``(counter x words + j) x 4 + stream`` of each key's SplitMix64 sequence, shape ``(words, keys)``.

    (state = key + index x golden ratio, output = mix(state)); computed in place, constants wrap mod 2**64.
    """
    x = np.empty((words, len(keys)), dtype=np.uint64)
    np.multiply(counter, _times_golden(words * _STREAMS), out=x[0], dtype=np.uint64, casting="unsafe")
    x[0] += keys
    x[0] += _times_golden(int(stream))
    for j in range(1, words):
        np.add(x[0], _times_golden(j * _STREAMS), out=x[j])
    return _mix64_(x)


def uniforms(keys: np.ndarray, counter: np.ndarray | int, stream: np.uint64, count: int) -> np.ndarray:
    """``count`` float64 uniforms in (0, 1) per key, shape ``(count, len(keys))``, for one (stream, counter).

    Draw ``j < words`` is the high 32-bit half of word ``j`` of :func:`_mixed_words`, draw ``words + j``
    its low half.
    """
    words = (count + 1) // 2
    x = _mixed_words(keys, counter, stream, words)
    # Each 32-bit half becomes the top of a float's mantissa in [1, 2) (no slow integer-to-float
    # conversion); the bit below it is set, i.e. +0.5 in units of 2**-32, so every draw is strictly inside
    # (0, 1) and logs never see 0.
    bits = np.empty((2 * words, len(keys)), dtype=np.uint64)
    np.right_shift(x, _S32, out=bits[:words])
    np.bitwise_and(x, _LOW32, out=bits[words:])
    bits <<= _S20
    bits |= _ONE_AND_HALF_ULP
    out = bits.view(np.float64)
    out -= 1.0
    return out[:count]


MONTHLY_DRAWS = 4  # uniforms per account-month (envs.dynamics); envs.kernels.monthly_bits draws these four
_MONTHLY_WORDS = (MONTHLY_DRAWS + 1) // 2
MONTHLY_STRIDE = _times_golden(_MONTHLY_WORDS * _STREAMS)  # a month further along an account's stream


def monthly_position(keys: np.ndarray, month: np.ndarray | int) -> np.ndarray:
    """Where each account's monthly draws of ``month`` start in its stream (uint64): word 0's SplitMix64
    state, ``key + (month x words x 4 + stream) x golden``. The simulator keeps it per account and adds
    MONTHLY_STRIDE each month, which spares the multiply (and the int-to-uint64 cast) on the hot path."""
    x = np.empty(len(keys), dtype=np.uint64)
    np.multiply(month, MONTHLY_STRIDE, out=x, dtype=np.uint64, casting="unsafe")
    x += keys
    x += _times_golden(int(_STREAM_MONTHLY))
    return x


def monthly_uniforms(keys: np.ndarray, month: np.ndarray | int, count: int = MONTHLY_DRAWS) -> np.ndarray:
    """The first ``count`` (at most MONTHLY_DRAWS) monthly draws of each account for ``month``."""
    if not 1 <= count <= MONTHLY_DRAWS:
        raise ValueError(f"count must be in [1, {MONTHLY_DRAWS}], got {count}")
    return monthly_uniforms_at(monthly_position(keys, month))[:count]


def monthly_uniforms_at(position: np.ndarray) -> np.ndarray:
    """MONTHLY_DRAWS float32 uniforms in [0, 1) per account, shape ``(MONTHLY_DRAWS, accounts)``, from
    each account's stream position (:func:`monthly_position`).

    The monthly draws are only compared with probabilities (or scaled to noise), so float32 is enough:
    each is the top 23 bits of a 32-bit half as a float32 mantissa, a multiple of 2**-23 (an event of
    probability p happens with probability p to within 1.2e-7). Half the memory traffic of float64 at
    100k accounts. The halves are assigned to draws as in :func:`uniforms`.
    """
    bits = np.empty((MONTHLY_DRAWS, len(position)), dtype=np.uint32)
    monthly_bits(position, _times_golden(_STREAMS), bits)  # one compiled pass: the same bits as numpy's
    out = bits.view(np.float32)  # in [1, 2)
    out -= 1.0
    return out


def origination_uniforms(keys: np.ndarray, count: int) -> np.ndarray:
    return uniforms(keys, 0, _STREAM_ORIGINATION, count)


def macro_uniform(seed: int, calendar_month: int) -> float:
    """One uniform for the portfolio-wide regime in a calendar month, keyed on the macro seed only."""
    key = np.array([seed_to_key(seed)], dtype=np.uint64)
    return float(uniforms(key, calendar_month, _STREAM_MACRO, 1)[0, 0])


def standard_normals(u1: np.ndarray, u2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box-Muller: two independent standard normals from two independent uniforms in (0, 1).

    The angle is taken in float32, whose cosine and sine numpy vectorises (ten times faster than in
    float64); an angle known to 5e-7 changes a draw by about 1e-6, far below anything the model resolves.
    """
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = (2.0 * np.pi * u2).astype(np.float32)
    return radius * np.cos(angle), radius * np.sin(angle)
