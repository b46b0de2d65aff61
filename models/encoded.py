"""A preprocessing step around a model kind (kind ``encoded``): what the service sends in,
numbers out, everything it learned kept in the artifact.

:class:`Encoding` is fitted on training rows (dicts of raw feature values, as scored pairs
carry them):

* a **numeric** feature (every non-null value a number) is passed on; a null, a missing
  key or a category there is imputed with the training mean, and when the training rows
  had any, a 0/1 column ``name=_missing`` says so;
* a **categorical** feature (a string or a boolean anywhere) is one-hot encoded over its
  ``MAX_CATEGORIES`` most frequent training categories, a null counted as the category
  ``_missing``; any other value (unseen, rare, or a number there) is ``name=_other``.

:class:`EncodedModel` is the encoding plus the model trained on its columns (any kind):
``predict`` and ``predict_proba`` take the raw rows (dicts, or arrays of numbers in
``feature_names`` order when every feature is numeric). Its artifact is an ``.npz``: the
inner model's artifact as bytes, and a JSON header with the inner kind and the encoding.

>>> enc = Encoding.fit([{"rooms": 3.0, "city": "Lyon"}, {"rooms": None, "city": "Paris"},
...                     {"rooms": 5.0, "city": "Lyon"}], ["rooms", "city"])
>>> enc.names()
['rooms', 'rooms=_missing', 'city=Lyon', 'city=Paris', 'city=_other']
>>> enc.transform([{"rooms": None, "city": "Nice"}]).tolist()
[[4.0, 1.0, 0.0, 0.0, 1.0]]
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftline.errors import ArtifactError
from driftline.models import kinds

MAX_CATEGORIES = 20  # per feature: the most frequent training categories; the rest _other
OTHER, MISSING = "_other", "_missing"
_PLAIN = {float, int, type(None)}  # a numeric column's values numpy reads as they are


def is_number(value: Any) -> bool:
    """A number (numpy's too); a boolean is a category, never 1 or 0."""
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def category(value: Any) -> str:
    """A categorical value's name: a string as it is, a boolean as ``<true>``/``<false>``
    (so that ``True`` and ``"true"`` stay two categories, as the monitor keeps them), a
    null as ``_missing``."""
    if value is None:
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "<true>" if value else "<false>"
    return value if isinstance(value, str) else OTHER


@dataclass
class Column:
    name: str
    type: str                                   # numeric, categorical
    fill: float = 0.0                           # numeric: the training mean
    indicator: bool = False                     # numeric: a name=_missing column
    categories: list[str] = field(default_factory=list)  # categorical, most frequent first

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """A categorical column's categories by position (not a field: no part of ==)."""
        return {c: k for k, c in enumerate(self.categories)}

    def names(self) -> list[str]:
        if self.type == "numeric":
            return [self.name] + ([f"{self.name}={MISSING}"] if self.indicator else [])
        return [f"{self.name}={c}" for c in self.categories] + [f"{self.name}={OTHER}"]

    def as_dict(self) -> dict[str, Any]:
        if self.type == "numeric":
            return {"name": self.name, "type": "numeric", "fill": self.fill,
                    "indicator": self.indicator}
        return {"name": self.name, "type": "categorical", "categories": self.categories}


@dataclass
class Encoding:
    columns: list[Column]

    @classmethod
    def fit(cls, rows: Sequence[Mapping[str, Any]], names: Sequence[str],
            max_categories: int = MAX_CATEGORIES) -> Encoding:
        columns = []
        for name in names:
            values = [row.get(name) for row in rows]
            if any(v is not None and not is_number(v) for v in values):
                counts = Counter(category(v) for v in values)
                counts.pop(OTHER, None)  # numbers in a categorical feature: _other
                kept = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
                columns.append(Column(name, "categorical", categories=kept[:max_categories]))
                continue
            numbers = np.array([v for v in values if v is not None], dtype=float)
            fill = float(numbers.mean()) if len(numbers) and np.isfinite(numbers).all() else 0.0
            columns.append(Column(name, "numeric", fill, indicator=len(numbers) < len(values)))
        return cls(columns)

    @property
    def needed(self) -> bool:
        """Whether the rows need it: a categorical feature, or a missing value to impute
        (else the inner model takes the numbers as they are)."""
        return any(c.type == "categorical" or c.indicator for c in self.columns)

    @property
    def raw_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def names(self) -> list[str]:
        return [n for c in self.columns for n in c.names()]

    def transform(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The rows' encoded columns (n x len(names()), floats, no NaN)."""
        if len(rows) == 1:
            return np.array([self._row(rows[0])])
        out = np.zeros((len(rows), len(self.names())))
        j = 0
        for col in self.columns:
            values = [row.get(col.name) for row in rows]
            if col.type == "numeric":
                if set(map(type, values)) <= _PLAIN:  # None is NaN: no call a value
                    x = np.array(values, dtype=float)
                else:
                    x = np.array([v if is_number(v) else np.nan for v in values], dtype=float)
                absent = ~np.isfinite(x)
                out[:, j] = np.where(absent, col.fill, x)
                if col.indicator:
                    out[:, j + 1] = absent
            else:
                at, other = col.index, len(col.categories)
                hot = [at.get(v, other) if type(v) is str else at.get(category(v), other)
                       for v in values]
                out[np.arange(len(rows)), j + np.array(hot, dtype=np.int64)] = 1.0
            j += len(col.names())
        return out

    def _row(self, row: Mapping[str, Any]) -> list[float]:
        """One row's encoded columns, in Python: what a service's single request costs
        (83 -> 22 µs a dict row of 10 numbers and a 25-value category, bench/model_kinds.py)."""
        out: list[float] = []
        for col in self.columns:
            v: Any = row.get(col.name)
            if col.type == "numeric":
                absent = not is_number(v) or not math.isfinite(v)
                out.append(col.fill if absent else float(v))
                if col.indicator:
                    out.append(1.0 if absent else 0.0)
            else:
                hot = [0.0] * (len(col.categories) + 1)
                at = col.index.get(category(v))
                hot[len(col.categories) if at is None else at] = 1.0
                out.extend(hot)
        return out

    def describe(self) -> list[dict[str, Any]]:
        return [c.as_dict() for c in self.columns]

    @classmethod
    def from_description(cls, columns: Any) -> Encoding:
        try:
            out = []
            for c in columns:
                if c["type"] == "numeric":
                    out.append(Column(str(c["name"]), "numeric", float(c["fill"]),
                                      bool(c["indicator"])))
                elif c["type"] == "categorical" and all(isinstance(x, str)
                                                        for x in c["categories"]):
                    out.append(Column(str(c["name"]), "categorical",
                                      categories=list(c["categories"])))
                else:
                    raise ValueError(f"column {c!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{EncodedModel.FORMAT}: a malformed encoding: {exc}") from None
        return cls(out)


class EncodedModel:
    """An :class:`Encoding` and the model (any kind) trained on its columns."""

    kind = "encoded"
    FORMAT = "driftline.encoded/1"
    takes_rows = True    # scored from raw rows: categories, nulls and all
    imputes = True

    def __init__(self, inner: Any, encoding: Encoding) -> None:
        if list(inner.feature_names) != encoding.names():
            raise ArtifactError(f"the inner model's features {inner.feature_names} are not "
                                f"the encoding's columns {encoding.names()}")
        self.inner = inner
        self.encoding = encoding
        self.task = inner.task
        self.feature_names = encoding.raw_names
        self.version: int | None = None
        self.meta: dict[str, Any] = {}

    @property
    def classes(self) -> list[Any]:
        return list(self.inner.classes)

    def _encoded(self, X: Any) -> tuple[np.ndarray, bool]:
        if isinstance(X, Mapping):
            return self.encoding.transform([X]), True
        if isinstance(X, Sequence) and X and isinstance(X[0], Mapping):
            return self.encoding.transform(X), False
        arr = np.asarray(X, dtype=float)  # numbers in feature_names order
        one = arr.ndim == 1
        rows = arr[None, :] if one else arr
        if rows.ndim != 2 or rows.shape[1] != len(self.feature_names):
            raise ValueError(f"expected {len(self.feature_names)} features per row, got "
                             f"shape {arr.shape}")
        dicts = [dict(zip(self.feature_names, r)) for r in rows.tolist()]
        return self.encoding.transform(dicts), one

    def predict(self, X: Any) -> Any:
        rows, one = self._encoded(X)
        out = self.inner.predict(rows)
        return out[0].item() if one and hasattr(out[0], "item") else (out[0] if one else out)

    def predict_proba(self, X: Any) -> Any:
        rows, one = self._encoded(X)
        proba = self.inner.predict_proba(rows)
        if one and isinstance(X, Mapping):
            return dict(zip(self.classes, proba[0].tolist()))
        return proba[0] if one else proba

    def predict_class(self, X: Any, *args: Any) -> Any:
        rows, one = self._encoded(X)
        out = self.inner.predict_class(rows, *args)
        return out[0].item() if one and hasattr(out[0], "item") else (out[0] if one else out)

    def to_bytes(self) -> bytes:
        inner = np.frombuffer(self.inner.to_bytes(), dtype=np.uint8)
        return kinds.write_npz(self.FORMAT, {"inner": self.inner.kind,
                                             "encoding": self.encoding.describe()},
                               {"inner": inner})

    @classmethod
    def from_bytes(cls, data: bytes) -> EncodedModel:
        header, arrays = kinds.read_npz(data, cls.FORMAT, {"inner"})
        inner_kind = header.get("inner")
        if not isinstance(inner_kind, str) or inner_kind == cls.kind:
            raise ArtifactError(f"{cls.FORMAT}: the inner kind {inner_kind!r} is not a kind "
                                f"it can wrap")
        if arrays["inner"].dtype != np.uint8 or arrays["inner"].ndim != 1:
            raise ArtifactError(f"{cls.FORMAT}: the inner artifact must be bytes")
        inner = kinds.load(inner_kind, arrays["inner"].tobytes())
        return cls(inner, Encoding.from_description(header.get("encoding")))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EncodedModel):
            return NotImplemented
        return bool(self.inner == other.inner) and self.encoding == other.encoding

    def __repr__(self) -> str:
        version = f" v{self.version}" if self.version is not None else ""
        return (f"<EncodedModel{version} {len(self.feature_names)} features -> "
                f"{self.inner!r}>")
