"""Named what-if scenarios: an overlay of only the keys a scenario changes, applied to any preset.

A scenario is ``configs/scenarios/<name>.yaml``::

    description: one line saying what the scenario is
    changes:
      default.job_loss_rate: {scale: 2.0, source: "assumption: ..."}
      product.apr_high: {at_most: 0.24, source: "DOMAIN: 24% ceiling ..."}

Each change names a dotted config key (as ``--set`` does), exactly one operation and the source or
assumption behind its number:

| operation | new value |
|---|---|
| ``set: v`` | ``v`` (a whole mapping for mixes such as ``population.age_mix``) |
| ``scale: f`` | the preset's value times ``f`` |
| ``add: d`` | the preset's value plus ``d`` (a funding shock of +200 bp is ``add: 0.02``) |
| ``at_most: c`` | ``min(preset's value, c)`` (a ceiling binds only where the preset is above it) |

The operations are relative so one file applies to every preset. The result goes through
``envs.config.resolve_config``, so an unknown key or an impossible value is a ``ConfigError`` naming it,
exactly as for a preset or a ``--set``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from envs.config import CONFIG_DIR, Config, ConfigError, _format_errors, _set_path, read_yaml, resolve_config

SCENARIO_DIR = CONFIG_DIR / "scenarios"
OPERATIONS = ("set", "scale", "add", "at_most")

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class Change(BaseModel):
    """One changed key: exactly one of the operations, and where its number comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    set: Any = None
    scale: float | None = None
    add: float | None = None
    at_most: float | None = None
    source: NonEmpty  # "DOMAIN: ..." or "assumption: ..."

    @model_validator(mode="after")
    def _one_operation(self) -> Change:
        given = [op for op in OPERATIONS if getattr(self, op) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {list(OPERATIONS)}, got {given or 'none'}")
        return self

    @property
    def operation(self) -> str:
        return next(op for op in OPERATIONS if getattr(self, op) is not None)

    def apply(self, current: Any, key: str) -> Any:
        """The new value of ``key`` whose preset value is ``current``."""
        op = self.operation
        if op == "set":
            return self.set
        if isinstance(current, bool) or not isinstance(current, (int, float)):
            raise ConfigError(f"scenario change '{key}': '{op}' needs a number, but the preset's value is {current!r}")
        value = float(current)
        if op == "scale":
            new = value * float(self.scale)  # type: ignore[arg-type]
        elif op == "add":
            new = value + float(self.add)  # type: ignore[arg-type]
        else:
            new = min(value, float(self.at_most))  # type: ignore[arg-type]
        return int(round(new)) if isinstance(current, int) else new


class Scenario(BaseModel):
    """A validated scenario file; ``name`` is the file's stem."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: NonEmpty
    description: NonEmpty
    changes: Annotated[dict[str, Change], Field(min_length=1)]

    def overrides(self, config: Config) -> dict[str, Any]:
        """The dotted-key overrides this scenario makes on ``config`` (values resolved against it)."""
        data = config.to_dict()
        return {key: change.apply(_current(data, key, change), key) for key, change in self.changes.items()}

    def apply(self, config: Config) -> Config:
        """``config`` with the scenario's changes, validated; named ``<preset>+<scenario>``."""
        changed = resolve_config(config, self.overrides(config))
        return changed.model_copy(update={"name": f"{config.name}+{self.name}", "description": self.description})


def _current(data: dict[str, Any], key: str, change: Change) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            # the config's own error: the unknown key, the value asked for and what is allowed
            _set_path(data, key, {change.operation: getattr(change, change.operation)})
        node = node[part]
    return node


def available_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(scenario: str | Path) -> Scenario:
    """A scenario by name (``configs/scenarios/<name>.yaml``) or YAML path, checked in form.

    Its keys are checked against a config when applied (:meth:`Scenario.apply`, :func:`check_scenario`).
    """
    if isinstance(scenario, Path) or str(scenario).endswith((".yaml", ".yml")):
        path = Path(scenario)
    else:
        path = SCENARIO_DIR / f"{scenario}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown scenario '{scenario}'; available scenarios: {available_scenarios()}")
    data = read_yaml(path)
    if "name" in data:
        raise ConfigError(f"scenario {path}: 'name' is the file name ({path.stem}); remove the key")
    return build_scenario({"name": path.stem, **data}, source=f"scenario '{path.stem}'")


def build_scenario(data: Mapping[str, Any], source: str = "scenario") -> Scenario:
    try:
        return Scenario.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc).replace("invalid config", "invalid scenario")) from None


def check_scenario(scenario: Scenario, config: Config) -> Config:
    """Apply ``scenario`` to ``config`` (``ConfigError`` naming the key if it does not fit)."""
    try:
        return scenario.apply(config)
    except ConfigError as exc:
        raise ConfigError(f"scenario '{scenario.name}' on preset '{config.name}': {exc}") from None


def describe_changes(scenario: Scenario, config: Config) -> list[dict[str, Any]]:
    """One row per changed key: the preset's value, the scenario's, the operation and the source."""
    data = config.to_dict()
    rows = []
    for key, change in scenario.changes.items():
        before = _current(data, key, change)
        rows.append(
            {
                "key": key,
                "base": before,
                "scenario": change.apply(before, key),
                "operation": f"{change.operation} {getattr(change, change.operation)}",
                "source": change.source,
            }
        )
    return rows
