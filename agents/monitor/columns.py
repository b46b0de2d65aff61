"""A version's events as columns: the feature rows, the numbers the rules read, and the
last rows of a stream, as numpy arrays.

The version's first event names the columns (:meth:`Columns.of`): its numeric features
(a number, or null in every event of its first batch), sorted, and its categorical ones
(a string or a boolean). An event that lacks a numeric one, or has null or a category
there, has NaN there (a category: marked in ``mismatch``); a categorical one is a code of
the feature's :class:`~.categories.Vocabulary` (or missing, mismatch, overflow). The
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
>>> cols = Columns.of([{"a": None, "c": "x"}, {"a": 2.0, "c": 1.0, "d": True}])
>>> cols.names, cols.categorical
(['a'], ['c'])
>>> batch = cols.batch([{"prediction": 0.0, "features": {"a": "y", "c": "x", "d": 1.0}}])
>>> batch.rows.tolist(), batch.mismatch.tolist(), batch.codes.tolist(), sorted(batch.new)
([[nan]], [[True]], [[0]], ['d'])
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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftline.agents.monitor.categories import MISMATCH, MISSING, Vocabulary
from driftline.agents.monitor.window import Ring
from driftline.models.wire.features import NUMBER_TYPES, number_or_nan, numbers
from driftline.models.wire.internal import Columnar

_EMPTY = np.empty(0)
_PREDICTION = operator.itemgetter("prediction")
_LABEL = operator.itemgetter("label")
_FEATURES = operator.itemgetter("features")
_SEGMENT = operator.methodcaller("get", "segment")
_NO_CODES = np.empty((0, 0), np.int32)
_NOTHING: frozenset[str] = frozenset()


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
    # events x categorical columns (a batch made by Columns has one row per event)
    codes: np.ndarray = field(default_factory=lambda: _NO_CODES)
    mismatch: np.ndarray | None = None     # events x columns: a category there
    new: frozenset[str] = _NOTHING         # features the version's columns lack
    p_true: np.ndarray | None = None       # multiclass pairs: P(true class) sent, NaN: none
    proba: np.ndarray | None = None        # multiclass: events x classes sent, NaN rows: none

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
                     self.segment[start:end], self.label[start:end], self.label_ts[start:end],
                     self.codes[start:end],
                     None if self.mismatch is None else self.mismatch[start:end],
                     p_true=None if self.p_true is None else self.p_true[start:end],
                     proba=None if self.proba is None else self.proba[start:end])

    def take(self, index: np.ndarray, segments: bool = True) -> Batch:
        """The events at ``index`` (positions or a boolean mask), in that order (without
        their segment names unless ``segments``: a segment's own monitor never reads them)."""
        pairs = len(self.label) > 0
        segment = ([] if not segments else
                   list(itertools.compress(self.segment, index.tolist()))
                   if index.dtype == bool else [self.segment[i] for i in index.tolist()])
        return Batch(self.ts[index], self.prediction[index], self.rows[index], segment,
                     self.label[index] if pairs else _EMPTY,
                     self.label_ts[index] if pairs else _EMPTY, self.codes[index],
                     None if self.mismatch is None else self.mismatch[index],
                     p_true=None if self.p_true is None else self.p_true[index],
                     proba=None if self.proba is None else self.proba[index])


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
    """The numeric and the categorical feature names of a version, and a fast row builder
    for them (``max_categories``: each categorical feature's vocabulary's cap)."""

    def __init__(self, names: Iterable[str], categorical: Iterable[str] = (),
                 max_categories: int = 1000, classes: Vocabulary | None = None) -> None:
        self.names = sorted(names)
        self.categorical = sorted(categorical)
        self.vocabularies = [Vocabulary(max_categories) for _ in self.categorical]
        self.known = {*self.names, *self.categorical}
        self.classes = classes  # a multiclass version's: predictions and labels as codes

    @classmethod
    def of(cls, features: list[dict[str, Any]], max_categories: int = 1000,
           classes: Vocabulary | None = None) -> Columns:
        """The columns the first event names, each typed by its first value that is not
        null in ``features`` (a version's first batch): a string or a boolean makes it
        categorical, a number or nothing but nulls numeric."""
        first = features[0] if features else {}
        categorical = []
        for name, value in first.items():
            if value is None:
                value = next((f[name] for f in features
                              if f and f.get(name) is not None), None)
            if value is not None and type(value) not in NUMBER_TYPES:
                categorical.append(name)
        return cls(set(first) - set(categorical), categorical, max_categories, classes)

    def __len__(self) -> int:
        return len(self.names)

    def types(self) -> dict[str, str]:
        """Each feature: ``numeric`` or ``categorical``, by name."""
        types = dict.fromkeys(self.names, "numeric")
        types.update(dict.fromkeys(self.categorical, "categorical"))
        return dict(sorted(types.items()))

    def rows(self, features: list[dict[str, Any]]) -> np.ndarray:
        """Events x columns, NaN where an event lacks a column or its value is null or
        not a number (a category where the version had numbers)."""
        return self._numeric(features)[0]

    def _numeric(self, features: list[dict[str, Any]]
                 ) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """:meth:`rows`, where a value was a category (None: nowhere), and whether every
        event had every column."""
        names, n = self.names, len(features)
        if not names:
            return np.empty((n, 0)), None, True
        complete = True
        try:  # the common case, every event has every column: monitor-input's fast path
            rows = numbers(names, features)
        except (KeyError, TypeError):  # an event lacks a column (or has null features)
            rows, complete = None, False
        if rows is not None:
            return rows.reshape(n, len(names)), None, True
        values = [[(f or {}).get(c) for c in names] for f in features]
        mismatch = np.array([[v is not None and type(v) not in NUMBER_TYPES for v in row]
                             for row in values], bool).reshape(n, len(names))
        rows = np.array([[number_or_nan(v) for v in row] for row in values],
                        float).reshape(n, len(names))
        return rows, (mismatch if mismatch.any() else None), complete

    def _codes(self, features: list[dict[str, Any]]) -> tuple[np.ndarray, bool]:
        """Events x categorical columns: each value's code in its feature's vocabulary;
        and whether every event had every column."""
        n, complete = len(features), True
        if not self.categorical:
            return np.empty((n, 0), np.int32), True
        out = np.empty((n, len(self.categorical)), np.int32)
        for j, (name, vocab) in enumerate(zip(self.categorical, self.vocabularies)):
            try:
                values = list(map(operator.itemgetter(name), features))
            except (KeyError, TypeError):
                values, complete = [(f or {}).get(name) for f in features], False
            out[:, j] = vocab.codes(values)
        return out, complete

    def _new(self, features: list[dict[str, Any]], complete: bool) -> frozenset[str]:
        """The features of these events that the columns lack: none when every event has
        every column (``complete``) and no more."""
        try:
            if complete and set(map(len, features)) <= {len(self.known)}:
                return _NOTHING
        except TypeError:  # null features
            pass
        return frozenset(set().union(*(f or () for f in features)) - self.known)

    def batch(self, events: list[dict[str, Any]], pairs: bool = False) -> Batch:
        """Prediction events, or scored pairs (``pairs``), as one :class:`Batch`."""
        n = len(events)
        try:
            features = list(map(_FEATURES, events))
        except KeyError:
            features = [e.get("features") or {} for e in events]
        rows, mismatch, complete = self._numeric(features)
        codes, has_all = self._codes(features)
        labels = list(map(_LABEL, events)) if pairs else None
        batch = Batch(floats(events, "ts"), self.outcomes(list(map(_PREDICTION, events))),
                      rows, list(map(_SEGMENT, events)),
                      self.outcomes(labels) if labels is not None else _EMPTY,
                      floats(events, "label_ts") if pairs else _EMPTY, codes, mismatch,
                      self._new(features, complete and has_all))
        if self.classes is not None:
            batch.proba = self.probabilities(events)
            if labels is not None:
                batch.p_true = np.fromiter(
                    (math.nan if not isinstance(p := e.get("probabilities"), dict)
                     else p.get(y, 0.0) for e, y in zip(events, labels)), float, n)
        return batch

    def probabilities(self, events: list[dict[str, Any]]) -> np.ndarray:
        """A multiclass version's events x its classes: the probabilities each sent (NaN
        rows: none sent; a class it did not name: 0)."""
        assert self.classes is not None
        sent: list[Any] = [e.get("probabilities") for e in events]
        first = next((p for p in sent if p), None)
        if first is None:
            return np.full((len(events), len(self.classes)), math.nan)
        names = list(first)
        codes = self.classes.codes(names)
        out = np.full((len(events), len(self.classes)), math.nan)
        keep = codes >= 0  # a class past the cap is left out
        if all(sent) and len(set(map(len, sent))) == 1:
            try:  # the common case: every event names the same classes (one C call each)
                values = np.asarray(list(map(operator.itemgetter(*names), sent)), np.float64)
            except KeyError:
                values = None
            if values is not None:
                out[:] = 0.0
                out[:, codes[keep]] = values.reshape(len(events), -1)[:, keep]
                return out
        for i, p in enumerate(sent):  # classes that differ from event to event
            if p:
                row_codes = self.classes.codes(list(p))
                out = widen(out, len(self.classes))
                out[i] = 0.0
                ok = row_codes >= 0
                out[i, row_codes[ok]] = np.asarray(list(p.values()), float)[ok]
        return out

    def outcomes(self, values: list[Any]) -> np.ndarray:
        """Predictions or labels as floats: for a multiclass version each class's code
        (a number there: ``MISMATCH``; a class past the cap: ``OVERFLOW``), else the
        numbers (a class there: NaN)."""
        n = len(values)
        if self.classes is not None:
            return self.classes.codes(values).astype(float)
        if str in set(map(type, values)):  # numpy would read "3" as 3.0
            return np.fromiter((math.nan if type(v) is str else v for v in values), float, n)
        return np.fromiter(values, float, n)

    def batch_of(self, cols: Columnar, index: np.ndarray | None, pairs: bool) -> Batch:
        """Events given as columns (those at ``index``; None: all), prediction events or
        scored pairs (``pairs``), as a :class:`Batch` of these columns: what :meth:`batch`
        makes of the same events as dicts (a column the events lack is NaN; one these
        columns lack is left)."""
        names = self.names
        rows = cols.rows if index is None else cols.rows[index]
        mismatch = None
        if names != cols.names:
            where = {name: k for k, name in enumerate(cols.names)}
            out = np.full((len(rows), len(names)), math.nan)
            for j, name in enumerate(names):
                if name in where:
                    out[:, j] = rows[:, where[name]]
                elif name in cols.categories:  # categories where the version has numbers
                    values = take(cols.categories[name], index)
                    if mismatch is None:
                        mismatch = np.zeros(out.shape, bool)
                    mismatch[:, j] = values != None  # noqa: E711 (elementwise)
            rows = out
        codes = np.full((len(rows), len(self.categorical)), MISSING, np.int32)
        if self.categorical:
            where = {name: k for k, name in enumerate(cols.names)}
            for j, (name, vocab) in enumerate(zip(self.categorical, self.vocabularies)):
                if name in cols.categories:
                    codes[:, j] = vocab.codes(take(cols.categories[name], index).tolist())
                elif name in where:  # numbers where the version has categories
                    values = cols.rows[:, where[name]]
                    codes[~np.isnan(take(values, index)), j] = MISMATCH
        new = frozenset({*cols.names, *cols.categories} - self.known)
        prediction = take(cols.prediction, index)
        label = take(cols.label, index) if pairs else _EMPTY
        if self.classes is not None:  # columns hold numbers only: none is a class
            prediction = np.full(len(prediction), float(MISMATCH))
            label = np.full(len(label), float(MISMATCH))
        return Batch(take(cols.ts, index), prediction, rows,
                     cols.segment if index is None else [cols.segment[i] for i in index.tolist()],
                     label if pairs else _EMPTY,
                     take(cols.label_ts, index) if pairs else _EMPTY, codes, mismatch, new)


def widen(rows: np.ndarray, width: int) -> np.ndarray:
    """``rows`` with NaN columns added up to ``width`` (classes met since they were made)."""
    if rows.shape[1] >= width:
        return rows
    return np.pad(rows, ((0, 0), (0, width - rows.shape[1])), constant_values=math.nan)


def take(values: np.ndarray, index: np.ndarray | None) -> np.ndarray:
    """``values`` at ``index`` (None: all)."""
    return values if index is None else values[index]


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
