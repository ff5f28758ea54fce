"""Typed, validated configuration of a credit-line portfolio.

YAML is data; the classes below are the schema. A preset is ``configs/base.yaml`` (the behavioural model
shared by every platform) deep-merged with ``configs/presets/<name>.yaml`` (the platform's figures), then
with any overrides. Every value is checked: an unknown key, a wrong type or an impossible value raises
:class:`ConfigError` naming the key, the value and what is allowed.

Units: money in CNY, rates per year unless the name says ``monthly``, probabilities per month.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
PRESET_DIR = CONFIG_DIR / "presets"
BASE_CONFIG = CONFIG_DIR / "base.yaml"

AgeBand = Literal["18-24", "25-35", "36-45", "46+"]
CityTier = Literal["tier1", "tier2", "lower"]
RepaymentMode = Literal["revolving", "equal_principal", "interest_first"]
# in the order the simulator indexes them
AGE_BANDS: tuple[AgeBand, ...] = get_args(AgeBand)
CITY_TIERS: tuple[CityTier, ...] = get_args(CityTier)
REPAYMENT_MODES: tuple[RepaymentMode, ...] = get_args(RepaymentMode)
# 180 days past due: FFIEC charge-off policy; loss class under Chinese card rules (DOMAIN.md section 3).
CHARGE_OFF_MONTHS = 6
APR_CEILING = 0.36  # the legal upper bound the schema accepts; the products' own bands sit inside it

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Apr = Annotated[float, Field(ge=0.0, le=APR_CEILING)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
NonNegativeFloat = Annotated[float, Field(ge=0.0)]


class ConfigError(ValueError):
    """A configuration is malformed: the message names the key, the value and what is allowed."""


# Assumption: no figure of a credit portfolio needs a magnitude above this (money in CNY, scores, logits,
# counts); the bound keeps every float32 observation finite (the largest is 2 x product.max_line) and every
# integer inside int64.
LARGEST_FLOAT = 1e9
LARGEST_INT = 2**63 - 1


def _check_bounded(value: Any, where: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} = {value!r} is not a finite number")
        if abs(value) > LARGEST_FLOAT:
            raise ValueError(
                f"{where} = {value!r} is outside the allowed range [-{LARGEST_FLOAT:g}, {LARGEST_FLOAT:g}]"
            )
    elif isinstance(value, int):
        if abs(value) > LARGEST_INT:
            raise ValueError(f"{where} = {value!r} is outside the allowed range [-(2**63 - 1), 2**63 - 1]")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_bounded(item, f"{where}.{key}")
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _check_bounded(item, f"{where}[{i}]")


class _Section(BaseModel):
    """Every section: no unknown keys, no type coercion, and every number finite and bounded."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @field_validator("*", mode="after", check_fields=False)
    @classmethod
    def _finite_and_bounded(cls, value: Any, info: ValidationInfo) -> Any:
        _check_bounded(value, str(info.field_name))
        return value


def _check_mix(name: str, mix: Mapping[Any, float]) -> None:
    total = sum(mix.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"{name} weights must sum to 1, got {total:.6g}")


class ProductConfig(_Section):
    """What the lender sells: lines, prices and repayment modes."""

    name: str
    max_line: PositiveFloat  # [CNY]
    min_line: PositiveFloat  # [CNY] floor a line can be cut to
    line_income_multiple: PositiveFloat  # origination line for an average score, in months of income
    line_score_slope: NonNegativeFloat  # log-line change per 100 score points
    apr_low: Apr
    apr_high: Apr
    market_apr: Apr  # what borrowers compare the price with (attrition)
    price_best_score: float  # score at and above which the lowest APR applies
    price_tier_width: PositiveFloat  # score points per step of the five-tier price grid
    repayment_mix: dict[RepaymentMode, Probability]
    instalment_months: Annotated[int, Field(ge=1, le=60)]
    revolving_min_payment: Probability  # share of principal due each month under revolving
    penalty_rate_multiplier: Annotated[float, Field(ge=1.0, le=3.0)]  # overdue interest / contract rate

    @model_validator(mode="after")
    def _consistent(self) -> ProductConfig:
        if self.apr_low > self.apr_high:
            raise ValueError(f"apr_low ({self.apr_low}) must not exceed apr_high ({self.apr_high})")
        if self.min_line > self.max_line:
            raise ValueError(f"min_line ({self.min_line}) must not exceed max_line ({self.max_line})")
        _check_mix("repayment_mix", self.repayment_mix)
        return self


