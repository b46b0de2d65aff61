"""Feature rows of a batch of events, and the last rows of a stream, as numpy arrays.

The version's first event names the columns (sorted); an event that lacks one has
NaN there. What the estimators, the multivariate drift and the attribution read.

>>> cols = Columns(["b", "a"])
>>> cols.names
['a', 'b']
>>> cols.rows([{"a": 1.0, "b": 2.0}, {"a": 3.0}]).tolist()
[[1.0, 2.0], [3.0, nan]]
>>> tail = Tail(2)
>>> tail.extend([{"a": 1.0}, {"a": 2.0}, {"a": 3.0}], np.array([1.0, 2, 3])).values.tolist()
[2.0, 3.0]
>>> tail.features
[{'a': 2.0}, {'a': 3.0}]
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterable

import numpy as np


class Columns:
    """The feature names of a version and a fast row builder for them."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(names)
        self._getter = operator.itemgetter(*self.names) if self.names else None

    def __len__(self) -> int:
        return len(self.names)

    def rows(self, features: list[dict[str, float]]) -> np.ndarray:
        """Events x columns, NaN where an event lacks a column."""
        names, n = self.names, len(features)
        if self._getter is None:
            return np.empty((n, 0))
        try:  # the common case: every event has every column; one C call per event
            flat = (itertools.chain.from_iterable(map(self._getter, features))
                    if len(names) > 1 else map(self._getter, features))
            return np.fromiter(flat, float, n * len(names)).reshape(n, len(names))
        except KeyError:
            return np.array([[f.get(c, math.nan) for c in names] for f in features],
                            float).reshape(n, len(names))


class Tail:
    """The last ``size`` events' features and one value each (e.g. the squared error).

    The features stay dicts: they become rows (:meth:`Columns.rows`) only when something
    reads them, an alert's attribution, so the hot path copies references, not numbers."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.features: list[dict[str, float]] = []
        self.values = np.empty(0)

    def extend(self, features: list[dict[str, float]], values: np.ndarray) -> Tail:
        self.features = (self.features + features[-self.size:])[-self.size:]
        self.values = np.concatenate((self.values, values[-self.size:]))[-self.size:]
        return self

    def __len__(self) -> int:
        return len(self.values)
