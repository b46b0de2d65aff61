"""Feature values, as the wire allows them (a number, a category: a string or a boolean, or
null), to and from columns: the one place that says which values are numbers.

A boolean is a category, never the number 1 or 0 Python would make of it; an int is a
number (events decoded by msgspec hold floats, hand-made ones may hold ints).

>>> numeric({"age": 41.0, "country": "DE", "vip": True, "income": None})
['age', 'income']
>>> number_or_nan(True), number_or_nan(3)
(nan, 3)
>>> numbers(["a"], [{"a": 1.0}, {"a": True}]) is None  # a boolean: not a number column
True
>>> numbers(["a"], [{"a": 1.0}, {"a": None}]).tolist()  # a null: NaN
[1.0, nan]
>>> names, rows, cats = split_columns(["a", "c"], [1.0, "x", None, "y", 2.0, "x"])
>>> names, rows.tolist(), {k: (v, c.tolist()) for k, (v, c) in cats.items()}
(['a'], [1.0, nan, 2.0], {'c': (['x', 'y'], [0, 1, 0])})
>>> split_columns(["c"], [1, "x"]) is None  # an int and a category: no columns for it
True
"""

from __future__ import annotations

import itertools
import math
import operator
from typing import Any

import numpy as np

NUMBER_TYPES = frozenset({float, int})  # bool is neither: a boolean is a category


def numeric(features: dict[str, Any]) -> list[str]:
    """The names of the numeric features of an event: a number or null (a string or a
    boolean is a category)."""
    return [name for name, value in features.items()
            if value is None or type(value) in NUMBER_TYPES]


def number_or_nan(value: Any) -> float:
    """A number as it is; NaN for null, a missing value or a category."""
    return value if type(value) in NUMBER_TYPES else math.nan


def numbers(names: list[str], features: list[dict[str, Any]]) -> np.ndarray | None:
    """The features (events x ``names``, flattened) as float64 when every value is a
    number or null (NaN), in one C call (the common case); None when one is a category."""
    n, width = len(features), len(names)
    if not width:
        return np.empty(0)
    values = (itertools.chain.from_iterable(map(operator.itemgetter(*names), features))
              if width > 1 else map(operator.itemgetter(names[0]), features))
    try:
        rows = np.fromiter(values, float, n * width)
    except (TypeError, ValueError):  # a string (fromiter reads None as NaN)
        return None
    # fromiter reads True as 1.0: a column with 0s or 1s is looked at for booleans
    suspects = ((rows == 0.0) | (rows == 1.0)).reshape(n, width).any(axis=0)
    for j in np.flatnonzero(suspects).tolist():
        if any(type(f[names[j]]) is bool for f in features):
            return None
    return rows


_NONE = type(None)


Categories = dict[str, tuple[list[str | bool], np.ndarray]]  # name -> (categories, codes)


def split_columns(names: list[str], flat: list[Any]
                  ) -> tuple[list[str], np.ndarray, Categories] | None:
    """Feature values (events x ``names``, flattened) as numeric columns (NaN: null) and
    categorical ones (categories in order of first appearance, codes, -1: null); None
    when a feature holds both numbers and categories."""
    width = len(names)
    numeric_at: list[int] = []
    categories: Categories = {}
    for j, name in enumerate(names):
        column = flat[j::width]
        kinds = set(map(type, column)) - {_NONE}
        if kinds <= NUMBER_TYPES:
            numeric_at.append(j)
        elif kinds & NUMBER_TYPES:  # numbers and categories in one feature
            return None
        else:
            index: dict[Any, int] = {}
            # (kind, value): True and "True" are two categories, and a dict would take
            # True and 1 for one key
            codes = np.fromiter((-1 if v is None else index.setdefault((type(v), v), len(index))
                                 for v in column), np.int32, len(column))
            categories[name] = ([v for _, v in index], codes)
    n = len(flat) // width if width else 0
    if numeric_at:
        table = np.array([flat[j::width] for j in numeric_at], float).T  # None -> NaN
    else:
        table = np.empty((n, 0))
    return [names[j] for j in numeric_at], table.reshape(-1), categories


def categories_of(names: list[str], vocabularies: list[list[str | bool]], raw: bytes, n: int
                  ) -> dict[str, np.ndarray]:
    """The categorical columns of a format 4 element (``fc``, ``cv``, ``cx`` of ``n``
    events), each as an object array of values (None: null)."""
    width = len(names)
    if len(vocabularies) != width or len(raw) != 4 * n * width:
        raise ValueError(f"a columnar element's categories: {width} names, "
                         f"{len(vocabularies)} vocabularies and {len(raw)} bytes of codes for "
                         f"{n} events")
    codes = np.frombuffer(raw, "<i4").reshape(n, width)
    out = {}
    for j, (name, vocab) in enumerate(zip(names, vocabularies)):
        column = codes[:, j]
        if column.size and (column.min() < -1 or column.max() >= len(vocab)):
            raise ValueError(f"a columnar element's codes of {name!r} outside its "
                             f"{len(vocab)} categories")
        values = np.empty(len(vocab) + 1, dtype=object)
        values[:len(vocab)] = vocab
        out[name] = values[column]  # -1: the last, None
    return out
