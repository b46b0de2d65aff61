"""driftline's own topics: their byte formats, written and read only here (monitor-input
here, join-state in :mod:`~driftline.models.wire.joinstate`).

**Model header.** The join writes scored and expired pairs as arrays of one model's
events, and names the model in the ``model`` header; the same bytes go to
monitor-input inside an element, not encoded again.

**Format version.** Every record below carries ``"v"``, the version of its format
(:data:`FORMAT`; DESIGN.md: internal topics must carry one). A record without it was
written before versions existed and is read as version 1; a record of a version this
code does not know is refused with an error that says so, never guessed at.

**monitor-input elements** (``driftline.monitor-input``, keyed by nothing, on the
model's partition). A message is a JSON array of elements; an element is the events of
one source message (format 3: of several) that go to one monitor partition, with where they
came from::

    {"v": 1, "k": "s" | "p" | "x", "s": [source partition, source offset], "e": [event, ...]}

``k`` is the source: scored pairs, predictions (for data drift) or expirations.
**Columnar elements** (format 2, :func:`columnar_element`) hold one model's scored pairs
or predictions as columns, when every event names the same features (else the join
writes format 1, as it does for fewer than :data:`COLUMNAR_MIN` events): ``"e": []``,
and ``"c"``: ``m`` the model, ``i`` the prediction ids, ``r``
the versions (null: unknown), ``f`` the feature names (sorted), and base64 of
little-endian float64 arrays: ``x`` the feature rows (events x ``c``), ``y`` the
predictions, ``t`` the prediction times (NaN: null), and for pairs ``l`` the labels,
``lt`` the label times and ``er`` the errors; ``g`` the segments (null: none has one).
The monitor reads them without a dict per event; :meth:`Element.events` gives the
events back as the dicts format 1 holds. **Format 3** is format 2 for the predictions of
several consecutive source messages (single-event messages, mostly) in one element: ``s``
names the last message, and ``c.o`` is base64 of each event's own source offset
(little-endian int64, non-decreasing), so the monitor drops exactly the events it has
applied when a re-delivered batch overlaps the last one it saw. A null feature (since
2026-12-07) is NaN in ``x``. **Format 4** is format 2 or 3 with categorical features
(since 2026-12-07): the categorical features (strings and booleans) leave ``f``/``x`` for
``fc`` (their names, sorted), ``cv`` (each one's categories, in order of first
appearance) and ``cx`` (base64 of little-endian int32 codes, events x ``fc``, -1 for
null); ``c.o`` as in format 3 when it spans messages. A feature with both numbers and
categories in one element makes it format 1.

The join-state topic's records are in :mod:`driftline.models.wire.joinstate`, on the
same format versions and :class:`FormatError`.

>>> v = element(SCORED, 2, 41, [b'{"prediction_id":"a"}'])
>>> v
b'{"v":1,"k":"s","s":[2,41],"e":[{"prediction_id":"a"}]}'
>>> [(e.k, e.s, e.e) for e in decode_elements(b"[" + v + b"]")]
[('s', (2, 41), [{'prediction_id': 'a'}])]
>>> decode_elements(b'[{"v":5,"k":"s","s":[2,41],"e":[]}]')
Traceback (most recent call last):
...
driftline.models.wire.internal.FormatError: a monitor-input element of format v5; ...
>>> from driftline.models.wire.events import Prediction
>>> events = [Prediction(str(k), "m", 0.5, 1, {"x": float(k)}, 7.0) for k in range(8)]
>>> v = columnar_element(PREDICTIONS, 0, 9, "m", events)
>>> [e["features"] for e in decode_elements(b"[" + v + b"]")[0].events()][:2]
[{'x': 0.0}, {'x': 1.0}]
>>> columnar_element(PREDICTIONS, 0, 9, "m", events[:7]) is None  # too few: format 1
True
>>> events[0].features = {"x": None}  # null: NaN in x
>>> nulls = decode_elements(b"[" + columnar_element(PREDICTIONS, 0, 9, "m", events) + b"]")
>>> nulls[0].v, [e["features"] for e in nulls[0].events()][:2]
(2, [{'x': None}, {'x': 1.0}])
>>> shops = [Prediction(str(k), "m", 0.5, 1, {"shop": "ab"[k % 2], "vip": k > 5}, 7.0)
...          for k in range(8)]
>>> element4 = decode_elements(b"[" + columnar_element(PREDICTIONS, 0, 9, "m", shops) + b"]")
>>> element4[0].c.fc, element4[0].c.cv
(['shop', 'vip'], [['a', 'b'], [False, True]])
>>> [e["features"] for e in element4[0].events()][5:7]
[{'shop': 'b', 'vip': False}, {'shop': 'a', 'vip': True}]
>>> shops[0].features["shop"] = 3.0  # numbers and categories in one feature: format 1
>>> columnar_element(PREDICTIONS, 0, 9, "m", shops) is None
True
>>> events[7].features = {}  # features differ: format 1 instead
>>> columnar_element(PREDICTIONS, 0, 9, "m", events) is None
True
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import msgspec
import numpy as np
from msgspec import UNSET

from driftline.models.wire.codec import array, encode
from driftline.models.wire.events import Prediction, ScoredPair
from driftline.models.wire.features import Categories, categories_of, numbers, split_columns

MODEL_HEADER = "model"  # on scored/expired arrays that hold one model's events
FORMAT = 1  # of every record below but snapshot chunks and columnar elements
COLUMNAR = 2  # of monitor-input elements that hold columns (1: events)
SPANNING = 3  # columns of several source messages, with each event's source offset
CATEGORIES = 4  # columns (of one message or several) with categorical or null features
CHUNK_FORMAT = 3  # of snapshot chunks: 2 may hold frozen done ids (blake2b), 3 says the hash


class FormatError(ValueError):
    """A record of a format version this driftline does not read."""


def check_format(what: str, version: int, known: int = FORMAT) -> None:
    if not 1 <= version <= known:
        raise FormatError(f"a {what} of format v{version}; this driftline reads v{known} "
                          f"(a newer driftline wrote it: upgrade this one)")

# --- monitor-input ------------------------------------------------------------------

SCORED, PREDICTIONS, EXPIRED = "s", "p", "x"
ElementKind = Literal["s", "p", "x"]


class Element(msgspec.Struct, gc=False):
    """One monitor-input element: its source kind, (partition, offset), and events (format
    1) or one model's events as columns (format 2, :attr:`columnar`)."""

    k: ElementKind
    s: tuple[int, int]
    e: list[dict[str, Any]]
    v: int = 1  # absent before versions: 1
    c: Body | None = None  # format 2: the columns

    @property
    def columnar(self) -> bool:
        return self.v >= COLUMNAR

    def offsets(self) -> np.ndarray | None:
        """Each event's source offset (format 3, or 4 with ``o``), checked: non-decreasing,
        the last one ``s``'s; None for an element of one source message."""
        if self.c is None or not (self.v == SPANNING or self.v == CATEGORIES and self.c.o):
            return None
        raw, n = self.c.o, len(self.c.i)
        if len(raw) != 8 * n:
            raise ValueError(f"a columnar element's 'o' holds {len(raw)} bytes, not {8 * n}")
        offsets = np.frombuffer(raw, "<i8")
        if n == 0 or offsets[-1] != self.s[1] or bool(np.any(np.diff(offsets) < 0)):
            raise ValueError(f"a spanning element at {self.s} whose source offsets are not "
                             f"in order up to it")
        return offsets

    def __len__(self) -> int:
        return len(self.c.i) if self.c is not None else len(self.e)

    def columns(self) -> Columnar:
        """A columnar element's arrays (checked against each other)."""
        b = self.c
        if b is None or not b.i:
            raise ValueError("a columnar element of no events")
        n, width = len(b.i), len(b.f)
        pairs = self.k == SCORED
        cols = Columnar(
            b.m, b.r, b.f, _floats(b.x, n * width, "x").reshape(n, width),
            _floats(b.y, n, "y"), _floats(b.t, n, "t"),
            b.g if b.g is not None else [None] * n,
            _floats(b.l, n, "l") if pairs else _EMPTY,
            _floats(b.lt, n, "lt") if pairs else _EMPTY,
            _floats(b.er, n, "er") if pairs else _EMPTY, b.i,
            categories_of(b.fc, b.cv, b.cx, n) if b.fc else {})
        if len(b.r) != n or len(cols.segment) != n:
            raise ValueError(f"a columnar element of {n} ids with {len(b.r)} versions "
                             f"and {len(cols.segment)} segments")
        return cols

    def events(self) -> list[dict[str, Any]]:
        """The events as format 1 holds them (dicts), whichever format this is."""
        return self.columns().events(self.k) if self.columnar else self.e


