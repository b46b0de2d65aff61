"""JSON Schema (draft 2020-12) of every public event, generated from the wire Structs.

The Structs in :mod:`.events` are the contract; these schemas are derived from them by
msgspec at run time, so they cannot drift from what driftline accepts (a copy kept in
files could). ``driftline schema`` prints them, ``driftline schema --out DIR`` writes one
file per event for a build that wants files.

What JSON Schema cannot say, so that a value can pass the schema and still be refused
(each one checked by ``tests/test_schema.py``):

* an integer field (``version``, ``attempts``) written with a fraction, ``3.0``: JSON
  Schema's ``integer`` is a value and takes it, driftline's decoder takes only ``3``;
* finite numbers: the schema bounds them at +-1.797e308; NaN and Infinity are not JSON
  at all, and ``1e999`` is refused by both;
* the size of a message (``DRIFTLINE_MAX_MESSAGE_BYTES``) and of a batch
  (``DRIFTLINE_MAX_BATCH_EVENTS``, which :func:`message_schema` uses as ``maxItems`` at
  its default);
* integers beyond 64 bits in fields without bounds (a dead letter's ``partition``).

>>> sorted(SCHEMAS)[:3]
['alert', 'alert-delivery', 'dead-letter']
>>> schema("label")["required"]
['prediction_id', 'label']
"""

from __future__ import annotations

from typing import Any

import msgspec

from driftline.models.wire.codec import DEFAULT_MAX_BATCH, KINDS, EventKind

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "urn:driftline:schema:"

# Names on the command line and in file names: "scored pair" -> "scored-pair".
SCHEMAS: dict[str, EventKind[Any]] = {kind.name.replace(" ", "-"): kind for kind in KINDS}

# The topics whose values are events of one kind, object or JSON array (DESIGN.md).
TOPICS = {"predictions": "prediction", "labels": "label", "scored": "scored-pair",
          "alerts": "alert", "retrain": "retrain-request", "models": "model-event",
          "deadletter": "dead-letter", "alert-deliveries": "alert-delivery"}


def schema(name: str) -> dict[str, Any]:
    """The standalone JSON Schema of one event (``"prediction"``, ``"scored-pair"``, ...);
    a :class:`KeyError` names the known ones."""
    kind = _kind(name)
    typ = kind.strict or kind.type  # with the model name's pattern
    (ref,), components = msgspec.json.schema_components([typ], ref_template="#/$defs/{name}")
    main = components.pop(typ.__name__)
    if kind.strict is not None:  # the twin's own name and docstring are not the event's
        main = {k: v for k, v in main.items() if k != "description"}
        main["title"] = kind.type.__name__
    out: dict[str, Any] = {"$schema": DIALECT, "$id": f"{ID_BASE}{name}.json", **main,
                           "description": _description(kind)}
    if components:  # the nested Structs it refers to, e.g. an alert's attribution
        out["$defs"] = components
    portable: dict[str, Any] = _portable(out)
    return portable


def _portable(node: Any) -> Any:
    """Patterns in the dialect JSON Schema uses (ECMA-262): the wire layer anchors with
    Python's ``\\Z`` (its ``$`` matches before a final newline), where ECMA's ``$``
    already means the very end."""
    if isinstance(node, dict):
        return {k: (v.replace("\\Z", "$") if k == "pattern" and isinstance(v, str)
                    else _portable(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_portable(v) for v in node]
    return node


def message_schema(name: str, max_batch: int = DEFAULT_MAX_BATCH) -> dict[str, Any]:
    """A whole message value: one event, or a JSON array of 1..``max_batch`` of them."""
    one = schema(name)
    defs = one.pop("$defs", {})
    dialect, ident = one.pop("$schema"), one.pop("$id")
    out: dict[str, Any] = {
        "$schema": dialect, "$id": ident.replace(".json", ".message.json"),
        "description": f"A message value: one {_kind(name).name} event, or a JSON array "
                       "of events of that kind (a batch).",
        "anyOf": [{"$ref": "#/$defs/event"},
                  {"type": "array", "items": {"$ref": "#/$defs/event"},
                   "minItems": 1, "maxItems": max_batch}],
        "$defs": {"event": one, **defs}}
    return out


def schemas() -> dict[str, dict[str, Any]]:
    """Every public event's schema, by name."""
    return {name: schema(name) for name in SCHEMAS}


def _kind(name: str) -> EventKind[Any]:
    try:
        return SCHEMAS[name]
    except KeyError:
        raise KeyError(f"no event {name!r}; known: {', '.join(SCHEMAS)}") from None


def _description(kind: EventKind[Any]) -> str:
    topic = next(t for t, n in TOPICS.items() if SCHEMAS[n] is kind)
    return (f"A driftline {kind.name} event (the driftline.{topic} topic), generated from "
            f"driftline.models.wire.events.{kind.type.__name__}. Unknown fields are refused.")
