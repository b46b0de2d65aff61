"""A version's events as columns: the feature rows, the numbers the rules read, and the
last rows of a stream, as numpy arrays.

The version's first event names the columns: its numeric features (a number or null),
sorted; an event that lacks one, or has null or a category there, has NaN there. The
monitor turns each batch of one version's event dicts into a :class:`Batch` once;
everything after that (the version's rules, and each segment's, on a
:meth:`Batch.slice` of one copy of it in segment order) reads arrays, not dicts.

>>> cols = Columns(["b", "a"])
>>> cols.names
['a', 'b']
>>> cols.rows([{"a": 1.0, "b": 2.0}, {"a": 3.0}]).tolist()
[[1.0, 2.0], [3.0, nan]]
>>> batch = cols.batch([{"prediction": 0.5, "features": {"a": 1.0, "b": 2.0}, "ts": 7.0,
...                      "segment": "de"}, {"prediction": 1.5, "features": {"a": 3.0}}])
>>> batch.ts.tolist(), batch.newest_ts, batch.segment
([7.0, nan], 7.0, ['de', None])
>>> batch.take(np.array([1])).rows.tolist()
[[3.0, nan]]
>>> tail = Tail(2, 1)
>>> tail.extend(np.array([[1.0], [2.0], [3.0]]), np.array([1.0, 2, 3])).values.tolist()
[2.0, 3.0]
>>> tail.rows.tolist()
[[2.0], [3.0]]
>>> ring = Ring(3, (1,), int)
>>> ring.push(np.array([[1], [2]])).tolist(), ring.push(np.array([[3], [4]])).tolist()
([], [[1]])
>>> ring.ordered().tolist(), len(ring)
([[2], [3], [4]], 3)
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline.models.wire.features import number_or_nan, numbers
from driftline.models.wire.internal import Columnar

_EMPTY = np.empty(0)
_PREDICTION = operator.itemgetter("prediction")
_LABEL = operator.itemgetter("label")
_FEATURES = operator.itemgetter("features")
_SEGMENT = operator.methodcaller("get", "segment")


@dataclass(slots=True)
class Batch:
    """One version's events in order, as columns. ``label`` and ``label_ts`` are empty
    for predictions; a missing time is NaN."""

    ts: np.ndarray          # the prediction's event time
    prediction: np.ndarray
    rows: np.ndarray        # events x the version's columns, NaN = missing
    segment: list[str | None]
    label: np.ndarray       # pairs only
    label_ts: np.ndarray

    def __len__(self) -> int:
        return len(self.prediction)

    @property
    def newest_ts(self) -> float | None:
        """The newest event time in the batch (None: no event has one)."""
        finite = self.ts[~np.isnan(self.ts)]
        return float(finite.max()) if len(finite) else None

    def slice(self, start: int, end: int) -> Batch:
        """Events ``start:end``: views of the arrays, no copy."""
        return Batch(self.ts[start:end], self.prediction[start:end], self.rows[start:end],
                     self.segment[start:end], self.label[start:end], self.label_ts[start:end])

    def take(self, index: np.ndarray, segments: bool = True) -> Batch:
        """The events at ``index`` (positions or a boolean mask), in that order (without
        their segment names unless ``segments``: a segment's own monitor never reads them)."""
        pairs = len(self.label) > 0
        segment = ([] if not segments else
                   list(itertools.compress(self.segment, index.tolist()))
                   if index.dtype == bool else [self.segment[i] for i in index.tolist()])
        return Batch(self.ts[index], self.prediction[index], self.rows[index], segment,
                     self.label[index] if pairs else _EMPTY,
                     self.label_ts[index] if pairs else _EMPTY)


def at(ts: np.ndarray, i: int) -> float:
    """An alert's time from an event's: 0.0 where the event had none."""
    value = float(ts[i])
    return 0.0 if math.isnan(value) else value


def floats(events: list[dict[str, Any]], key: str) -> np.ndarray:
    """``event[key]`` of each event as floats, NaN where it is missing or None."""
    try:  # the common case: every event has it; one C call per event
        return np.fromiter(map(operator.itemgetter(key), events), float, len(events))
    except (KeyError, TypeError):
        return np.array([math.nan if e.get(key) is None else e[key] for e in events], float)


class Columns:
    """The numeric feature names of a version and a fast row builder for them."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(names)

    def __len__(self) -> int:
        return len(self.names)

    def rows(self, features: list[dict[str, Any]]) -> np.ndarray:
        """Events x columns, NaN where an event lacks a column or its value is null or
        not a number (a category where the version had numbers)."""
        names, n = self.names, len(features)
        if not names:
            return np.empty((n, 0))
        try:  # the common case, every event has every column: monitor-input's fast path
            rows = numbers(names, features)
        except KeyError:  # an event lacks a column (null features: None from numbers)
            rows = None
        if rows is not None:
            return rows.reshape(n, len(names))
        return np.array([[number_or_nan((f or {}).get(c)) for c in names] for f in features],
                        float).reshape(n, len(names))

    def batch(self, events: list[dict[str, Any]], pairs: bool = False) -> Batch:
        """Prediction events, or scored pairs (``pairs``), as one :class:`Batch`."""
        n = len(events)
        try:
            features = list(map(_FEATURES, events))
        except KeyError:
            features = [e.get("features") or {} for e in events]
        return Batch(floats(events, "ts"), np.fromiter(map(_PREDICTION, events), float, n),
                     self.rows(features), list(map(_SEGMENT, events)),
                     np.fromiter(map(_LABEL, events), float, n) if pairs else _EMPTY,
                     floats(events, "label_ts") if pairs else _EMPTY)

    def batch_of(self, cols: Columnar, index: np.ndarray | None, pairs: bool) -> Batch:
        """Events given as columns (those at ``index``; None: all), prediction events or
        scored pairs (``pairs``), as a :class:`Batch` of these columns: what :meth:`batch`
        makes of the same events as dicts (a column the events lack is NaN; one these
        columns lack is left)."""
        names = self.names
        rows = cols.rows if index is None else cols.rows[index]
        if names != cols.names:
            where = {name: k for k, name in enumerate(cols.names)}
            out = np.full((len(rows), len(names)), math.nan)
            for j, name in enumerate(names):
                if name in where:
                    out[:, j] = rows[:, where[name]]
            rows = out

        def take(values: np.ndarray) -> np.ndarray:
            return values if index is None else values[index]
        return Batch(take(cols.ts), take(cols.prediction), rows,
                     cols.segment if index is None else [cols.segment[i] for i in index.tolist()],
                     take(cols.label) if pairs else _EMPTY,
                     take(cols.label_ts) if pairs else _EMPTY)


class Ring:
    """The last ``size`` rows of a stream (each of ``shape``) in one fixed array: a push
    writes its rows over the oldest, so it costs its own rows, not a copy of the window."""

    def __init__(self, size: int, shape: tuple[int, ...] = (), dtype: Any = float) -> None:
        self.size = size
        self._data = np.zeros((size, *shape), dtype)
        self._end = 0  # rows pushed so far

    def __len__(self) -> int:
        return min(self._end, self.size)

    def push(self, rows: np.ndarray) -> np.ndarray:
        """Add rows in order; returns the rows that left the window, oldest first."""
        n, size, held = len(rows), self.size, len(self)
        if n >= size:  # the new rows replace everything
            out = np.concatenate((self.ordered(), rows[:n - size]))
            self._data[:] = rows[n - size:]
            self._end = (self._end // size + 2) * size  # the oldest row at position 0
            return out
        leaving = held + n - size
        if leaving > 0:  # they sit from the oldest on, wrapping at most once: slices
            oldest = (self._end - held) % size
            last = oldest + leaving
            out = (self._data[oldest:last].copy() if last <= size else
                   np.concatenate((self._data[oldest:], self._data[:last - size])))
        else:
            out = rows[:0]
        self.write(rows)
        return out

    def write(self, rows: np.ndarray) -> None:
        """Add fewer than ``size`` rows in order, over the oldest (:meth:`push` without
        what left)."""
        n, size = len(rows), self.size
        start = self._end % size
        first = min(n, size - start)
        self._data[start:start + first] = rows[:first]
        if first < n:
            self._data[:n - first] = rows[first:]
        self._end += n

    def sum(self) -> float:
        """The sum of the window's values (in storage order)."""
        return float(self._data[:len(self)].sum())

    def values(self) -> np.ndarray:
        """The window's rows in storage order, not oldest first: for sums and means (a
        view; valid until the next push)."""
        return self._data[:len(self)]

    def ordered(self) -> np.ndarray:
        """The window's rows, oldest first (a copy)."""
        if self._end < self.size:
            return self._data[:self._end].copy()
        start = self._end % self.size
        return np.concatenate((self._data[start:], self._data[:start]))


class Tail:
    """The last ``size`` rows of a stream and one value each (e.g. the squared error),
    read only when an alert is attributed (:attr:`rows`, :attr:`values`: copies)."""

    def __init__(self, size: int, width: int) -> None:
        self.size = size
        self._rows = Ring(size, (width,))
        self._values = Ring(size)

    def extend(self, rows: np.ndarray, values: np.ndarray) -> Tail:
        if len(values) >= self.size:
            self._rows.push(rows)
            self._values.push(values)
        else:
            self._rows.write(rows)
            self._values.write(values)
        return self

    @property
    def rows(self) -> np.ndarray:
        return self._rows.ordered()

    @property
    def values(self) -> np.ndarray:
        return self._values.ordered()

    def __len__(self) -> int:
        return len(self._values)
