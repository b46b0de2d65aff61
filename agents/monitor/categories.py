"""Categorical features: each feature's categories as codes, and their drift test.

A version's :class:`Vocabulary` per categorical feature numbers its categories in the order
they arrive, at most ``max_categories`` of them (``[data_drift]``, 1,000 by default); a
later one is counted as one overflow, so a producer that sends a million distinct strings
holds the version's memory at the cap. Null is missing; a number where the version had
categories is a type mismatch (a data-quality finding, never a refused event).

:class:`CategoricalDrift` compares each feature's categories over the latest ``window``
predictions with the version's first ``reference_size`` by Pearson's chi-square, with the
largest single-category term beside it (each at half the check's false-alarm probability:
the chi-square sees a broad shift, the single term one category that moved). Its cells are
chosen at each check from reference and window together: the categories seen 20 times or
more (at ``window = reference_size``), at most 100, the rest pooled in ``_other``. Under no
change the pooled counts say nothing of the split, so its limits are the chi-square
distribution's, ``chi2.isf(alpha / 2, cells - 1)`` and ``chi2.isf(alpha / (2 cells), 1)``,
whatever the cardinality (``bench/categorical_drift.py`` measured 0.49-0.76 of the allowed
false alarms; PSI over categories, with a simulated limit, 1.1-11x). A feature whose
reference is 90 % distinct values or more is an identifier, not tested for drift.

>>> vocab = Vocabulary(cap=2)
>>> vocab.codes(["DE", None, "FR", "DE", 3.0, "US", True]).tolist()  # True: a third
[0, -1, 1, 0, -2, -3, -3]
>>> vocab.labels()
['DE', 'FR']
>>> round(float(pearson(np.array([50.0, 50.0]), np.array([90.0, 10.0]))), 1)
38.1
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from driftline.agents.monitor.config import DataDriftConfig
from driftline.agents.monitor.window import CountedWindow
from driftline.models.wire.features import NUMBER_TYPES

MISSING, MISMATCH, OVERFLOW = -1, -2, -3  # the codes that are not categories
_UNKNOWN = -4
_NO_NUMBER = frozenset({str, bool, type(None)})
MIN_CELL = 10       # a pooled cell expects at least this many in the smaller sample
MAX_CELLS = 100     # pooled cells at most, plus _other
IDLIKE_SHARE = 0.9  # a reference this share distinct (or more) is an identifier
IDLIKE_MIN = 20     # ... given at least this many present values
RESOLVE_P = 0.05    # a breach clears when the test's p-value is above this


def label(value: str | bool) -> str:
    """A category as reports and alerts name it (a boolean as JSON spells it)."""
    return ("true" if value else "false") if isinstance(value, bool) else value


class Vocabulary:
    """One categorical feature's categories, numbered as they arrive, at most ``cap``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._index: dict[Any, int] = {None: MISSING}
        self._values: list[str | bool] = []
        self.overflowed = False  # a category came after the cap

    def __len__(self) -> int:
        return len(self._values)

    def labels(self) -> list[str]:
        return [label(v) for v in self._values]

    def codes(self, values: Sequence[Any]) -> np.ndarray:
        """Each value's code: its category's number, :data:`MISSING` (null),
        :data:`MISMATCH` (a number) or :data:`OVERFLOW` (a category past the cap)."""
        n, get = len(values), self._index.get
        if set(map(type, values)) <= _NO_NUMBER:  # no number: True cannot be taken for 1
            out = np.fromiter(map(get, values, itertools.repeat(_UNKNOWN, n)), np.int32, n)
        else:
            out = np.fromiter((MISMATCH if type(v) in NUMBER_TYPES else get(v, _UNKNOWN)
                               for v in values), np.int32, n)
        unknown = np.flatnonzero(out == _UNKNOWN)
        for i in unknown.tolist():
            out[i] = self._add(values[i])
        return out

    def _add(self, value: Any) -> int:
        code = self._index.get(value)
        if code is not None:  # a repeat within the batch
            return code
        if len(self._values) >= self.cap:
            self.overflowed = True
            return OVERFLOW
        code = self._index[value] = len(self._values)
        self._values.append(value)
        return code


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson's two-sample chi-square of counts ``a`` and ``b`` (cells on the last axis;
    a cell empty in both adds nothing)."""
    na, nb = a.sum(-1, keepdims=True), b.sum(-1, keepdims=True)
    t, n = a + b, na + nb
    ea = np.divide(t * na, n, out=np.zeros(t.shape), where=n > 0)
    eb = t - ea
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(t > 0, (a - ea) ** 2 / np.where(ea > 0, ea, 1)
                         + (b - eb) ** 2 / np.where(eb > 0, eb, 1), 0.0)
    out: np.ndarray = terms.sum(-1)
    return out


def largest_cell(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The largest 2x2 chi-square of one cell against all the others."""
    na, nb = a.sum(-1, keepdims=True), b.sum(-1, keepdims=True)
    n, t = na + nb, a + b
    num, den = n * (a * nb - b * na) ** 2, na * nb * t * (n - t)
    out: np.ndarray = np.max(np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape),
                                       where=den > 0), axis=-1, initial=0.0)
    return out


