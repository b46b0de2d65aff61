"""Per-model monitoring configuration, from a TOML file (``DRIFTLINE_MONITOR_CONFIG``).

```toml
[defaults]                 # every model, unless its own table says otherwise
window = 1000              # rolling window, in scored pairs
baseline_pairs = 1000      # a version's first N pairs set its baseline MSE

[models.houses]
task = "regression"        # or "classification": labels 0/1, prediction = P(label = 1)
baseline_mse = 2.5         # fixed baseline instead of the first N pairs

[models.houses.concept_drift]
detector = "adwin"         # or "page_hinkley"
params = { delta = 0.001 }
```

Unknown keys and wrong types are errors that name the key (a typo in an alert
threshold should not silently fall back to a default). Parsed with ``tomllib``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftline.errors import ConfigError

DETECTORS = {"adwin": {"delta", "clock", "max_buckets", "min_window_length", "grace_period"},
             "page_hinkley": {"min_instances", "delta", "threshold", "alpha"}}


@dataclass(frozen=True)
class ConceptDriftConfig:
    detector: str = "adwin"
    params: dict[str, float] = field(default_factory=dict)  # River's defaults


@dataclass(frozen=True)
class DataDriftConfig:
    """Population Stability Index of each feature (and of the prediction) against a reference."""

    reference_size: int = 1000   # the version's first N predictions
    window: int = 1000           # compared with the most recent N
    check_every: int = 250       # predictions between two checks
    bins: int = 10               # quantile bins of the reference
    psi_threshold: float = 0.25  # above: drift; critical above twice this
    psi_resolve: float = 0.1     # below: resolved
    consecutive: int = 2         # checks in a row before firing or resolving


@dataclass(frozen=True)
class ThresholdConfig:
    factor: float = 1.5          # rolling MSE above factor x baseline ...
    consecutive: int = 200       # ... for this many pairs in a row fires;
    resolve_factor: float = 1.1  # at or under this x baseline for as many pairs resolves


@dataclass(frozen=True)
class StarvationConfig:
    threshold: float = 0.5       # share of resolved predictions that expired unlabeled
    window: int = 1000           # over the last N resolved (scored or expired) predictions
    min_events: int = 100


RETRAIN_KINDS = ("concept_drift", "data_drift", "prediction_drift", "metric_threshold",
                 "label_starvation")


@dataclass(frozen=True)
class RetrainConfig:
    """When an alert asks for a retrain (the trigger agent, :mod:`driftline.agents.retrain.trigger`)."""

    enabled: bool = True
    kinds: tuple[str, ...] = ("concept_drift", "metric_threshold")  # firing alerts that trigger
    min_pairs: int = 500         # scored pairs of the version after the alert, before training
    cooldown: float = 1800.0     # event-time seconds after a triggering alert: no second one
    max_per_hour: int = 2        # retrains per model per hour of event time


@dataclass(frozen=True)
class ModelConfig:
    task: str = "regression"
    window: int = 1000
    baseline_pairs: int = 1000
    baseline_mse: float | None = None
    cooldown: float = 300.0      # event-time seconds after a resolve before the same alert fires
    concept_drift: ConceptDriftConfig = field(default_factory=ConceptDriftConfig)
    data_drift: DataDriftConfig = field(default_factory=DataDriftConfig)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    starvation: StarvationConfig = field(default_factory=StarvationConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)

    def __post_init__(self) -> None:
        if self.task not in ("regression", "classification"):
            raise ConfigError(f"task must be 'regression' or 'classification', got {self.task!r}")
        for name in ("window", "baseline_pairs"):
            if getattr(self, name) < 2:
                raise ConfigError(f"{name} must be at least 2")
        cd = self.concept_drift
        if cd.detector not in DETECTORS:
            raise ConfigError(f"concept_drift.detector must be one of {', '.join(DETECTORS)}, "
                              f"got {cd.detector!r}")
        unknown = set(cd.params) - DETECTORS[cd.detector]
        if unknown:
            raise ConfigError(f"concept_drift.params: {', '.join(sorted(unknown))} not a "
                              f"parameter of {cd.detector} "
                              f"({', '.join(sorted(DETECTORS[cd.detector]))})")
        dd = self.data_drift
        if not 0 < dd.psi_resolve < dd.psi_threshold:
            raise ConfigError("data_drift: need 0 < psi_resolve < psi_threshold")
        if dd.bins < 2 or dd.reference_size < dd.bins or dd.window < dd.bins:
            raise ConfigError("data_drift: need bins >= 2 and reference_size, window >= bins")
        if self.threshold.factor <= 1.0:
            raise ConfigError("threshold.factor must be above 1")
        if not 1.0 <= self.threshold.resolve_factor <= self.threshold.factor:
            raise ConfigError("threshold: need 1 <= resolve_factor <= factor")
        if not 0 < self.starvation.threshold < 1:
            raise ConfigError("starvation.threshold must be between 0 and 1")
        rt = self.retrain
        unknown = set(rt.kinds) - set(RETRAIN_KINDS)
        if unknown:
            raise ConfigError(f"retrain.kinds: {', '.join(sorted(unknown))} not an alert kind "
                              f"({', '.join(RETRAIN_KINDS)})")
        if rt.min_pairs < 0 or rt.max_per_hour < 1 or rt.cooldown < 0:
            raise ConfigError("retrain: need min_pairs >= 0, max_per_hour >= 1, cooldown >= 0")


@dataclass(frozen=True)
class MonitorConfig:
    defaults: ModelConfig = field(default_factory=ModelConfig)
    models: dict[str, ModelConfig] = field(default_factory=dict)

    def for_model(self, model: str) -> ModelConfig:
        return self.models.get(model, self.defaults)

    @classmethod
    def load(cls, path: str | Path | None) -> "MonitorConfig":
        if not path:
            return cls()
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"monitor config {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"monitor config {path}: {exc}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "monitor config") -> "MonitorConfig":
        extra = set(data) - {"defaults", "models"}
        if extra:
            raise ConfigError(f"{where}: unknown table(s) {', '.join(sorted(extra))}; "
                              f"use [defaults] and [models.NAME]")
        defaults = _build(ModelConfig, data.get("defaults", {}), f"{where} [defaults]",
                          ModelConfig())
        models = {name: _build(ModelConfig, table, f"{where} [models.{name}]", defaults)
                  for name, table in data.get("models", {}).items()}
        return cls(defaults, models)


def _build(kind: type, table: Any, where: str, base: Any) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    known = {f.name: f for f in dataclasses.fields(kind)}
    unknown = set(table) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(known)}")
    values = {}
    for name, value in table.items():
        current = getattr(base, name)
        if dataclasses.is_dataclass(current):
            values[name] = _build(type(current), value, f"{where}.{name}", current)
        elif name == "kinds":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}.kinds: must be a list of alert kinds")
            values[name] = tuple(value)
        elif name == "params":
            if not isinstance(value, dict) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
                raise ConfigError(f"{where}.params: must be a table of numbers")
            values[name] = dict(value)
        else:
            values[name] = _check_type(value, known[name].type, f"{where}.{name}")
    try:
        return dataclasses.replace(base, **values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_type(value: Any, annotation: str, where: str) -> Any:
    if annotation == "bool" and isinstance(value, bool):
        return value
    if "float" in annotation and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation == "str" and isinstance(value, str):
        return value
    raise ConfigError(f"{where}: expected {annotation}, got {type(value).__name__} {value!r}")
