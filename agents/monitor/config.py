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

Every table is a frozen :class:`msgspec.Struct`. ``tomllib`` reads the file and
:func:`msgspec.convert` checks each table against its struct (types, ``Meta``
ranges, unknown keys); a model's table is laid over ``[defaults]`` one sub-table at
a time. Errors name the key and show the value: a typo in an alert threshold should
not silently fall back to a default.

>>> cfg = MonitorConfig.from_dict({"defaults": {"threshold": {"factor": 2}},
...                                "models": {"m": {"threshold": {"consecutive": 50}}}})
>>> cfg.for_model("m").threshold
ThresholdConfig(factor=2.0, consecutive=50, resolve_factor=1.1)
>>> MonitorConfig.from_dict({"models": {"m": {"window": 1}}})
Traceback (most recent call last):
...
driftline.errors.ConfigError: monitor config [models.m].window: expected int >= 2, got 1
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import Meta

from driftline.agents.monitor import changepoint
from driftline.errors import ConfigError

DETECTORS = {"glr": {"threshold", "reference"},
             "adwin": {"delta", "clock", "max_buckets", "min_window_length", "grace_period"},
             "page_hinkley": {"min_instances", "delta", "threshold", "alpha"}}

RETRAIN_KINDS = ("concept_drift", "data_drift", "prediction_drift", "metric_threshold",
                 "label_starvation", "estimated_degradation", "multivariate_drift")

AtLeastOne = Annotated[int, Meta(ge=1)]
AtLeastTwo = Annotated[int, Meta(ge=2)]
NonNegative = Annotated[float, Meta(ge=0)]
Positive = Annotated[float, Meta(gt=0)]


