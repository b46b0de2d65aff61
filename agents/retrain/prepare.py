"""Scored pairs -> what a training function is given, and what the holdout is scored on.

The features are every one the pairs name: the champion's first (its order) when the
pairs have them all, then the others (sorted). When the rows are all numbers the
training function gets them as they are. When a feature is categorical somewhere, or a
value is missing, an :class:`~driftline.models.encoded.Encoding` fitted on the training
rows encodes them (one-hot with ``_other``, imputation with an indicator); the training
function gets the encoded columns, and the trainer wraps what it returns with the
encoding (:class:`~driftline.models.encoded.EncodedModel`), so the version takes raw
rows. A row is dropped then only for a label that does not fit the task.

>>> pairs = [{"features": {"x": float(i), "city": "AB"[i % 2]}, "label": float(i)}
...          for i in range(10)]
>>> data = prepare(pairs, None, "regression", holdout_fraction=0.2)
>>> data.names, data.columns, data.X.shape, data.dropped, data.holdout.start
(['city', 'x'], ['city=A', 'city=B', 'city=_other', 'x'], (10, 4), 0, 8)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline.models.encoded import Encoding, is_number
from driftline.models.training import labels, rows_to_arrays, time_holdout


@dataclass
class Prepared:
    names: list[str]               # the raw features the version takes
    columns: list[str]             # what the training function's X columns are
    X: np.ndarray                  # rows x columns, numbers
    y: np.ndarray                  # labels: numbers, or class names (objects)
    dropped: int                   # rows left out
    train: slice                   # the oldest rows, to train on
    holdout: slice                 # the most recent, to compare challenger and champion on
    encoding: Encoding | None = None
    rows: list[dict[str, Any]] | None = None  # the kept rows' raw features

    def inputs(self, part: slice) -> Any:
        """What the models are scored on for the rows ``part``: raw feature dicts when
        encoded (the champion may take numbers only, the challenger raw rows), else X."""
        return self.rows[part] if self.encoding is not None and self.rows is not None \
            else self.X[part]


def prepare(pairs: list[dict[str, Any]], champion: Any | None, task: str, *,
            holdout_fraction: float) -> Prepared:
    """The most recent ``holdout_fraction`` of the kept rows are the holdout; an encoding
    is fitted on the training rows only, never on the holdout."""
    names = feature_names(pairs, champion)
    rows = [p.get("features") or {} for p in pairs]
    y, fits = labels(pairs, task)  # every row has its features: the label decides
    kept = [r for r, fit in zip(rows, fits.tolist()) if fit]
    if not _needs_encoding(rows, names):
        X, y, dropped = rows_to_arrays(pairs, names, task)
        return Prepared(names, names, X, y, dropped, *_split(len(y), holdout_fraction),
                        rows=kept)
    train, holdout = _split(len(kept), holdout_fraction)
    encoding = Encoding.fit(kept[train], names)
    return Prepared(names, encoding.names(), encoding.transform(kept), y[fits],
                    int((~fits).sum()), train, holdout, encoding, kept)


def _split(n: int, fraction: float) -> tuple[slice, slice]:
    return time_holdout(n, fraction) if n >= 2 else (slice(0, n), slice(n, n))


def feature_names(pairs: list[dict[str, Any]], champion: Any | None) -> list[str]:
    """Every feature the pairs name: the champion's first, in its order, when the pairs
    have them all; then the others, sorted (feature selection drops what does not help)."""
    seen: set[str] = set()
    for pair in pairs:
        seen.update(pair.get("features") or {})
    if champion is not None and set(champion.feature_names) <= seen:
        return list(champion.feature_names) + sorted(seen - set(champion.feature_names))
    return sorted(seen)


def _needs_encoding(rows: list[dict[str, Any]], names: list[str]) -> bool:
    """A category, a null or a missing key in any row."""
    for row in rows:
        for name in names:
            if not is_number(row.get(name)):
                return True
    return False