def pooled(a: np.ndarray, b: np.ndarray, least: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns x cells counts: the categories whose ``a + b`` is at least ``least`` (the
    :data:`MAX_CELLS` largest), then ``_other`` with the rest."""
    t = a + b
    keep = t >= least
    if t.shape[-1] > MAX_CELLS:
        keep &= t >= -np.partition(-t, MAX_CELLS - 1, axis=-1)[..., MAX_CELLS - 1:MAX_CELLS]

    def collapse(x: np.ndarray) -> np.ndarray:
        return np.concatenate((np.where(keep, x, 0), np.where(keep, 0, x).sum(-1, keepdims=True)),
                              axis=-1)
    return collapse(a), collapse(b)


@functools.lru_cache(maxsize=64)
def limits(alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """By cells (index: cells - 1 = degrees of freedom, up to :data:`MAX_CELLS` + 1): the
    chi-square's limit at ``alpha / 2`` and the largest single cell's at ``alpha / 2``
    split over the cells."""
    dof = np.arange(MAX_CELLS + 2)
    whole = stats.chi2.isf(alpha / 2, np.maximum(dof, 1))
    one = stats.chi2.isf(alpha / (2 * (dof + 1)), 1)
    whole.setflags(write=False)
    one.setflags(write=False)
    return whole, one


class CategoricalCheck(NamedTuple):
    """One check, per column: the chi-square (or, where it is nearer its limit, the largest
    single-category term), its limit, its degrees of freedom, whether both tests are
    below their resolve limits (a p-value above :data:`RESOLVE_P`); the
    window's counts of missing values, type mismatches and overflow; the largest count of
    one category the reference never saw; the missing values since the last check."""

    position: int
    values: np.ndarray
    limits: np.ndarray
    clears: np.ndarray
    dof: np.ndarray
    marks: np.ndarray       # columns x (missing, mismatch, overflow), over the window
    unseen: np.ndarray      # columns: the largest count of a category new to the window
    period_missing: np.ndarray


class CategoricalDrift:
    """Chi-square drift of ``len(columns)`` categorical columns (codes from their
    :class:`Vocabulary`, cap ``cap``), reference = the first events, current = a
    sliding window; ``alpha``: the share of checks that may breach."""

    def __init__(self, columns: list[str], config: DataDriftConfig, cap: int,
                 alpha: float) -> None:
        self.columns, self.config, self.cap = columns, config, cap
        self.size = cap + 3   # categories, then missing, mismatch, overflow
        self.window = CountedWindow(len(columns), self.size, config.window, config.check_every)
        self.reference: np.ndarray | None = None  # columns x size, once in
        self._collected = np.zeros((len(columns), self.size), np.int64)
        self._reference_rows = 0
        self.idlike = np.zeros(len(columns), bool)
        self.least = math.ceil(MIN_CELL * (config.reference_size + config.window)
                               / min(config.reference_size, config.window))
        self._whole, self._one = limits(alpha)
        self._whole_resolve, self._one_resolve = limits(2 * RESOLVE_P)

    @property
    def ready(self) -> bool:
        return self.reference is not None

    def _codes(self, codes: np.ndarray) -> np.ndarray:
        """Batch codes (negative marks) as window codes (the marks after the categories)."""
        codes = codes.astype(np.int64)
        return np.where(codes < 0, self.cap - 1 - codes, codes)

    def extend(self, codes: np.ndarray) -> list[CategoricalCheck]:
        """Add codes (events x columns) in order; the checks that ran."""
        codes = self._codes(codes)
        start = 0
        if not self.ready:
            need = self.config.reference_size - self._reference_rows
            self._collected += self.window.count(codes[:need])
            self._reference_rows += len(codes[:need])
            start = min(need, len(codes))
            if self._reference_rows >= self.config.reference_size:
                self._fit(self._collected)
        if start >= len(codes):
            return []
        return self.window.extend(codes[start:] if start else codes, self._check, start)

    def _fit(self, reference: np.ndarray) -> None:
        self.reference = reference
        cap = self.cap
        present = reference[:, :cap].sum(1) + reference[:, cap + 2]
        distinct = (reference[:, :cap] > 0).sum(1) + reference[:, cap + 2]  # overflow: new
        self.idlike = (present >= IDLIKE_MIN) & (distinct >= IDLIKE_SHARE * present)

    def categories(self, counts: np.ndarray) -> np.ndarray:
        """The category counts of columns x size counts: the vocabulary's, then overflow."""
        return np.concatenate((counts[:, :self.cap], counts[:, self.cap + 2:]), axis=1)

    def _check(self, position: int) -> CategoricalCheck:
        assert self.reference is not None
        counts, cap = self.window.counts, self.cap
        a, b = pooled(self.categories(self.reference), self.categories(counts), self.least)
        cells = (a + b > 0).sum(1)
        dof = np.maximum(cells - 1, 0)
        whole, one = pearson(a, b), largest_cell(a, b)
        whole_limit, one_limit = self._whole[dof], self._one[dof]
        # the test nearer its limit speaks for the column
        by_one = one / one_limit > whole / whole_limit
        values = np.where(by_one, one, whole)
        limit = np.where(by_one, one_limit, whole_limit)
        clears = (whole < self._whole_resolve[dof]) & (one < self._one_resolve[dof])
        tested = (dof > 0) & ~self.idlike
        values = np.where(tested, values, 0.0)
        unseen = np.where(self.reference[:, :cap] == 0, counts[:, :cap], 0).max(1)
        return CategoricalCheck(position, values, limit, clears | ~tested,
                                np.where(by_one, 1, dof),
                                counts[:, cap:cap + 3].copy(), unseen,
                                self.window.period[:, cap].copy())
