"""msgspec's validation errors as driftline's stable dead-letter errors.

msgspec decides whether an event is valid; this module only says why not, in the
form the README documents: a stable ``kind`` (``not_finite``, ``wrong_type``, ...),
the field path (``[3].label``, ``features.x1``) and a reason. It needs the decoded
object as well as msgspec's message, to name a feature (msgspec says
``$.features[...]``) and to show the offending value.

>>> import msgspec
>>> from driftline.models.wire.events import Label
>>> obj = {"prediction_id": "a", "label": float("nan")}
>>> try:
...     msgspec.convert(obj, Label)
... except msgspec.ValidationError as exc:
...     err = explain(exc, obj, "label")
>>> err.kind, err.path, err.detail
('not_finite', 'label', 'must be a finite number, got nan')
"""

from __future__ import annotations

import re
import typing
from typing import Any

import msgspec

from driftline.errors import SchemaError
from driftline.models.wire import events as ev

# " - at" is required: a message that ends in a backquoted "$" is an unknown field named $.
_AT = re.compile(r"^(?P<reason>.*?)(?: - at `(?P<key>key)` in| - at) `\$(?P<path>[^`]*)`$",
                 re.S)
_FIELD = re.compile(r"field `(?P<name>.*)`$", re.S)  # a name may hold a backtick (fuzzed)
_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]+)`(?:, got `(?P<got>[^`]+)`)?(?P<rest>.*)$",
                       re.S)
_TOKEN = re.compile(r"\[(\d+|\.\.\.)\]|\.([^.\[]+)")

ID_FIELDS = {"prediction_id", "alert_id", "request_id"}
INT_FIELDS = {"version", "base_version", "parent_version", "attempts", "status_code",
              "partition", "offset", "index", "raw_bytes"}
TIME_FIELDS = {"ts", "label_ts", "since"}
TEXT_FIELDS = {"detector", "feature", "message", "reason", "target", "error"}

_WANT = {
    "float": "a finite number", "int": "an integer", "str": "a string",
    "int | null": "an integer >= 1 or null", "object": "an object",
    "object | null": "an object of name -> value", "array": "an array",
    "float | str": (f"a finite number or a class (a string of 1 to {ev.MAX_CATEGORY_CHARS} "
                    f"characters)"),
}
OUTCOME_FIELDS = {"prediction", "label"}


