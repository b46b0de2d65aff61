"""Event schemas of the wire format (DESIGN.md, "Topics and wire format").

Events travel as plain JSON objects, so they are plain ``dict``s here too; each
schema validates a decoded object and returns a normalised copy, raising
:class:`~driftline.errors.SchemaError` that names the field.

>>> PREDICTION.validate({"prediction_id": "p1", "model": "houses", "prediction": 3})
{'prediction_id': 'p1', 'model': 'houses', 'prediction': 3.0, 'version': None, 'features': {}}
>>> LABEL.validate({"prediction_id": "p1", "label": float("nan")})
Traceback (most recent call last):
...
driftline.errors.SchemaError: label: must be a finite number, got nan
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from driftline.errors import SchemaError

MAX_ID_CHARS = 256
MAX_FEATURES = 1024
MAX_FEATURE_NAME_CHARS = 256
MAX_TEXT_CHARS = 4096
# Epoch seconds above this are almost surely milliseconds (year 5138).
MAX_EPOCH_SECONDS = 1e11
# Integers driftline can write back out (orjson stops at 64 bits; the lenient parser of
# models/wire.py reads any size).
MAX_INT = 2**63 - 1

MODEL_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")

Check = Callable[[Any, str], Any]


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def finite_number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(f"must be a finite number, got {_type_name(value)}", path=path,
                          kind="wrong_type")
    try:
        number = float(value)
    except OverflowError:
        raise SchemaError("must be a finite number, got an integer too large for a float",
                          path=path, kind="not_finite") from None
    if not math.isfinite(number):
        raise SchemaError(f"must be a finite number, got {number}", path=path, kind="not_finite")
    return number


def prediction_id(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise SchemaError(f"must be a string, got {_type_name(value)}", path=path,
                          kind="wrong_type")
    if not 1 <= len(value) <= MAX_ID_CHARS:
        raise SchemaError(f"must be 1 to {MAX_ID_CHARS} characters, got {len(value)}",
                          path=path, kind="bad_id")
    return value


def model_name(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise SchemaError(f"must be a string, got {_type_name(value)}", path=path,
                          kind="wrong_type")
    if not MODEL_RE.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise SchemaError(f"must match [A-Za-z0-9._-]{{1,128}}, got {shown!r}", path=path,
                          kind="bad_model")
    return value


def version(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(f"must be an integer >= 1 or null, got {_type_name(value)}",
                          path=path, kind="wrong_type")
    if not 1 <= value <= MAX_INT:
        shown = value if value < 1 else f"an integer of {len(str(value))} digits"
        raise SchemaError(f"must be an integer >= 1 (at most 2**63 - 1) or null, got {shown}",
                          path=path, kind="out_of_range")
    return value


def positive_int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(f"must be an integer >= 1, got {_type_name(value)}", path=path,
                          kind="wrong_type")
    if not 1 <= value <= MAX_INT:
        shown = value if value < 1 else f"an integer of {len(str(value))} digits"
        raise SchemaError(f"must be an integer >= 1 (at most 2**63 - 1), got {shown}",
                          path=path, kind="out_of_range")
    return value


def timestamp(value: Any, path: str) -> float:
    number = finite_number(value, path)
    if number < 0:
        raise SchemaError(f"must be epoch seconds >= 0, got {number}", path=path,
                          kind="out_of_range")
    if number > MAX_EPOCH_SECONDS:
        raise SchemaError(f"must be epoch seconds, got {number} (milliseconds?)", path=path,
                          kind="out_of_range")
    return number


def features(value: Any, path: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SchemaError(f"must be an object of name -> number, got {_type_name(value)}",
                          path=path, kind="wrong_type")
    if len(value) > MAX_FEATURES:
        raise SchemaError(f"has {len(value)} entries, at most {MAX_FEATURES} allowed", path=path,
                          kind="oversized")
    # The common case in one pass each: every value a float (JSON numbers with a fraction
    # or exponent), their sum finite (so each is), every name of a valid length. Anything
    # else takes the loop below, which names the offending entry.
    if (all(type(x) is float for x in value.values()) and math.isfinite(sum(value.values()))
            and all(0 < len(name) <= MAX_FEATURE_NAME_CHARS for name in value)):
        return value
    out: dict[str, float] = {}
    for name, x in value.items():
        if not 1 <= len(name) <= MAX_FEATURE_NAME_CHARS:
            raise SchemaError(f"feature names must be 1 to {MAX_FEATURE_NAME_CHARS} characters",
                              path=path, kind="bad_feature")
        out[name] = finite_number(x, f"{path}.{name}")
    return out


def text(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise SchemaError(f"must be a string, got {_type_name(value)}", path=path,
                          kind="wrong_type")
    if len(value) > MAX_TEXT_CHARS:
        raise SchemaError(f"must be at most {MAX_TEXT_CHARS} characters", path=path,
                          kind="oversized")
    return value


def one_of(*choices: str) -> Check:
    def check(value: Any, path: str) -> str:
        if value not in choices:
            raise SchemaError(f"must be one of {', '.join(choices)}, got {value!r}", path=path,
                              kind="out_of_range")
        return value
    return check


def optional(check: Check) -> Check:
    def maybe(value: Any, path: str) -> Any:
        return None if value is None else check(value, path)
    return maybe


def number_map(value: Any, path: str) -> dict[str, Any]:
    """Metrics: an object of name -> finite number, null, or a nested object of the same."""
    if not isinstance(value, dict):
        raise SchemaError(f"must be an object, got {_type_name(value)}", path=path,
                          kind="wrong_type")
    out: dict[str, Any] = {}
    for name, x in value.items():
        sub = f"{path}.{name}"
        out[name] = (None if x is None else
                     number_map(x, sub) if isinstance(x, dict) else finite_number(x, sub))
    return out



@dataclass(frozen=True)
class Field:
    name: str
    check: Check
    required: bool = True
    # Called to fill in an optional field the producer left out; None leaves it absent.
    default: Callable[[], Any] | None = None


class Schema:
    """A named set of fields; :meth:`validate` returns a normalised copy or raises."""

    def __init__(self, name: str, *fields: Field) -> None:
        self.name = name
        self.fields = fields
        self.names = frozenset(f.name for f in fields)

    def validate(self, obj: Any, path: str = "") -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise SchemaError(f"a {self.name} event must be a JSON object, got "
                              f"{'array' if isinstance(obj, list) else _type_name(obj)}",
                              path=path, kind="wrong_type")
        extra = obj.keys() - self.names
        if extra:
            raise SchemaError(
                f"unknown field(s) {', '.join(sorted(map(repr, extra)))[:200]} in a {self.name} "
                f"event; allowed: {', '.join(f.name for f in self.fields)}",
                path=path, kind="unknown_field")
        out: dict[str, Any] = {}
        for f in self.fields:
            if f.name in obj:
                try:  # the path is built only for an error: this loop runs for every event
                    out[f.name] = f.check(obj[f.name], f.name)
                except SchemaError as exc:
                    raise exc.under(path) from None
            elif f.required:
                raise SchemaError(f"required field is missing from a {self.name} event",
                                  path=f"{path}.{f.name}" if path else f.name,
                                  kind="missing_field")
            elif f.default is not None:
                out[f.name] = f.default()
        return out

    def __repr__(self) -> str:
        return f"Schema({self.name!r})"


# Optional fields with a default appear in the normalised event; optional ones
# without (ts, model hint) stay absent when the producer left them out.
PREDICTION = Schema(
    "prediction",
    Field("prediction_id", prediction_id),
    Field("model", model_name),
    Field("prediction", finite_number),
    Field("version", version, required=False, default=lambda: None),
    Field("features", features, required=False, default=dict),
    Field("ts", timestamp, required=False),
)

LABEL = Schema(
    "label",
    Field("prediction_id", prediction_id),
    Field("label", finite_number),
    Field("ts", timestamp, required=False),
    Field("model", model_name, required=False),
)

SCORED = Schema(
    "scored pair",
    Field("prediction_id", prediction_id),
    Field("model", model_name),
    Field("version", version),
    Field("prediction", finite_number),
    Field("label", finite_number),
    Field("error", finite_number),
    Field("features", features),
    Field("ts", optional(timestamp)),
    Field("label_ts", optional(timestamp)),
)

ALERT_KINDS = ("concept_drift", "data_drift", "prediction_drift", "metric_threshold",
               "label_starvation")
ALERT = Schema(
    "alert",
    Field("alert_id", prediction_id),
    Field("model", model_name),
    Field("version", version),
    Field("kind", one_of(*ALERT_KINDS)),
    Field("status", one_of("firing", "resolved")),
    Field("severity", one_of("warning", "critical")),
    Field("detector", text),
    Field("feature", optional(text)),
    Field("ts", timestamp),
    Field("metrics", number_map),
    Field("message", text),
)

RETRAIN_REQUEST = Schema(
    "retrain request",
    Field("request_id", prediction_id),
    Field("model", model_name),
    Field("base_version", version),
    Field("alert_id", optional(prediction_id)),
    Field("reason", text),
    Field("ts", timestamp),
    # driftline's addition: train on pairs labelled at or after this event time (the
    # drift point); absent, the most recent pairs whatever their time.
    Field("since", optional(timestamp), required=False),
)

MODEL_EVENT = Schema(
    "model event",
    Field("model", model_name),
    Field("version", positive_int),
    Field("event", one_of("registered", "promoted", "rejected", "rolled_back")),
    Field("parent_version", version),
    Field("request_id", optional(prediction_id)),
    Field("metrics", number_map),
    Field("ts", timestamp),
)

def validate_many(schema: Schema, obj: Any) -> list[dict[str, Any]]:
    """Validate a single event or a JSON-array batch; raise on the first bad element."""
    if isinstance(obj, list):
        return [schema.validate(item, f"[{i}]") for i, item in enumerate(obj)]
    return [schema.validate(obj)]


def make_scored(prediction: Mapping[str, Any], label: Mapping[str, Any],
                prediction_time: float, label_time: float) -> dict[str, Any]:
    """The scored pair of a prediction and its label (``error`` = prediction - label)."""
    return {
        "prediction_id": prediction["prediction_id"],
        "model": prediction["model"],
        "version": prediction.get("version"),
        "prediction": prediction["prediction"],
        "label": label["label"],
        "error": prediction["prediction"] - label["label"],
        "features": prediction.get("features") or {},
        "ts": prediction.get("ts", prediction_time),
        "label_ts": label.get("ts", label_time),
    }