class PopulationConfig(_Section):
    """Who is acquired: segment mix and hidden traits."""

    age_mix: dict[AgeBand, Probability]
    city_mix: dict[CityTier, Probability]
    thin_file_share: Probability
    age_risk: dict[AgeBand, float]  # latent-risk offset [sd units]
    city_risk: dict[CityTier, float]
    thin_file_risk: float
    income_median: dict[CityTier, PositiveFloat]  # [CNY/month]
    income_sigma: NonNegativeFloat  # log-normal spread
    need_median: PositiveFloat  # credit need [months of income]
    need_sigma: NonNegativeFloat
    revolver_share: Probability
    revolver_risk_slope: float  # logit change per sd of latent risk
    revolver_utilisation: tuple[Probability, Probability]  # uniform range of target utilisation
    transactor_utilisation: tuple[Probability, Probability]
    score_center: float  # behaviour score of latent risk 0
    score_scale: PositiveFloat  # score points per sd of latent risk
    score_noise: NonNegativeFloat  # [sd units] how badly the score sees latent risk
    thin_file_score_noise: NonNegativeFloat

    @model_validator(mode="after")
    def _consistent(self) -> PopulationConfig:
        _check_mix("age_mix", self.age_mix)
        _check_mix("city_mix", self.city_mix)
        missing_bands = set(AGE_BANDS) - set(self.age_risk)
        if missing_bands:
            raise ValueError(f"age_risk lacks age bands {sorted(missing_bands)}")
        for name in ("city_risk", "income_median"):
            missing = set(CITY_TIERS) - set(getattr(self, name))
            if missing:
                raise ValueError(f"{name} lacks city tiers {sorted(missing)}")
        for name in ("revolver_utilisation", "transactor_utilisation"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} low end {low} exceeds high end {high}")
        return self


class BehaviourConfig(_Section):
    """How balances respond to lines."""

    balance_adjust_rate: Probability  # share of the gap to the target balance closed each month
    line_adapt_rate: Probability  # how fast the borrower's sense of the line follows a change
    max_line_response: Probability  # debt per unit of extra line of a fully constrained borrower
    constraint_intercept: float  # logit of credit-constrainedness for a risk-0 revolver
    constraint_risk_slope: float
    constraint_need_slope: float
    balance_noise: NonNegativeFloat  # monthly noise in the balance [share of line]
    # The line the borrower has adjusted to has a fast and a slow part (Aydin 2022: the response grows for
    # years); both follow raises only: a cut caps the balance, it does not lower what the borrower wants.
    slow_line_adapt_rate: Probability  # monthly adaptation of the slow part
    slow_response_share: Probability  # share of the long-run response that comes through the slow part


class DefaultConfig(_Section):
    """Why current accounts miss a payment (logit of the monthly miss probability)."""

    risk_intercept: float
    risk_slope: float
    unemployed_effect: float
    utilisation_effect: float
    history_effect: float
    payment_burden_effect: float
    stress_effect: float
    job_loss_rate: Probability  # per month, normal regime
    job_loss_multiplier: dict[Literal["young", "thin_file", "lower_tier"], NonNegativeFloat]
    job_loss_risk_slope: float  # log change of the job-loss rate per sd of latent risk
    reemployment_rate: Probability
    # Financial distress: a hidden state in [0, 1] that starts with a job loss or another shock (income
    # shock, over-borrowing across platforms), deepens month by month and lifts the miss hazard, while the
    # borrower draws toward the line and pays only what is due (envs.dynamics).
    distress_onset_rate: Probability  # monthly onset of a shock other than job loss, latent risk 0
    distress_risk_slope: float  # log change of that onset rate per sd of latent risk
    distress_ramp: Annotated[float, Field(gt=0.0, le=1.0)]  # distress added each month while distressed
    distress_recovery_rate: Probability  # monthly chance that a distressed borrower in work recovers
    distress_effect: float  # miss-logit increase at full distress
    distress_draw: NonNegativeFloat  # share of the gap from target balance to the line drawn per unit of
    # distress (the whole gap at most)


class MacroConfig(_Section):
    """Portfolio-wide regime (normal / stress), shared by every account of a run."""

    seed: Annotated[int, Field(ge=0)]
    enter_stress: Probability
    exit_stress: Probability
    stress_job_loss_multiplier: NonNegativeFloat
    stress_reemployment_multiplier: NonNegativeFloat
    forced_stress_start: Annotated[int, Field(ge=0)] | None
    forced_stress_months: Annotated[int, Field(ge=0)]


class DelinquencyConfig(_Section):
    cure_rates: tuple[Probability, Probability, Probability, Probability, Probability]  # from M1..M5
    unemployed_cure_factor: Probability
    distressed_cure_factor: Probability  # cure probability multiplier at full distress (linear in distress)
    recovery_rate: Probability


class AttritionConfig(_Section):
    base_rate: Probability  # monthly closure probability of a content current account
    cut_effect: float  # logit increase while a line cut is recent
    cut_memory_months: Annotated[int, Field(ge=0)]
    low_line_effect: float  # logit increase per log-unit of need above the line
    apr_effect: float  # logit increase per percentage point above the market APR