def explain(exc: msgspec.ValidationError, obj: Any, event: str) -> SchemaError:
    """The :class:`SchemaError` for ``exc``, raised by msgspec on ``obj`` (an ``event``)."""
    message = str(exc)
    match = _AT.match(message)
    reason, path = (match["reason"], match["path"]) if match else (message, "")
    on_key = bool(match and match["key"])
    tokens = _tokens(path)
    if "..." in tokens:  # a dict value: find which key msgspec meant
        tokens = _resolve(obj, tokens, nested="metrics" in tokens)
    shown = _path(tokens)
    leaf = next((t for t in reversed(tokens) if isinstance(t, str)), "")
    in_features = "features" in tokens[:-1] or (on_key and leaf == "features")
    if reason.startswith("Object missing required field"):
        name = _FIELD.search(reason)["name"]  # type: ignore[index]
        return SchemaError(f"required field is missing from a {event} event",
                           path=_join(shown, name), kind="missing_field")
    if reason.startswith("Object contains unknown field"):
        name = _FIELD.search(reason)["name"]  # type: ignore[index]
        allowed = ", ".join(_fields(event))
        return SchemaError(f"unknown field(s) {name!r} in a {event} event; allowed: {allowed}",
                           path=shown, kind="unknown_field")
    if reason.startswith("Invalid enum value"):
        listed = ", ".join(_choices(event, leaf))
        return SchemaError(f"must be one of {listed}, got {_value(obj, tokens)!r}", path=shown,
                           kind="out_of_range")
    if reason == "Number out of range":
        if leaf in INT_FIELDS:
            return SchemaError("must be an integer >= 1 (at most 2**63 - 1), got an integer "
                               "beyond 64 bits", path=shown, kind="out_of_range")
        return SchemaError("must be a finite number, got a number too large for a float",
                           path=shown, kind="not_finite")
    expected = _EXPECTED.match(reason)
    if expected is None:
        return SchemaError(reason, path=shown, kind="invalid")
    want, got, rest = expected["want"], expected["got"], expected["rest"].strip()
    choices = _choices(event, leaf) if leaf and len(tokens) <= 2 else ()
    if got is not None and choices:  # a documented-values field: whatever came, out of range
        return SchemaError(f"must be one of {', '.join(choices)}, got {_value(obj, tokens)!r}",
                           path=shown, kind="out_of_range")
    if got is not None:
        if not tokens or (len(tokens) == 1 and isinstance(tokens[0], int)):
            return SchemaError(f"a {event} event must be a JSON object, got {got}",
                               path=shown, kind="wrong_type")
        if in_features or leaf == "features":
            what = (f"a finite number, a category (a string of 1 to {ev.MAX_CATEGORY_CHARS} "
                    f"characters, or a boolean) or null" if in_features else
                    "an object of name -> value")
            return SchemaError(f"must be {what}, got {got}", path=shown, kind="wrong_type")
        return SchemaError(f"must be {_WANT.get(want, want)}, got {got}", path=shown,
                           kind="wrong_type")
    if on_key and in_features:
        return SchemaError(f"feature names must be 1 to {ev.MAX_FEATURE_NAME_CHARS} characters",
                           path=shown, kind="bad_feature")
    if rest.startswith("matching regex"):
        value = _value(obj, tokens)
        value = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
        return SchemaError(f"must match [A-Za-z0-9._-]{{1,128}}, got {value!r}", path=shown,
                           kind="bad_model")
    if "probabilities" in tokens[:-1] or (leaf == "probabilities" and want == "float"):
        value = _value(obj, tokens)
        if isinstance(value, dict):  # msgspec names the map, not the class
            name, value = next(((k, v) for k, v in value.items()
                                if not isinstance(v, (int, float)) or not 0 <= v <= 1),
                               ("", value))
            shown = _join(shown, name) if name else shown
        return SchemaError(f"a probability must be between 0 and 1, got {value!r}",
                           path=shown, kind="out_of_range")
    if leaf == "probabilities" and rest.startswith("of length"):
        n = len(_value(obj, tokens) or ())
        return SchemaError(f"must have 1 to {ev.MAX_CLASSES} classes, got {n}", path=shown,
                           kind="out_of_range" if n == 0 else "oversized")
    if rest.startswith("of length"):
        if leaf in OUTCOME_FIELDS and want == "str":
            n = len(_value(obj, tokens) or "")
            return SchemaError(f"a class must be 1 to {ev.MAX_CATEGORY_CHARS} characters, "
                               f"got {n}", path=shown, kind="out_of_range")
        if in_features and want == "str":
            n = len(_value(obj, tokens) or "")
            return SchemaError(f"a category must be 1 to {ev.MAX_CATEGORY_CHARS} characters, "
                               f"got {n}", path=shown, kind="out_of_range")
        if want == "object":
            n = len(_value(obj, tokens) or ())
            return SchemaError(f"has {n} entries, at most {ev.MAX_FEATURES} allowed",
                               path=shown, kind="oversized")
        if leaf in ID_FIELDS:
            n = len(_value(obj, tokens) or "")
            return SchemaError(f"must be 1 to {ev.MAX_ID_CHARS} characters, got {n}",
                               path=shown, kind="bad_id")
        if leaf in TEXT_FIELDS:
            return SchemaError(f"must be at most {ev.MAX_TEXT_CHARS} characters", path=shown,
                               kind="oversized")
        return SchemaError(f"must be a string {rest}", path=shown, kind="out_of_range")
    value = _value(obj, tokens)
    if want == "float" and isinstance(value, float) and value != value or value in (
            float("inf"), float("-inf")):
        return SchemaError(f"must be a finite number, got {value}", path=shown, kind="not_finite")
    if leaf in TIME_FIELDS:
        hint = " (milliseconds?)" if isinstance(value, (int, float)) and value > 0 else ""
        return SchemaError(f"must be epoch seconds >= 0 and <= {ev.MAX_EPOCH_SECONDS:g}, got "
                           f"{value}{hint}", path=shown, kind="out_of_range")
    if want == "int":
        shown_value = value if not isinstance(value, int) or value < 1 else \
            f"an integer of {len(str(value))} digits"
        return SchemaError(f"must be an integer >= 1 (at most 2**63 - 1), got {shown_value}",
                           path=shown, kind="out_of_range")
    return SchemaError(f"must be {_WANT.get(want, want)} {rest}, got {value!r}", path=shown,
                       kind="out_of_range")


