"""Bytes on a topic -> validated events, or the reasons they were refused.

A message value is one JSON event object or a JSON array of events of the same
kind (DESIGN.md). A bad element of a batch is refused on its own; the good
elements around it go on.

>>> from driftline.models.events import LABEL
>>> good, bad = decode(b'[{"prediction_id": "a", "label": 1}, {"label": 2}]', LABEL)
>>> good
[{'prediction_id': 'a', 'label': 1.0}]
>>> [(r.index, r.kind, r.error) for r in bad]
[(1, 'missing_field', '[1].prediction_id: required field is missing from a label event')]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from collections.abc import Iterator
from typing import Any

import orjson

from driftline.errors import SchemaError
from driftline.models.events import Schema

DEFAULT_MAX_BYTES = 1_048_576
DEFAULT_MAX_BATCH = 10_000


@dataclass(frozen=True)
class Rejection:
    """Why (part of) a message was refused. ``index`` is the batch position, or None."""

    kind: str
    error: str
    raw: bytes
    index: int | None = None


def decode(raw: bytes | None, schema: Schema, *, max_bytes: int = DEFAULT_MAX_BYTES,
           max_batch: int = DEFAULT_MAX_BATCH) -> tuple[list[dict[str, Any]], list[Rejection]]:
    """Decode and validate one message value; never raises on bad input."""
    if raw is None:
        return [], [Rejection("empty", "message has no value (null)", b"")]
    if len(raw) > max_bytes:
        return [], [Rejection("oversized", f"message is {len(raw)} bytes, the limit is "
                                           f"{max_bytes} (DRIFTLINE_MAX_MESSAGE_BYTES)", raw)]
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        obj = _lenient_loads(raw)
        if obj is _INVALID:
            return [], [Rejection("invalid_json", f"invalid JSON: {exc}", raw)]
    if isinstance(obj, list):
        return _decode_batch(obj, raw, schema, max_batch)
    try:
        return [schema.validate(obj)], []
    except SchemaError as exc:
        return [], [Rejection(exc.kind, str(exc), raw)]


_INVALID = object()


def _lenient_loads(raw: bytes) -> Any:
    """Second chance for what orjson refuses but Python's json writes: NaN, Infinity, 1e999
    and integers beyond 64 bits. They parse here so that validation can name the field
    ("prediction: must be a finite number, got nan") instead of a bare syntax error.

    A string with an unpaired surrogate escape (``"\\ud800"``) stays invalid, as orjson
    said: it is not Unicode text, and an id made of it could never be written out again
    (a scored pair, a join-state record) - it would stop the join instead."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return _INVALID
    return _INVALID if _has_unpaired_surrogate(obj) else obj


def _has_unpaired_surrogate(obj: Any) -> bool:
    stack = [obj]  # no recursion: the nesting can be as deep as json.loads allows
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _decode_batch(items: list[Any], raw: bytes, schema: Schema,
                  max_batch: int) -> tuple[list[dict[str, Any]], list[Rejection]]:
    if not items:
        return [], [Rejection("empty", "batch is an empty JSON array", raw)]
    if len(items) > max_batch:
        return [], [Rejection("oversized", f"batch has {len(items)} events, the limit is "
                                           f"{max_batch} (DRIFTLINE_MAX_BATCH_EVENTS)", raw)]
    good: list[dict[str, Any]] = []
    bad: list[Rejection] = []
    for i, item in enumerate(items):
        try:
            good.append(schema.validate(item, f"[{i}]"))
        except SchemaError as exc:
            bad.append(Rejection(exc.kind, str(exc), _element_raw(item, raw), index=i))
    return good, bad


def _element_raw(item: Any, raw: bytes) -> bytes:
    """The refused element as JSON, or the whole message if it cannot be written again
    (orjson stops at 255 levels of nesting, which its parser allows up to 1024)."""
    try:
        return orjson.dumps(item)
    except TypeError:
        return raw


def encode(obj: Any) -> bytes:
    """Events to wire bytes (compact UTF-8 JSON)."""
    return orjson.dumps(obj)


ARRAY_BYTES = 256 * 1024  # what driftline's own batch messages stay under


def arrays(encoded: list[bytes], max_bytes: int = ARRAY_BYTES) -> Iterator[list[bytes]]:
    """Encoded events in order, cut into runs whose JSON array stays under ``max_bytes``
    (a single larger event still gets a run of its own).

    >>> [len(run) for run in arrays([b"1234"] * 5, max_bytes=11)]
    [2, 2, 1]
    """
    run: list[bytes] = []
    size = 1
    for item in encoded:
        if run and size + len(item) + 1 > max_bytes:
            yield run
            run, size = [], 1
        run.append(item)
        size += len(item) + 1
    if run:
        yield run


def array(run: list[bytes]) -> bytes:
    """A run of encoded events as one JSON array value."""
    return b"[" + b",".join(run) + b"]"


def unbatch(raw: bytes) -> list[dict[str, Any]]:
    """The events of a message driftline wrote itself: one object or an array of them.

    >>> unbatch(b'{"a": 1}'), unbatch(b'[{"a": 1}, {"a": 2}]')
    ([{'a': 1}], [{'a': 1}, {'a': 2}])
    """
    value = orjson.loads(raw)
    return value if isinstance(value, list) else [value]