class Table(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One table of the file: immutable, every key known (the subclasses inherit this)."""


class ConceptDriftConfig(Table, frozen=True):
    # glr: the calibrated change-point test (agents/monitor/changepoint.py); adwin and
    # page_hinkley: River's detectors on the raw error.
    detector: str = "glr"              # a key of DETECTORS, checked with its params
    params: dict[str, int | float] = {}  # glr: from the budget; River's: River's defaults


class DataDriftConfig(Table, frozen=True):
    """Population Stability Index of each feature (and of the prediction) against a reference."""

    reference_size: AtLeastOne = 1000   # the version's first N predictions
    window: AtLeastOne = 1000           # compared with the most recent N
    check_every: AtLeastOne = 250       # predictions between two checks
    bins: AtLeastTwo = 10               # quantile bins of the reference
    # Above: drift, critical above twice this; below psi_resolve: resolved. Unset (the
    # default), each column's are calibrated from its reference to the model's
    # false_alarm_budget (agents/monitor/calibration.py); set, they win.
    psi_threshold: Positive | None = None
    psi_resolve: Positive | None = None
    consecutive: AtLeastOne = 2         # checks in a row before firing or resolving
    # Categories kept per categorical feature and version; later ones count as one
    # overflow, so a producer's million distinct strings cannot grow the memory.
    max_categories: AtLeastTwo = 1000


class ThresholdConfig(Table, frozen=True):
    factor: float = 1.5                 # rolling MSE above factor x baseline ...
    consecutive: AtLeastOne = 200       # ... for this many pairs in a row fires;
    resolve_factor: float = 1.1         # at or under this x baseline for as many pairs resolves


class StarvationConfig(Table, frozen=True):
    threshold: float = 0.5              # share of resolved predictions that expired unlabeled
    window: AtLeastOne = 1000           # over the last N resolved (scored or expired) predictions
    min_events: Annotated[int, Meta(ge=0)] = 100


class RetrainConfig(Table, frozen=True):
    """When an alert asks for a retrain (the trigger, :mod:`driftline.agents.retrain.trigger`)."""

    enabled: bool = True
    kinds: tuple[str, ...] = ("concept_drift", "metric_threshold")  # firing alerts that trigger
    min_pairs: Annotated[int, Meta(ge=0)] = 500  # scored pairs of the version after the alert
    cooldown: NonNegative = 1800.0      # event-time seconds after a triggering alert: no second one
    max_per_hour: AtLeastOne = 2        # retrains per model per hour of event time


class EstimationConfig(Table, frozen=True):
    """Estimated performance before the labels arrive (CBPE, DLE: :mod:`..estimation`)."""

    enabled: bool = True
    reference_pairs: AtLeastTwo = 1000  # the version's first N labeled pairs fit the estimator
    factor: Annotated[float, Meta(gt=1)] = 1.5  # estimate above factor x its reference value ...
    consecutive: AtLeastOne = 200       # ... for this many predictions in a row fires


class MultivariateConfig(Table, frozen=True):
    """Multivariate drift: PCA reconstruction error of the features (:mod:`..multivariate`)."""

    enabled: bool = False
    variance: Annotated[float, Meta(gt=0, lt=1)] = 0.65  # share of variance the PCA keeps
    reference_size: AtLeastTwo = 1000   # the version's first N predictions
    window: AtLeastTwo = 1000           # mean error of the most recent N predictions ...
    check_every: AtLeastOne = 250       # ... checked every N predictions
    z: Annotated[float, Meta(gt=0)] = 4.0  # drift: mean error this many standard errors away
    consecutive: AtLeastOne = 2         # checks in a row before firing or resolving


TASKS = ("regression", "binary", "multiclass", "classification")  # the last: binary's old name


class ModelConfig(Table, frozen=True):
    # regression; binary (labels 0/1, prediction = P(1); "classification" is its old name);
    # multiclass (prediction and label: class strings, probabilities optional)
    task: Literal["regression", "binary", "multiclass", "classification"] = "regression"
    decision_threshold: Annotated[float, Meta(gt=0, lt=1)] = 0.5  # binary: P(1) >= it is 1
    window: AtLeastTwo = 1000
    baseline_pairs: AtLeastTwo = 1000
    baseline_mse: NonNegative | None = None
    cooldown: NonNegative = 300.0       # event-time seconds after a resolve: no new episode
    # Expected false alarms per 1,000,000 predictions over all the model's tests; sets
    # every threshold the file leaves unset (agents/monitor/calibration.py).
    false_alarm_budget: Positive = 1.0
    # Event-time seconds without predictions after which an older version than the one
    # serving has its open episodes resolved as superseded.
    superseded_after: NonNegative = 600.0
    concept_drift: ConceptDriftConfig = ConceptDriftConfig()
    data_drift: DataDriftConfig = DataDriftConfig()
    threshold: ThresholdConfig = ThresholdConfig()
    starvation: StarvationConfig = StarvationConfig()
    retrain: RetrainConfig = RetrainConfig()
    estimation: EstimationConfig = EstimationConfig()
    multivariate: MultivariateConfig = MultivariateConfig()
    segments: bool = False              # per-segment metrics and drift (prediction "segment")
    max_segments: AtLeastOne = 50       # segments beyond the first N pool as "_other"

    @property
    def kind(self) -> str:
        """The task, with ``classification`` read as ``binary``."""
        return "binary" if self.task == "classification" else self.task

    def __post_init__(self) -> None:
        # The checks that span keys, and (for configs built in Python, which msgspec does
        # not check against Meta) the ranges again. Raised as ValueError subclasses,
        # msgspec reports them as validation errors of this table.
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not 0 < self.decision_threshold < 1:
            raise ConfigError("decision_threshold must be between 0 and 1")
        for name in ("window", "baseline_pairs"):
            if getattr(self, name) < 2:
                raise ConfigError(f"{name} must be at least 2")
        cd = self.concept_drift
        if cd.detector not in DETECTORS:
            raise ConfigError(f"concept_drift.detector must be one of {', '.join(DETECTORS)}, "
                              f"got {cd.detector!r}")
        unknown = set(cd.params) - DETECTORS[cd.detector]
        if unknown:
            hint = next((f"; set concept_drift.detector = '{name}' for {name}'s"
                         for name in ("adwin", "page_hinkley")
                         if cd.detector == "glr" and unknown <= DETECTORS[name]), "")
            raise ConfigError(f"concept_drift.params: {', '.join(sorted(unknown))} not a "
                              f"parameter of {cd.detector} "
                              f"({', '.join(sorted(DETECTORS[cd.detector]))}){hint}")
        most = changepoint.HISTORY * changepoint.CLOCK
        if cd.detector == "glr" and not (cd.params.get("threshold", 1) > 0 and 20 <= cd.params.get(
                "reference", changepoint.REFERENCE) <= most):
            raise ConfigError(f"concept_drift.params: glr needs threshold > 0 and "
                              f"20 <= reference <= {most}")
        if not self.false_alarm_budget > 0 or self.superseded_after < 0:
            raise ConfigError("need false_alarm_budget > 0 and superseded_after >= 0")
        dd = self.data_drift
        for name in ("psi_threshold", "psi_resolve"):
            value = getattr(dd, name)
            if value is not None and not value > 0:
                raise ConfigError(f"data_drift.{name} must be above 0")
        if (dd.psi_threshold is not None and dd.psi_resolve is not None
                and not dd.psi_resolve < dd.psi_threshold):
            raise ConfigError("data_drift: need 0 < psi_resolve < psi_threshold")
        if dd.bins < 2 or dd.reference_size < dd.bins or dd.window < dd.bins:
            raise ConfigError("data_drift: need bins >= 2 and reference_size, window >= bins")
        if self.threshold.factor <= 1.0:
            raise ConfigError("threshold.factor must be above 1")
        if not 1.0 <= self.threshold.resolve_factor <= self.threshold.factor:
            raise ConfigError("threshold: need 1 <= resolve_factor <= factor")
        if not 0 < self.starvation.threshold < 1:
            raise ConfigError("starvation.threshold must be between 0 and 1")
        if self.estimation.factor <= 1.0:
            raise ConfigError("estimation.factor must be above 1")
        if not 0 < self.multivariate.variance < 1:
            raise ConfigError("multivariate.variance must be between 0 and 1")
        if self.max_segments < 1:
            raise ConfigError("max_segments must be at least 1")
        rt = self.retrain
        unknown = set(rt.kinds) - set(RETRAIN_KINDS)
        if unknown:
            raise ConfigError(f"retrain.kinds: {', '.join(sorted(unknown))} not an alert kind "
                              f"({', '.join(RETRAIN_KINDS)})")
        if rt.min_pairs < 0 or rt.max_per_hour < 1 or rt.cooldown < 0:
            raise ConfigError("retrain: need min_pairs >= 0, max_per_hour >= 1, cooldown >= 0")


# The keys of ModelConfig that are tables themselves: a model's table replaces only
# the keys it sets inside them.
SUB_TABLES = tuple(f for f in ModelConfig.__struct_fields__
                   if isinstance(getattr(ModelConfig(), f), Table))


class Limits(Table, frozen=True):
    """How much state producers can make the monitor keep (issue 30: 20,000 made-up model
    names took a worker from 155 MB to 2.2 GB). Per ``monitor-input`` partition, in the
    order of its input, so a replay of the same input keeps and refuses the same."""

    max_models: AtLeastOne = 256       # models monitored; a new one past this is refused
    max_versions: AtLeastOne = 8       # per model; past it the idlest quiet version goes
    # Monitor only what the model registry holds: a model it does not know, or a version
    # it does not have, is refused (counted: "unregistered"). Off: any model is monitored.
    registered_only: bool = False


class MonitorConfig(msgspec.Struct, frozen=True):
    defaults: ModelConfig = ModelConfig()
    models: dict[str, ModelConfig] = {}
    limits: Limits = Limits()

    def for_model(self, model: str) -> ModelConfig:
        return self.models.get(model, self.defaults)

    def decision_threshold(self, model: str) -> float:
        """Where ``model``'s P(1) becomes a 1 if it is binary: what the monitor, and the
        holdout, shadow and canary ``error_rate``, count its mistakes at."""
        return self.for_model(model).decision_threshold

    def with_tasks(self, tasks: dict[str, str]) -> MonitorConfig:
        """This config with each model of ``tasks`` given that task where the config gives
        it none (regression): what the registry's word does live (``replay --task``).

        >>> MonitorConfig().with_tasks({"churn": "binary"}).for_model("churn").kind
        'binary'
        """
        models = dict(self.models)
        for model, task in tasks.items():
            if task not in TASKS:
                raise ConfigError(f"task of {model} must be one of {', '.join(TASKS)}, got "
                                  f"{task!r}")
            current = self.for_model(model)
            if current.kind == "regression":
                models[model] = msgspec.structs.replace(current, task=task)
        return msgspec.structs.replace(self, models=models)

    @classmethod
    def load(cls, path: str | Path | None) -> MonitorConfig:
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
    def from_dict(cls, data: dict[str, Any], where: str = "monitor config") -> MonitorConfig:
        data = _table(data, where)
        extra = set(data) - {"defaults", "models", "limits"}
        if extra:
            raise ConfigError(f"{where}: unknown table(s) {', '.join(sorted(extra))}; "
                              f"use [defaults], [models.NAME] and [limits]")
        defaults = _model(_table(data.get("defaults", {}), f"{where} [defaults]"),
                          f"{where} [defaults]")
        base = msgspec.to_builtins(defaults)
        models = {}
        for name, table in _table(data.get("models", {}), f"{where} [models]").items():
            at = f"{where} [models.{name}]"
            table = _table(table, at)
            models[name] = _model({**base, **table, **{
                k: {**base[k], **table[k]} for k in SUB_TABLES
                if isinstance(table.get(k), dict)}}, at)
        limits = _table(data.get("limits", {}), f"{where} [limits]")
        try:
            return cls(defaults, models, msgspec.convert(limits, Limits))
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{where} [limits]: {exc}") from None


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a table, got {type(value).__name__} {value!r}")
    return value


def _model(table: dict[str, Any], where: str) -> ModelConfig:
    try:
        return msgspec.convert(table, ModelConfig)
    except msgspec.ValidationError as exc:
        raise _explain(str(exc), table, where) from None


_AT = re.compile(r"(?s)(?P<detail>.*?)(?: - at `\$(?P<path>[^`]*)`)?")
_PART = re.compile(r"\.(\w+)|\[([^\]]*)\]")
_MISSING = object()


def _explain(error: str, table: dict[str, Any], where: str) -> ConfigError:
    """msgspec's ``Expected `int`, got `str` - at `$.threshold.consecutive``` as
    ``<where>.threshold.consecutive: expected int, got str 'x'``."""
    match = _AT.fullmatch(error)
    assert match is not None  # the pattern matches any string
    detail, path = match["detail"], match["path"] or ""
    parts: list[str | int] = [name or (int(index) if index.isdigit() else index)
                              for name, index in _PART.findall(path)]
    if "..." in parts:  # inside a dict of values (params): name the dict
        parts = parts[:parts.index("...")]
        detail = "every value must be " + detail.removeprefix("Expected ").replace(
            "`int | float`", "a number").replace("`", "")
    at = where + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in parts)
    value = _lookup(table, parts)
    got = "" if value is _MISSING else f"{value!r}"
    if detail.startswith("Object contains unknown field"):
        known = _struct_at(parts).__struct_fields__
        unknown = sorted(set(value) - set(known)) if isinstance(value, dict) else []
        return ConfigError(f"{at}: unknown key(s) {', '.join(unknown)}; "
                           f"known: {', '.join(known)}")
    if detail.startswith("Invalid enum value") and parts:
        choices = [repr(c) for c in get_args(_field_type(parts))]
        parent = where + "".join(f".{p}" for p in parts[:-1])
        return ConfigError(f"{parent}: {parts[-1]} must be {', '.join(choices[:-1])} or "
                           f"{choices[-1]}, got {got}")
    if detail.startswith("Expected"):
        text = re.sub(r"\bobject\b", "a table", re.sub(r"\barray\b", "an array",
                                                        detail.replace("`", "")))
        text = "e" + text[1:]
        if got:
            text += f" {got}" if ", got " in text else f", got {got}"
        return ConfigError(f"{at}: {text}")
    return ConfigError(f"{at}: {detail}")


def _lookup(table: Any, parts: list[str | int]) -> Any:
    for p in parts:
        try:
            table = table[p]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return table


def _field_type(parts: list[str | int]) -> Any:
    kind: Any = ModelConfig
    for p in parts:
        kind = {f.name: f.type for f in msgspec.structs.fields(kind)}[str(p)]
    return kind


def _struct_at(parts: list[str | int]) -> type[msgspec.Struct]:
    kind: Any = _field_type(parts)
    return kind if isinstance(kind, type) and issubclass(kind, msgspec.Struct) else ModelConfig
