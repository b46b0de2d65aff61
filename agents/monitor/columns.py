"""Feature rows of a batch of events, and the last rows of a stream, as numpy arrays.

The version's first event names the columns (sorted); an event that lacks one has
NaN there. What the estimators, the multivariate drift and the attribution read.

>>> cols = Columns(["b", "a"])
>>> cols.names
['a', 'b']
>>> cols.rows([{"a": 1.0, "b": 2.0}, {"a": 3.0}]).tolist()
[[1.0, 2.0], [3.0, nan]]
>>> tail = Tail(2, 2)
>>> tail.extend(np.array([[1.0, 1], [2, 2], [3, 3]]), np.array([1.0, 2, 3])).values.tolist()
[2.0, 3.0]
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
    """The last ``size`` rows of a stream and one value per row (e.g. its squared error)."""

    def __init__(self, size: int, width: int) -> None:
        self.size = size
        self.rows = np.empty((0, width))
        self.values = np.empty(0)

    def extend(self, rows: np.ndarray, values: np.ndarray) -> Tail:
        self.rows = np.concatenate((self.rows, rows[-self.size:]))[-self.size:]
        self.values = np.concatenate((self.values, values[-self.size:]))[-self.size:]
        return self

    def __len__(self) -> int:
        return len(self.values)
