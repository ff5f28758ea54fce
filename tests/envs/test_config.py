"""Configuration loading and validation: every kind of bad input is a ConfigError naming the key and value."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import envs
from envs.config import APR_CEILING, Config, ConfigError, load_config, parse_override, resolve_config

PRESETS = envs.available_presets()


def _error(preset="wechat", overrides=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(preset, overrides)
    return str(info.value)


def _write(tmp_path: Path, text: str, name: str = "custom.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- presets ------------------------------------------------------------------------------------------


def test_the_four_platforms_are_presets():
    assert set(PRESETS) >= {"wechat", "alipay", "jd", "douyin"}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_loads_and_keeps_its_name(preset):
    config = load_config(preset)
    assert isinstance(config, Config) and config.name == preset
    # The product's band and lines are consistent (the validators would have said otherwise).
    assert 0 <= config.product.apr_low <= config.product.apr_high <= APR_CEILING
    assert 0 < config.product.min_line <= config.product.max_line


def test_wechat_preset_carries_the_documents_figures():
    # DOMAIN.md section 1: Weilidai max line 200,000 CNY, APR 7.2% - 18.24%, M3+ 1.8%.
    product, env = load_config("wechat").product, load_config("wechat").env
    assert (product.max_line, product.apr_low, product.apr_high, env.m3plus_cap) == (200000.0, 0.072, 0.1824, 0.018)


def test_config_is_frozen():
    config = load_config("wechat")
    with pytest.raises(ValidationError):
        config.env.horizon = 3  # type: ignore[misc]


def test_to_dict_round_trips():
    config = load_config("jd", {"env.horizon": 9})
    assert resolve_config(config) is config
    again = resolve_config(config, {"env.m3plus_cap": 0.05})
    assert again.env.horizon == 9 and again.env.m3plus_cap == 0.05 and again.product == config.product


def test_yaml_file_path_is_merged_over_base(tmp_path):
    path = _write(tmp_path, "name: mine\nenv:\n  horizon: 13\n")
    config = load_config(path)
    assert config.name == "mine" and config.env.horizon == 13
    base = load_config(Path(envs.config.BASE_CONFIG))
    assert config.product == base.product and config.env.m3plus_cap == base.env.m3plus_cap


# -- overrides ----------------------------------------------------------------------------------------


def test_dotted_and_double_underscore_overrides_are_the_same():
    a = load_config("wechat", {"env.horizon": 7, "product.apr_high": 0.2})
    b = load_config("wechat", {"env__horizon": 7, "product__apr_high": 0.2})
    assert a == b and a.env.horizon == 7 and a.product.apr_high == 0.2


def test_mix_override_replaces_the_whole_mix():
    config = load_config("wechat", {"product.repayment_mix": {"revolving": 1.0}})
    assert config.product.repayment_mix == {"revolving": 1.0}


def test_gym_make_passes_overrides():
    env = gym.make("CreditLine-v0", preset="jd", env__horizon=7)
    assert env.unwrapped.config.env.horizon == 7 and env.unwrapped.config.name == "jd"
    env.reset(seed=0)
    # Hold until the episode ends: it ends by truncation at month 7 unless terminated earlier.
    for month in range(1, 8):  # noqa: B007 (read after the loop)
        *_, terminated, truncated, _ = env.step(envs.HOLD_ACTION)
        if terminated:
            break
    assert terminated or (truncated and month == 7)


def test_make_portfolio_passes_overrides():
    venv = envs.make_portfolio("jd", 50, seed=0, **{"env.horizon": 7})
    assert venv.config.env.horizon == 7
    venv.reset()
    first_life = np.ones(50, dtype=bool)
    for month in range(1, 8):
        _, _, dones, infos = venv.step(np.full(50, envs.HOLD_ACTION))
        truncated = np.array([bool(dones[i] and infos[i]["TimeLimit.truncated"]) for i in range(50)])
        if month < 7:
            assert not truncated.any(), f"truncated in month {month} with horizon 7"
            first_life &= ~dones
    # Every account of the first cohort still open ends in month 7 (truncated unless closed or charged off
    # that very month), at 7 months on book; no replacement account is old enough to be truncated.
    assert dones[first_life].all() and not truncated[~first_life].any() and truncated.sum() > 0
    assert all(infos[i]["terminal_observation"][5] == 7 for i in np.flatnonzero(truncated))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("env.horizon=24", ("env.horizon", 24)),
        ("product.apr_high=0.2", ("product.apr_high", 0.2)),
        ("macro.forced_stress_start=null", ("macro.forced_stress_start", None)),
        ("delinquency.cure_rates=[0.9, 0.1, 0.1, 0.1, 0.1]", ("delinquency.cure_rates", [0.9, 0.1, 0.1, 0.1, 0.1])),
        (" env.horizon =5", ("env.horizon", 5)),
        ("name=a=b", ("name", "a=b")),
    ],
)
def test_parse_override(text, expected):
    assert parse_override(text) == expected


@given(
    st.integers(-(10**9), 10**9)
    | st.decimals(-(10**6), 10**6, places=6).map(float).filter(lambda v: "e" not in repr(v))
)
def test_parse_override_reads_numbers_back(value):
    # Plain decimal notation (what `repr` gives for these) round-trips as the same number and type.
    key, parsed = parse_override(f"product.max_line={value!r}")
    assert key == "product.max_line" and parsed == value and type(parsed) is type(value)


def test_exponent_override_is_rejected_not_misread():
    # YAML 1.1 (PyYAML) reads 1e6 as a string; the schema must then reject it, naming key and value.
    key, value = parse_override("product.max_line=1e6")
    message = _error(overrides={key: value})
    assert "product.max_line" in message and "'1e6'" in message


def test_parsed_overrides_feed_load_config():
    config = load_config("wechat", dict(parse_override(t) for t in ("env.horizon=3", "product.min_line=1000.0")))
    assert config.env.horizon == 3 and config.product.min_line == 1000.0


# -- errors -------------------------------------------------------------------------------------------


def test_unknown_preset_lists_available():
    message = _error("weixin")
    assert "weixin" in message
    for preset in PRESETS:
        assert preset in message


@pytest.mark.parametrize(
    "key, missing, allowed",
    [
        ("horizn", "horizn", "product"),  # top level
        ("env.horizn", "horizn", "horizon"),  # nested
        ("product.repayment.mix", "repayment", "repayment_mix"),
    ],
)
def test_unknown_override_key_names_key_and_what_is_allowed(key, missing, allowed):
    message = _error(overrides={key: 24})
    assert key in message and repr(missing) in message and allowed in message


def test_unknown_override_key_names_the_value():
    assert "123456" in _error(overrides={"env.horizn": 123456})


@pytest.mark.parametrize(
    "text, key, value",
    [
        ("name: t\nhorizn: 24\n", "horizn", "24"),  # top level
        ("name: t\nenv:\n  horizn: 25\n", "env.horizn", "25"),  # nested
    ],
)
def test_unknown_key_in_a_file_names_key_and_value(tmp_path, text, key, value):
    message = _error(_write(tmp_path, text))
    assert key in message and value in message


@pytest.mark.parametrize(
    "overrides, key, value",
    [
        ({"product.apr_low": "cheap"}, "product.apr_low", "'cheap'"),  # string for a float
        ({"env.horizon": 12.5}, "env.horizon", "12.5"),  # float for an int
        ({"env.horizon": "24"}, "env.horizon", "'24'"),  # strict: a numeric string is still a string
        ({"accounting.book_acquisition_cost": "yes"}, "accounting.book_acquisition_cost", "'yes'"),
        ({"delinquency.cure_rates": [0.9, 0.1]}, "delinquency.cure_rates.2", "missing"),  # too short a tuple
        ({"env": 5}, "env", "5"),  # a scalar where a section belongs
    ],
)
def test_wrong_type_names_key_and_value(overrides, key, value):
    message = _error(overrides=overrides)
    assert key in message and value in message


@pytest.mark.parametrize(
    "text, key",
    [
        ("name: t\nenv:\n  horizon: 1e6\n", "env.horizon"),  # PyYAML reads unquoted 1e6 as a string
        ("name: t\nproduct:\n  max_line: 1e6\n", "product.max_line"),
    ],
)
def test_unquoted_exponent_in_yaml_is_rejected(tmp_path, text, key):
    message = _error(_write(tmp_path, text))
    assert key in message and "1e6" in message


@pytest.mark.parametrize(
    "key, value",
    [
        ("product.apr_high", 0.5),
        ("product.apr_low", -0.01),
        ("product.market_apr", 0.37),
        ("accounting.funding_rate", 1.0),
    ],
)
def test_apr_outside_legal_range(key, value):
    message = _error(overrides={key: value})
    bound = str(APR_CEILING) if value > APR_CEILING else "0"
    assert key in message and str(value) in message and bound in message


def test_apr_low_above_apr_high_names_both():
    message = _error(overrides={"product.apr_low": 0.2, "product.apr_high": 0.15})
    assert "apr_low" in message and "apr_high" in message and "0.2" in message and "0.15" in message


def test_min_line_above_max_line_names_both():
    message = _error(overrides={"product.min_line": 5000.0, "product.max_line": 4000.0})
    assert "min_line" in message and "5000" in message and "4000" in message


@pytest.mark.parametrize(
    "key, value",
    [
        ("delinquency.recovery_rate", 1.5),
        ("population.thin_file_share", -0.1),
        ("attrition.base_rate", 2.0),
        ("delinquency.cure_rates", [0.9, 1.2, 0.1, 0.1, 0.1]),
        ("accounting.ccf", -0.5),
        ("env.m3plus_cap", 1.01),
    ],
)
def test_probability_outside_unit_interval(key, value):
    message = _error(overrides={key: value})
    assert key in message and ("1.2" if isinstance(value, list) else str(value)) in message


@pytest.mark.parametrize(
    "key, value", [("product.min_line", -100.0), ("product.max_line", 0.0), ("product.min_line", 0.0)]
)
def test_non_positive_line(key, value):
    message = _error(overrides={key: value})
    assert key in message and str(value) in message


@pytest.mark.parametrize(
    "key, mix",
    [
        ("population.age_mix", {"18-24": 0.5, "25-35": 0.3}),
        ("population.city_mix", {"tier1": 0.7, "lower": 0.7}),
        ("product.repayment_mix", {"revolving": 0.25}),
    ],
)
def test_mix_not_summing_to_one(key, mix):
    message = _error(overrides={key: mix})
    total = f"{sum(mix.values()):.6g}"
    assert key.split(".")[-1] in message and total in message


def test_unknown_category_in_a_mix():
    message = _error(overrides={"product.repayment_mix": {"balloon": 1.0}})
    assert "repayment_mix" in message and "balloon" in message and "revolving" in message


@pytest.mark.parametrize(
    "key, value",
    [
        ("env.horizon", 0),
        ("product.instalment_months", 61),
        ("product.penalty_rate_multiplier", 0.5),
        ("macro.seed", -1),
    ],
)
def test_other_bounds(key, value):
    message = _error(overrides={key: value})
    assert key in message and str(value) in message


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.yaml"
    message = _error(path)
    assert str(path) in message and "not found" in message


def test_malformed_yaml_file(tmp_path):
    path = _write(tmp_path, "env: [horizon: 3\n  x: {\n")
    message = _error(path)
    assert str(path) in message and "YAML" in message


def test_yaml_file_that_is_not_a_mapping(tmp_path):
    message = _error(_write(tmp_path, "- a\n- b\n"))
    assert "mapping" in message and "list" in message


def test_override_without_equals_sign():
    with pytest.raises(ConfigError, match="env.horizon"):
        parse_override("env.horizon")


def test_several_errors_are_all_reported():
    message = _error(overrides={"env.horizon": 0, "delinquency.recovery_rate": 3.0})
    assert "env.horizon" in message and "delinquency.recovery_rate" in message


def test_config_error_is_a_value_error_without_a_pydantic_traceback():
    with pytest.raises(ValueError) as info:
        load_config("wechat", {"env.horizon": "x"})
    assert isinstance(info.value, ConfigError)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # raised `from None`


@pytest.mark.parametrize("overrides", [{"env.horizon": 0}, {"nope": 1}])
def test_envs_surface_config_errors(overrides):
    with pytest.raises(ConfigError):
        gym.make("CreditLine-v0", preset="wechat", **overrides)
    with pytest.raises(ConfigError):
        envs.make_portfolio("wechat", 3, seed=0, **overrides)


def test_env_rejects_unknown_preset_through_gym_make():
    with pytest.raises(ConfigError, match="available presets"):
        gym.make("CreditLineContinuous-v0", preset="taobao")


@pytest.mark.parametrize("num_accounts", [0, -3, 2.5, "10"])
def test_make_portfolio_rejects_bad_num_accounts(num_accounts):
    with pytest.raises(ValueError, match="num_accounts"):
        envs.make_portfolio("wechat", num_accounts, seed=0)