class AccountingConfig(_Section):
    funding_rate: Apr
    ccf: Probability  # credit conversion factor on the undrawn line
    operating_cost: NonNegativeFloat  # [CNY/account/month]
    acquisition_cost: NonNegativeFloat  # [CNY/account]
    book_acquisition_cost: bool
    pd_stage1_intercept: float  # logit 12-month PD at score_center
    pd_stage1_slope: float  # logit change per 100 score points below score_center
    pd_stage2: tuple[Probability, Probability]  # 12-month PD in M1, M2
    reference_balance: PositiveFloat  # [CNY] denominator of the per-account cost signal
    # The lender's behaviour scorecard (envs.dynamics): the origination score moved each month by a
    # behaviour logit, at 100 points per logit unit (the scale of pd_stage1_slope = 1).
    score_utilisation_effect: float  # logit per unit of utilisation (balance / current line)
    score_trend_effect: float  # logit per unit of utilisation above its recent average
    score_trend_memory: Probability  # monthly weight of the newest month in that average
    score_payment_effect: float  # logit per unit of the mean share of the statement paid (3 months)
    score_history_effect: float  # logit per remembered missed payment
    score_tenure_effect: float  # logit per month on book


class EnvConfig(_Section):
    horizon: Annotated[int, Field(ge=1, le=600)]  # [months]
    m3plus_cap: Probability


class Config(_Section):
    name: str
    description: str = ""
    product: ProductConfig
    population: PopulationConfig
    behaviour: BehaviourConfig
    default: DefaultConfig
    macro: MacroConfig
    delinquency: DelinquencyConfig
    attrition: AttritionConfig
    accounting: AccountingConfig
    env: EnvConfig

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as it would be written back to YAML."""
        return self.model_dump(mode="json")


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"found the key '{key}' twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def safe_load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys (``yaml.YAMLError`` naming the key and its line)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file's top-level mapping; a missing file or malformed YAML is a ConfigError naming the file."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = safe_load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not a UTF-8 text file: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict) and key not in _LEAF_MAPPINGS:
            merged[key] = _deep_merge(merged[key], value, f"{where}{key}.")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# Mappings that are values (a mix replaces the whole mix), not sections to merge into.
_LEAF_MAPPINGS = {
    "repayment_mix",
    "age_mix",
    "city_mix",
    "age_risk",
    "city_risk",
    "income_median",
    "job_loss_multiplier",
}


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    keys = path.replace("__", ".").split(".")
    node = data
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            where = ".".join(keys[:depth]) or "the top level"
            allowed = sorted(node) if isinstance(node, dict) else []
            raise ConfigError(
                f"unknown config key '{path}' (value {value!r}): no '{key}' in {where}; allowed: {allowed}"
            )
        if depth == len(keys) - 1:
            node[key] = value
        else:
            node = node[key]


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` from the command line; the value is read as a YAML scalar or list."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. env.horizon=24")
    key, raw = text.split("=", 1)
    try:
        value = safe_load_yaml(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML: {exc}") from None
    return key.strip(), value


def _format_errors(source: str, exc: ValidationError) -> str:
    lines = [f"invalid config ({source}):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        shown = "missing" if err["type"] == "missing" else repr(value)
        if isinstance(value, dict) and err["type"] != "missing":
            shown = "{...}"
        lines.append(f"  {key} = {shown}: {err['msg']}")
    return "\n".join(lines)


def _lists_to_tuples(value: Any) -> Any:
    # YAML has lists only; the schema's fixed-length fields are tuples (strict mode won't convert).
    if isinstance(value, Mapping):
        return {k: _lists_to_tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_lists_to_tuples(v) for v in value)
    return value


def build_config(data: Mapping[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(_lists_to_tuples(dict(data)))
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from None


def load_config(preset: str | Path = "wechat", overrides: Mapping[str, Any] | None = None) -> Config:
    """Load a preset by name (or a YAML file path), apply dotted-key overrides, validate.

    Overrides map a dotted path (``"env.horizon"``, or ``"env__horizon"`` for keyword arguments) to a value.
    """
    if isinstance(preset, Path) or str(preset).endswith((".yaml", ".yml")):
        path = Path(preset)
        name = path.stem
    else:
        name = str(preset)
        path = PRESET_DIR / f"{name}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown preset '{name}'; available presets: {available_presets()}")
    data = _deep_merge(read_yaml(BASE_CONFIG), read_yaml(path))
    for key, value in (overrides or {}).items():
        _set_path(data, key, value)
    source = f"preset '{name}'" if path.parent == PRESET_DIR else str(path)
    return build_config(data, source=source + (" with overrides" if overrides else ""))


def resolve_config(config: Config | str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """Accept a ready Config (re-validated with overrides) or a preset name/path."""
    if isinstance(config, Config):
        if not overrides:
            return config
        data = config.to_dict()
        for key, value in overrides.items():
            _set_path(data, key, value)
        return build_config(data, source=f"'{config.name}' with overrides")
    return load_config(config, overrides)
