"""A version's reference profile: what its inputs and outputs looked like where it was
trained, so that drift is measured against that, not against its first production
predictions (which may already have moved).

The profile keeps a sample of reference rows (at most :data:`MAX_ROWS`, the most recent)
- each a row's ``features`` as the wire carries them, the model's ``prediction`` on it and,
where known, its ``label`` and ``probabilities`` - and a summary computed from them: per
feature its type, missing share, and quantile edges and shares (numeric) or category
frequencies (categorical); the prediction's distribution; how many rows are labelled.
The monitor fits each test's reference from the rows exactly as it would from its first
production events (the same sizes, so the false-alarm calibration is unchanged); the
summary is what ``driftline models show`` and the API show.

Stored as JSON beside the version's artifact (never pickle), written by the trainer from
its training window and by ``driftline models register ... --reference DATA``.

>>> p = profile([{"features": {"x": float(i), "c": "ab"[i % 2]}, "prediction": 1.0,
...               "label": 2.0} for i in range(10)], source="test")
>>> p["summary"]["rows"], p["summary"]["labelled"], p["summary"]["features"]["c"]["categories"]
(10, 10, {'a': 0.5, 'b': 0.5})
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from driftline.errors import ArtifactError

FORMAT = "driftline.reference/1"
MAX_ROWS = 5_000        # enough for every test's reference: data drift's 1,000, the
                        # multivariate drift's 1,000 + 500, the estimator's 1,000 pairs
BINS = 10
TOP = 20                # categories in a summary
_ROW_KEYS = {"features", "prediction", "label", "probabilities"}


def profile(rows: Iterable[Mapping[str, Any]], *, source: str,
            max_rows: int = MAX_ROWS) -> dict[str, Any]:
    """The profile of ``rows`` (the most recent ``max_rows`` kept): a JSON document."""
    kept = [_row(r) for r in rows][-max_rows:]
    if not kept:
        raise ArtifactError("a reference profile needs at least one row")
    return {"format": FORMAT, "source": source, "rows": kept, "summary": summary(kept)}


def with_predictions(rows: list[dict[str, Any]], model: Any) -> list[dict[str, Any]]:
    """``rows``, those without a ``prediction`` given ``model``'s (and a multiclass
    model's ``probabilities``); as they are when the model cannot predict them (a
    feature it needs missing, a category where it takes numbers)."""
    todo = [r for r in rows if "prediction" not in r]
    if not todo:
        return rows
    features = [r["features"] for r in todo]
    try:
        predicted = list(np.asarray(model.predict(features)).tolist())
        proba = (model.predict_proba(features) if model.task == "multiclass" else None)
    except (ValueError, TypeError, KeyError):
        return rows
    for i, row in enumerate(todo):
        if isinstance(predicted[i], float) and not np.isfinite(predicted[i]):
            continue  # a missing value the model does not impute: no prediction
        row["prediction"] = predicted[i]
        if proba is not None:
            row["probabilities"] = dict(zip(map(str, model.classes), np.asarray(proba)[i]
                                            .tolist()))
    return rows


def brief(document: Mapping[str, Any]) -> dict[str, Any]:
    """What a version's metadata says of its profile."""
    return {"rows": document["summary"]["rows"], "labelled": document["summary"]["labelled"],
            "source": document.get("source")}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    names = sorted({n for r in rows for n in r["features"]})
    return {"rows": len(rows), "labelled": sum("label" in r for r in rows),
            "features": {n: describe([r["features"].get(n) for r in rows]) for n in names},
            "prediction": describe([r.get("prediction") for r in rows])}


def describe(values: list[Any]) -> dict[str, Any]:
    """A column's type, missing share, and quantile edges and shares or category shares."""
    present = [v for v in values if v is not None]
    missing = 1 - len(present) / len(values) if values else 0.0
    numbers = [v for v in present if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if present and len(numbers) == len(present):
        x = np.array(numbers, dtype=float)
        edges = np.unique(np.quantile(x, np.linspace(0, 1, BINS + 1)[1:-1]))
        shares = np.bincount(np.searchsorted(edges, x, side="right"),
                             minlength=len(edges) + 1) / len(x)
        return {"type": "numeric", "missing_share": missing, "edges": edges.tolist(),
                "shares": shares.tolist(), "mean": float(x.mean())}
    counts = Counter(str(v) if not isinstance(v, bool) else ("<true>" if v else "<false>")
                     for v in present)
    top = dict(counts.most_common(TOP))
    return {"type": "categorical", "missing_share": missing,
            "categories": {c: n / len(present) for c, n in top.items()},
            "distinct": len(counts)}


def rows_of(document: Any) -> list[dict[str, Any]]:
    """The rows of a stored profile, checked (an :class:`ArtifactError` otherwise)."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ArtifactError(f"not a reference profile (format {FORMAT!r})")
    rows = document.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ArtifactError("a reference profile without rows")
    return [_row(r) for r in rows]


def _row(row: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(row, Mapping) or not isinstance(row.get("features"), Mapping) \
            or set(row) - _ROW_KEYS:
        got = sorted(row) if isinstance(row, Mapping) else row
        raise ArtifactError(f"a reference row is {{features, prediction, label, "
                            f"probabilities}}, got {got!r}")
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in row.items()
            if v is not None or k == "features"}