def _tokens(path: str) -> list[int | str]:
    out: list[int | str] = []
    for index, name in _TOKEN.findall(path):
        out.append(name if name else (index if index == "..." else int(index)))
    return out


def _resolve(obj: Any, tokens: list[int | str], *, nested: bool) -> list[int | str]:
    """``[..., "features", "..."]`` -> ``[..., "features", "x1"]``: msgspec names the object
    whose value is wrong, not the key; the key is the first whose value is not a finite
    number (nor, in metrics, a null or an object of them)."""
    while "..." in tokens:
        at = tokens.index("...")
        container = _value(obj, tokens[:at])
        key = _first_bad_key(container, nested) if isinstance(container, dict) else None
        if key is None:
            return [t for t in tokens if t != "..."]
        tokens = [*tokens[:at], str(key), *tokens[at + 1:]]
    return tokens


def _first_bad_key(container: dict[Any, Any], nested: bool) -> Any:
    """The key msgspec complained about: the first value that is not a finite number
    (nor, where objects of them may nest - metrics - a null or such an object)."""
    if not nested:
        return next((k for k, v in container.items()
                     if v is None or isinstance(v, dict) or _bad_leaf(v)), None)
    for wanted in (_bad_leaf, _has_bad_leaf, lambda v: v is None):
        for key, value in container.items():
            if wanted(value):
                return key
    return None


def _bad_leaf(value: Any) -> bool:
    if value is None or isinstance(value, dict):
        return False
    if isinstance(value, int) and not isinstance(value, bool):
        return not -ev.MAX_INT - 1 <= value <= ev.MAX_INT  # beyond what can be written out
    return not isinstance(value, float) or not -ev.MAX_FLOAT <= value <= ev.MAX_FLOAT


def _has_bad_leaf(value: Any) -> bool:
    return isinstance(value, dict) and any(_bad_leaf(v) or _has_bad_leaf(v)
                                           for v in value.values())


def _value(obj: Any, tokens: list[int | str]) -> Any:
    for token in tokens:
        try:
            obj = obj[token]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


def _path(tokens: list[int | str]) -> str:
    text = ""
    for token in tokens:
        text += f"[{token}]" if isinstance(token, int) else (f".{token}" if text else token)
    return text


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _fields(event: str) -> tuple[str, ...]:
    kind = _TYPES.get(event)
    return kind.__struct_fields__ if kind else ()


def _choices(event: str, field: str) -> tuple[str, ...]:
    """The values a Literal field of ``event`` takes."""
    kind = _TYPES.get(event)
    hint = typing.get_type_hints(kind, include_extras=True).get(field) if kind else None
    for arg in (*typing.get_args(hint), hint):
        if typing.get_origin(arg) is typing.Literal:
            return typing.get_args(arg)
    return ()


_TYPES: dict[str, type[msgspec.Struct]] = {
    "prediction": ev.Prediction, "label": ev.Label, "scored pair": ev.ScoredPair,
    "alert": ev.Alert, "retrain request": ev.RetrainRequest, "model event": ev.ModelEvent,
    "dead letter": ev.DeadLetter, "alert delivery": ev.AlertDelivery}