class Body(msgspec.Struct, gc=False):
    """The columns of a format 2 element (the module docstring says what each is)."""

    m: str
    i: list[str]
    r: list[int | None]
    f: list[str]
    x: bytes
    y: bytes
    t: bytes
    l: bytes = b""  # noqa: E741 (the format's field names are short on purpose)
    lt: bytes = b""
    er: bytes = b""
    g: list[str | None] | None = None
    o: bytes = b""  # format 3 (and 4 when it spans): each event's source offset
    # format 4: the categorical features (sorted), each one's categories in the order of
    # their first appearance, and int32 codes (events x ``fc``; -1: null)
    fc: list[str] = []
    cv: list[list[str | bool]] = []
    cx: bytes = b""


_EMPTY = np.empty(0)
COLUMNAR_MIN = 8  # events: below it an element of columns costs more than one of events


def _floats(raw: bytes, n: int, name: str) -> np.ndarray:
    if len(raw) != 8 * n:
        raise ValueError(f"a columnar element's {name!r} holds {len(raw)} bytes, not {8 * n}")
    return np.frombuffer(raw, "<f8").astype(float)  # a copy the monitor may own


@dataclass(slots=True)
class Columnar:
    """One model's events as arrays (a decoded format 2 element, or several joined)."""

    model: str
    version: list[int | None]
    names: list[str]
    rows: np.ndarray
    prediction: np.ndarray
    ts: np.ndarray            # NaN: null
    segment: list[str | None]
    label: np.ndarray         # pairs only
    label_ts: np.ndarray
    error: np.ndarray
    ids: list[str]
    # categorical features (format 4): name -> each event's value (an object array of
    # str, bool or None)
    categories: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def shape(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The numeric and the categorical feature names: what parts must share to join."""
        return tuple(self.names), tuple(self.categories)

    @staticmethod
    def join(parts: Sequence[Columnar]) -> Columnar:
        """Parts of one model with the same :attr:`shape`, in order, as one."""
        if len(parts) == 1:
            return parts[0]
        cat = np.concatenate
        return Columnar(parts[0].model, [v for p in parts for v in p.version], parts[0].names,
                        cat([p.rows for p in parts]), cat([p.prediction for p in parts]),
                        cat([p.ts for p in parts]), [g for p in parts for g in p.segment],
                        cat([p.label for p in parts]), cat([p.label_ts for p in parts]),
                        cat([p.error for p in parts]), [i for p in parts for i in p.ids],
                        {name: cat([p.categories[name] for p in parts])
                         for name in parts[0].categories})

    def tail(self, start: int) -> Columnar:
        """The events from ``start`` on."""
        def cut(a: np.ndarray) -> np.ndarray:
            return a[start:] if len(a) else a
        return Columnar(self.model, self.version[start:], self.names, cut(self.rows),
                        cut(self.prediction), cut(self.ts), self.segment[start:],
                        cut(self.label), cut(self.label_ts), cut(self.error),
                        self.ids[start:],
                        {name: values[start:] for name, values in self.categories.items()})

    def features(self) -> list[dict[str, Any]]:
        """Each event's features as the event had them (NaN in a numeric column: null)."""
        names = self.names
        if self.rows.size and np.isnan(self.rows).any():
            rows = [[None if v != v else v for v in row] for row in self.rows.tolist()]
        else:
            rows = self.rows.tolist()
        if not self.categories:
            return [dict(zip(names, row)) for row in rows]
        cat_names = list(self.categories)
        cat_rows = zip(*(values.tolist() for values in self.categories.values()))
        out = []
        for row, cats in zip(rows, cat_rows):
            features = dict(zip(names, row))
            features.update(zip(cat_names, cats))
            out.append(dict(sorted(features.items())))
        return out

    def events(self, kind: str) -> list[dict[str, Any]]:
        """The dicts a format 1 element holds for these events."""
        out: list[dict[str, Any]] = []
        ts = [None if math.isnan(t) else t for t in self.ts.tolist()]
        rows = self.features() if len(self.ids) else []
        if kind == SCORED:
            for k, (pid, version, y, label, error, t, lt, seg) in enumerate(zip(
                    self.ids, self.version, self.prediction.tolist(), self.label.tolist(),
                    self.error.tolist(), ts, self.label_ts.tolist(), self.segment)):
                ev = {"prediction_id": pid, "model": self.model, "version": version,
                      "prediction": y, "label": label, "error": error,
                      "features": rows[k], "ts": t,
                      "label_ts": None if math.isnan(lt) else lt}
                if seg is not None:
                    ev["segment"] = seg
                out.append(ev)
            return out
        for k, (pid, version, y, t, seg) in enumerate(zip(
                self.ids, self.version, self.prediction.tolist(), ts, self.segment)):
            ev = {"prediction_id": pid, "model": self.model, "prediction": y,
                  "version": version, "features": rows[k], "ts": t}
            if seg is not None:
                ev["segment"] = seg
            out.append(ev)
        return out


_ID = operator.attrgetter("prediction_id")
_VERSION = operator.attrgetter("version")
_Y = operator.attrgetter("prediction")
_FEATURES = operator.attrgetter("features")
_ERROR = operator.attrgetter("error")


def _column(events: Sequence[Any], name: str) -> np.ndarray:
    """An attribute of each event as float64, NaN where it is None."""
    try:
        return np.fromiter(map(operator.attrgetter(name), events), float, len(events))
    except TypeError:
        return np.array([math.nan if getattr(e, name) is None else getattr(e, name)
                         for e in events], float)


def columnar_element(kind: str, partition: int, offset: int, model: str,
                     events: Sequence[Prediction] | Sequence[ScoredPair],
                     offsets: Sequence[int] | None = None) -> bytes | None:
    """A columnar element of one model's predictions or scored pairs (``kind``), or None
    when they do not all name the same features or a feature holds both numbers and
    categories (format 1 keeps each event's own), or they are fewer than
    :data:`COLUMNAR_MIN` (single-event messages). ``offsets``: each event's source offset
    when they come from several messages, the last ``offset`` (format 3). A null feature
    is NaN in ``x``; categorical features make it format 4."""
    if len(events) < COLUMNAR_MIN:
        return None
    # A class is not a column (format 1 keeps it): np.array makes strings of a batch with one
    # (fromiter reads "3" as 3.0); a pair with one has no error, which fromiter reads as NaN.
    # The columns leave out a number's class probabilities: the monitor does not read them.
    predictions = np.array(list(map(_Y, events)))
    errors = np.fromiter(map(_ERROR, events), float, len(events)) if kind == SCORED else None
    if predictions.dtype.kind not in "fi" or (errors is not None and np.isnan(errors).any()):
        return None
    features = [f or {} for f in map(_FEATURES, events)]
    names, n = sorted(features[0]), len(events)
    if set(map(len, features)) != {len(names)}:
        return None
    categories: Categories = {}
    version = COLUMNAR
    try:  # every event has as many features as the first and each of its names: the same
        rows = numbers(names, features)
    except KeyError:
        return None
    if rows is None:  # a category somewhere
        split = split_columns(names, list(itertools.chain.from_iterable(
            map(operator.itemgetter(*names), features))) if len(names) > 1 else
            list(map(operator.itemgetter(names[0]), features)))
        if split is None:
            return None
        names, rows, categories = split
        version = CATEGORIES if categories else COLUMNAR
    segments = [None if e.segment is UNSET else e.segment for e in events]
    pairs = kind == SCORED
    spanning = offsets is not None and offsets[0] != offsets[-1]
    if spanning and version == COLUMNAR:
        version = SPANNING
    return encode(Element(cast(ElementKind, kind), (partition, offset), [], version, Body(
        model, list(map(_ID, events)), list(map(_VERSION, events)), names,
        rows.astype("<f8").tobytes(),
        predictions.astype("<f8").tobytes(),
        _column(events, "ts").astype("<f8").tobytes(),
        _column(events, "label").astype("<f8").tobytes() if pairs else b"",
        _column(events, "label_ts").astype("<f8").tobytes() if pairs else b"",
        errors.astype("<f8").tobytes() if errors is not None else b"",
        None if segments.count(None) == n else segments,
        np.asarray(offsets, "<i8").tobytes() if spanning else b"",
        list(categories), [vocab for vocab, _ in categories.values()],
        np.stack([codes for _, codes in categories.values()], axis=1).astype("<i4").tobytes()
        if categories else b"")))


_elements = msgspec.json.Decoder(list[Element])


def element(kind: str, partition: int, offset: int, events: list[bytes]) -> bytes:
    """An element of encoded events (those of one source message that go to one
    monitor-input partition, in their order)."""
    return element_of_array(kind, partition, offset, array(events))


def element_of_array(kind: str, partition: int, offset: int, events_array: bytes) -> bytes:
    """An element around a JSON array of events as it is (the join's ``scored`` and
    ``expired`` arrays, as written)."""
    return b'{"v":%d,"k":"%s","s":[%d,%d],"e":%s}' % (FORMAT, kind.encode(), partition,
                                                        offset, events_array)


def decode_elements(value: bytes) -> list[Element]:
    """A monitor-input message; raises ``msgspec.DecodeError`` / ``ValidationError`` on
    bytes driftline did not write, :class:`FormatError` on a format it does not know."""
    elements = _elements.decode(value)
    for item in elements:
        if item.v != FORMAT:
            check_format("monitor-input element", item.v, CATEGORIES)
    return elements
