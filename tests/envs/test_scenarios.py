"""Scenario overlays: every shipped file validates on every preset, and a malformed one names its fault."""

from __future__ import annotations

import pytest

from envs.config import ConfigError, available_presets, load_config
from envs.scenarios import available_scenarios, build_scenario, check_scenario, describe_changes, load_scenario

REQUIRED = {"recession", "rate_ceiling_24", "rate_ceiling_4lpr", "funding_shock", "competition", "thin_file_influx"}


def test_the_issue_s_scenarios_are_shipped():
    assert REQUIRED | {"lower_max_line"} <= set(available_scenarios())


@pytest.mark.parametrize("name", available_scenarios())
def test_every_scenario_applies_to_every_preset_and_sources_every_number(name):
    scenario = load_scenario(name)
    assert scenario.description and "\n" not in scenario.description
    for change in scenario.changes.values():
        assert change.source.startswith(("DOMAIN", "assumption")), change.source
    for preset in available_presets():
        config = check_scenario(scenario, load_config(preset))
        assert config.name == f"{preset}+{name}"


def test_operations_on_wechat_give_the_documented_values():
    wechat = load_config("wechat")  # funding 6%, APR 7.2% - 18.24%, max line 200,000, thin files 10%
    assert check_scenario(load_scenario("funding_shock"), wechat).accounting.funding_rate == pytest.approx(0.08)
    capped = check_scenario(load_scenario("rate_ceiling_4lpr"), wechat).product
    assert (capped.apr_low, capped.apr_high) == (0.072, 0.12)  # the ceiling binds only above it
    assert check_scenario(load_scenario("lower_max_line"), wechat).product.max_line == 50000.0
    assert check_scenario(load_scenario("thin_file_influx"), wechat).population.thin_file_share == 0.30
    recession = check_scenario(load_scenario("recession"), wechat)
    assert recession.default.job_loss_rate == pytest.approx(2 * wechat.default.job_loss_rate)  # "scale: 2.0"
    assert (recession.macro.forced_stress_start, recession.macro.forced_stress_months) == (3, 18)


def test_the_24_percent_ceiling_binds_only_above_24_percent():
    scenario = load_scenario("rate_ceiling_24")
    jd = load_config("jd")  # 9.1% - 24%: already at the line
    assert check_scenario(scenario, jd).product == jd.product
    dear = load_config("jd", {"product.apr_high": 0.33, "product.apr_low": 0.26})
    assert (check_scenario(scenario, dear).product.apr_low, check_scenario(scenario, dear).product.apr_high) == (
        0.24,
        0.24,
    )


def test_describe_changes_lists_base_and_scenario_values():
    rows = describe_changes(load_scenario("funding_shock"), load_config("wechat"))
    assert rows == [
        {
            "key": "accounting.funding_rate",
            "base": 0.06,
            "scenario": pytest.approx(0.08),
            "operation": "add 0.02",
            "source": rows[0]["source"],
        }
    ]


def _write(tmp_path, text):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, fragments",
    [
        # an unknown config key: named, with what is allowed
        (
            "description: d\nchanges:\n  product.max_lin: {at_most: 1.0, source: assumption}\n",
            ["product.max_lin", "max_line"],
        ),
        # an unknown key of the scenario file itself
        ("description: d\nnotes: x\nchanges:\n  env.horizon: {set: 3, source: assumption}\n", ["notes"]),
        # an unknown key of a change
        ("description: d\nchanges:\n  env.horizon: {set: 3, sauce: assumption}\n", ["sauce", "source"]),
        # two operations at once
        ("description: d\nchanges:\n  env.horizon: {set: 3, scale: 2, source: assumption}\n", ["exactly one"]),
        # a number with no source
        ("description: d\nchanges:\n  env.horizon: {set: 3}\n", ["source"]),
        # an impossible value, found by the config's own validation
        ("description: d\nchanges:\n  env.m3plus_cap: {scale: 100, source: assumption}\n", ["env.m3plus_cap"]),
        # arithmetic on a value that is not a number
        ("description: d\nchanges:\n  product.name: {scale: 2, source: assumption}\n", ["product.name", "number"]),
        ("changes:\n  env.horizon: {set: 3, source: assumption}\n", ["description"]),
    ],
)
def test_malformed_scenarios_name_the_fault(tmp_path, text, fragments):
    with pytest.raises(ConfigError) as error:
        check_scenario(load_scenario(_write(tmp_path, text)), load_config("wechat"))
    for fragment in fragments:
        assert fragment in str(error.value), str(error.value)


def test_unknown_scenario_lists_the_available_ones():
    with pytest.raises(ConfigError, match="recession"):
        load_scenario("recesion")


def test_a_scenario_may_replace_a_whole_mix():
    scenario = build_scenario(
        {
            "name": "young",
            "description": "younger book",
            "changes": {
                "population.age_mix": {
                    "set": {"18-24": 0.3, "25-35": 0.4, "36-45": 0.2, "46+": 0.1},
                    "source": "assumption",
                }
            },
        }
    )
    assert check_scenario(scenario, load_config("wechat")).population.age_mix["18-24"] == 0.3
