"""Prediction and label events from a file: JSON lines or CSV, validated row by row.

Used by ``driftline publish`` and ``driftline replay``. A bad row is reported with
its line number and skipped; the good rows around it go on.

* **JSONL**: one event object per line - a prediction (it has ``prediction``) or a
  label (it has ``label``), in the wire format of the README.
* **CSV** (by extension ``.csv``): columns ``prediction_id``, ``model``, ``version``,
  ``prediction``, ``label``, ``ts``, ``label_ts``; every other column is a feature.
  A row with a ``prediction`` is a prediction event, a row with a ``label`` a label
  event (``label_ts`` as its time, else ``ts``); a row may be both. Empty cells are
  left out (a missing feature). A feature cell that reads as a number is a number; any
  other is a category (``DE``, ``true``: the string). A category that looks like a
  number (a postcode) needs JSON lines, where it is a JSON string.

>>> rows = list(read_events(['{"prediction_id": "a", "label": 1}', "", "p,q"]))
>>> [(r.line, r.kind, r.event, r.error) for r in rows]   # doctest: +NORMALIZE_WHITESPACE
[(1, 'label', {'prediction_id': 'a', 'label': 1.0}, None),
 (3, None, None, 'invalid_json: line 3 is not JSON: Expecting value: line 1 column 1 (char 0)')]
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftline.errors import SchemaError
from driftline.models.wire import LABEL, PREDICTION
from driftline.models.wire.events import as_dict

CSV_FIELDS = ("prediction_id", "model", "version", "prediction", "label", "ts", "label_ts")


@dataclass(frozen=True)
class Row:
    """One event of a file (``kind`` ``prediction`` or ``label``), or why a line was refused."""

    line: int
    kind: str | None = None
    event: dict[str, Any] | None = None
    error: str | None = None


def file_format(path: str | Path) -> str:
    return "csv" if str(path).lower().endswith(".csv") else "jsonl"


def open_events(path: str | Path) -> Iterator[Row]:
    """The events of a file, by its extension (``.csv``, else JSON lines)."""
    with open(path, encoding="utf-8", newline="") as f:
        yield from read_events(f, fmt=file_format(path))


def read_events(lines: Iterable[str], *, fmt: str = "jsonl") -> Iterator[Row]:
    if fmt == "csv":
        yield from _csv_rows(lines)
        return
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            yield Row(number, error=f"invalid_json: line {number} is not JSON: {_short(exc)}")
            continue
        kind = "prediction" if isinstance(obj, dict) and "prediction" in obj else "label"
        yield _validated(number, kind, obj)


def _csv_rows(lines: Iterable[str]) -> Iterator[Row]:
    reader = csv.DictReader(lines if not isinstance(lines, str) else io.StringIO(lines))
    if reader.fieldnames is None:
        return
    if "prediction_id" not in reader.fieldnames:
        yield Row(1, error="missing_field: the CSV header has no prediction_id column")
        return
    features = [c for c in reader.fieldnames if c not in CSV_FIELDS]
    for row in reader:
        number = reader.line_num
        if None in row:
            yield Row(number, error=f"wrong_type: line {number} has more cells than the header")
            continue
        try:
            cells = {k: _cell(k, v) for k, v in row.items() if v not in ("", None)}
        except ValueError as exc:
            yield Row(number, error=f"wrong_type: line {number}: {exc}")
            continue
        made = False
        if "prediction" in cells:
            made = True
            event = {k: cells[k] for k in ("prediction_id", "model", "version", "prediction",
                                           "ts") if k in cells}
            event["features"] = {c: cells[c] for c in features if c in cells}
            yield _validated(number, "prediction", event)
        if "label" in cells:
            made = True
            event = {k: cells[k] for k in ("prediction_id", "label") if k in cells}
            if "label_ts" in cells or "ts" in cells:
                event["ts"] = cells.get("label_ts", cells.get("ts"))
            if "model" in cells:
                event["model"] = cells["model"]
            yield _validated(number, "label", event)
        if not made:
            yield Row(number, error=f"missing_field: line {number} has neither a prediction "
                                    f"nor a label")


def _cell(name: str, value: str) -> Any:
    if name in ("prediction_id", "model"):
        return value
    if name == "version":
        return int(value)
    try:
        number = float(value)  # "nan" and "inf" parse; refused below or by validation
    except ValueError:
        if name in CSV_FIELDS:
            raise
        return value  # a feature cell that is not a number: a category
    if name not in CSV_FIELDS and not math.isfinite(number):
        raise ValueError(f"feature {name!r} must be a finite number or a category, got "
                         f"{value!r}")
    return number


def _validated(number: int, kind: str, obj: Any) -> Row:
    schema = PREDICTION if kind == "prediction" else LABEL
    try:
        return Row(number, kind, as_dict(schema.validate(obj)))
    except SchemaError as exc:
        return Row(number, error=f"{exc.kind}: line {number}: {exc}")


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]
