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


def read_reference(path: str | Path) -> list[dict[str, Any]]:
    """Reference rows from a file (``models register --reference``, ``replay
    --reference``): JSON lines, each ``{"features": {...}, "prediction": ..., "label": ...}``
    or flat (``prediction``, ``label`` and ``probabilities`` are those, every other key a
    feature); or CSV (``prediction`` and ``label`` columns where known, every other column
    a feature, cells read as in event files). Each row is checked as the wire checks a
    prediction and a label; the first bad one is a :class:`SchemaError` with its line."""
    fmt = file_format(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as exc:
        raise SchemaError(f"{path}: not UTF-8 text (JSON lines or CSV): {exc}",
                          kind="wrong_type") from None
    out: list[dict[str, Any]] = []
    if fmt == "csv":
        reader = csv.DictReader(lines)
        numbered = ((reader.line_num, {k: _cell(k, v) for k, v in row.items()
                                       if v not in ("", None)}) for row in reader)
    else:
        numbered = ((n, json.loads(line)) for n, line in enumerate(lines, 1) if line.strip())
    try:
        for number, obj in numbered:
            if not isinstance(obj, dict):
                raise SchemaError(f"line {number} is not an object", kind="wrong_type")
            row = obj if "features" in obj else {
                "features": {k: v for k, v in obj.items()
                             if k not in ("prediction", "label", "probabilities")},
                **{k: obj[k] for k in ("prediction", "label", "probabilities") if k in obj}}
            out.append(_reference_row(number, row))
    except (ValueError, csv.Error) as exc:  # json's and float's errors are ValueErrors
        raise SchemaError(f"{path}: {_short(exc)}", kind="wrong_type") from None
    return out


def _reference_row(number: int, row: dict[str, Any]) -> dict[str, Any]:
    try:
        event = PREDICTION.validate({"prediction_id": "reference", "model": "reference",
                                     "prediction": row.get("prediction", 0.0),
                                     "features": row.get("features") or {},
                                     **({"probabilities": row["probabilities"]}
                                        if "probabilities" in row else {})})
        if "label" in row:
            LABEL.validate({"prediction_id": "reference", "label": row["label"]})
    except SchemaError as exc:
        raise SchemaError(f"line {number}: {exc}", kind=exc.kind) from None
    checked = as_dict(event)
    out: dict[str, Any] = {"features": checked.get("features") or {}}
    for key in ("prediction", "probabilities"):
        if key in row:
            out[key] = checked[key]
    if "label" in row:
        out["label"] = row["label"] if isinstance(row["label"], str) else float(row["label"])
    return out
