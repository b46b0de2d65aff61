"""Counts of coded values over a sliding window, checked now and then: what the drift and
data-quality tests of a version's columns read.

Each event gives each column one code in ``0..size-1`` (a quantile bin, a category, or a
mark such as missing). :class:`CountedWindow` keeps, per column and code, the counts of
the latest ``window`` events and of those since the last check, as events enter and leave
(a ring of codes, one ``bincount`` per chunk), and every ``check_every`` events, once the
window is full, it calls the caller's check on the tables as they are then. A test is
arithmetic on a columns x codes table, whatever the window's length.

>>> w = CountedWindow(columns=1, size=3, window=4, check_every=2)
>>> w.extend(np.array([[0], [1], [2], [2], [2], [0]]),
...          lambda at: (at, w.counts.tolist(), w.period.tolist()))
[(3, [[1, 1, 2]], [[0, 0, 2]]), (5, [[1, 0, 3]], [[1, 0, 1]])]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


class CountedWindow:
    """Columns x ``size`` counts of codes over the latest ``window`` events (:attr:`counts`)
    and since the last check (:attr:`period`), checked every ``check_every`` events."""

    def __init__(self, columns: int, size: int, window: int, check_every: int) -> None:
        self.size, self.window, self.every = size, window, check_every
        self._codes = Ring(window, (columns,), np.int64)
        self.counts = np.zeros((columns, size), np.int64)
        self.period = np.zeros((columns, size), np.int64)
        self._offsets = np.arange(columns) * size
        self._leave = columns * size  # a second table: what left
        self._since_check = 0

    def extend(self, codes: np.ndarray, check: Callable[[int], T], start: int = 0) -> list[T]:
        """Add codes (events x columns) in order; what ``check(position)`` returned at each
        check that fell due (the position of its last event in the caller's batch: these
        events begin at ``start`` there), on the tables as they were then."""
        checks: list[T] = []
        position, every = 0, self.every
        while position < len(codes):
            if self._since_check == 0:
                self.period[:] = 0
            take = min(every - self._since_check, len(codes) - position)
            chunk = codes[position:position + take] if take < len(codes) else codes
            leaving = self._codes.push(chunk)
            if len(leaving) == len(chunk):  # a full window: as many leave as enter
                both = self._count(np.concatenate((chunk, leaving + self._leave)), 2)
                entered = both[0]
                self.counts += entered
                self.counts -= both[1]
            else:
                entered = self._count(chunk)
                self.counts += entered
                if len(leaving):
                    self.counts -= self._count(leaving)
            self.period += entered
            self._since_check += take
            position += take
            if self._since_check == every:
                self._since_check = 0
                if len(self._codes) >= self.window:
                    checks.append(check(start + position - 1))
        return checks

    def _count(self, codes: np.ndarray, tables: int = 1) -> np.ndarray:
        """Columns x size counts of codes; ``tables`` > 1: codes offset by multiples of
        :attr:`_leave` counted in tables of their own."""
        shape = (len(self._offsets), self.size)
        counts = np.bincount((codes + self._offsets).ravel(), minlength=tables * self._leave)
        return counts.reshape((tables, *shape) if tables > 1 else shape)

    def count(self, codes: np.ndarray) -> np.ndarray:
        """Columns x size counts of some events' codes (a reference's)."""
        return self._count(codes)


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


class RollingMean:
    """The mean of a stream's last ``window`` values after each new one (NaN until
    ``window`` are in): an estimator's rolling estimate.

    >>> r = RollingMean(2)
    >>> r.extend(np.array([1.0, 3.0, 5.0])).tolist(), r.extend(np.array([7.0])).tolist()
    ([nan, 2.0, 4.0], [6.0])
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.values = Ring(window)  # the window's values (storage order: for means)
        self._sum = 0.0             # ... their sum
        self.count = 0              # values in so far

    def extend(self, values: np.ndarray) -> np.ndarray:
        """Add values in order; the mean after each."""
        n, window = len(values), self.window
        if self.count >= window and n < window:  # the common case: a full window already
            rolling = (self._sum + np.cumsum(values - self.values.push(values))) / window
        else:
            held = self.values.ordered()
            self.values.push(values)
            cumulative = np.concatenate(([0.0], np.cumsum(np.concatenate((held, values)))))
            ends = len(held) + 1 + np.arange(n)
            counts = self.count + 1 + np.arange(n)
            sizes = np.minimum(counts, window)
            rolling = (cumulative[ends] - cumulative[ends - sizes]) / sizes
            rolling[counts < window] = np.nan
        self._sum = self.values.sum()  # summed afresh: no rounding carried over
        self.count += n
        return np.asarray(rolling)

    def mean(self) -> float:
        """The window's mean (NaN when empty)."""
        return float(self.values.values().mean()) if len(self.values) else math.nan
