"""Drift detectors: River's on the error stream, PSI with numpy on feature values.

* :class:`ErrorDrift` runs the change-point test of :mod:`.changepoint` (the default), River's
  ADWIN or PageHinkley, and reports only *increases* of the error (a model getting better
  is not an incident).
* :class:`PSIDrift` compares the distribution of each column (a feature, or the
  prediction) in the most recent ``window`` events with the version's first
  ``reference_size`` events, every ``check_every`` events, by the Population
  Stability Index over quantile bins of the reference. Picked over River's KSWIN
  (measured at ~5,500 updates/s here): a check of 10 features costs a few numpy
  calls, so the per-event cost is one row copy (see ``bench/monitor_speed.py``).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
from river import drift

from driftline.agents.monitor import calibration, changepoint
from driftline.agents.monitor.changepoint import BinnedGLR
from driftline.agents.monitor.config import ConceptDriftConfig, DataDriftConfig
from driftline.agents.monitor.psi import psi_of_shares, shares
from driftline.agents.monitor.window import CountedWindow

# (position in the batch, mean error before, mean after) of a detected rise; the means are
# None for PageHinkley.
Rise = tuple[int, float | None, float | None]
# River's ADWIN (0.21 and later) keeps its window in a compiled (Cython, then Rust)
# ``AdaptiveWindowing``, ``_helper``; where a River lacks it, ADWIN goes through River's
# public API.
_COMPILED_ADWIN = all(hasattr(getattr(drift.ADWIN(), "_helper", None), name)
                  for name in ("update", "get_width", "get_total"))


# Where no rate is given (a detector built outside a monitor): the default budget's, 10 features.
DEFAULT_RATE = calibration.per_test_rate(1.0, calibration.count_tests(features=10))


class ErrorDrift:
    """Concept drift on a stream of per-pair errors; ``update`` says if the error went up."""

    def __init__(self, config: ConceptDriftConfig, rate: float | None = None,
                 bounded: bool = False) -> None:
        self.name = config.detector
        self.params: dict[str, Any]
        self._glr: BinnedGLR | None = None
        if config.detector == "glr":  # the default: calibrated on any error distribution
            given = config.params
            self._glr = BinnedGLR(rate if rate is not None else DEFAULT_RATE, bounded,
                                  given.get("threshold"),
                                  int(given.get("reference", changepoint.REFERENCE)))
            self.params = self._glr.params
        elif config.detector == "adwin":
            # Not River's delta of 0.002: on squared errors (heavy-tailed) 0.002 raised a
            # false alarm in 1 of 8 stationary 100k-pair streams. Unset, delta comes from
            # the false-alarm rate per test (calibration.adwin_delta; ~1.2e-6 for 10
            # features at the default budget), else it was 2e-5; a configured delta wins.
            params = dict(config.params)
            if "delta" not in params and rate is not None:
                # A smaller delta delays a detection by whole clock ticks; a tick of 16
                # pairs instead of River's 32 wins that back (for ~10% more per update,
                # measured), and the test every 16 pairs gets half the delta.
                params.setdefault("clock", calibration.ADWIN_CLOCK)
                params["delta"] = calibration.adwin_delta(rate, int(params["clock"]))
            params.setdefault("delta", 2e-5)
            self.params = params
            self._detector: Any = drift.ADWIN(**params)
        else:
            self.params = {"mode": "up", **config.params}
            self._detector = drift.PageHinkley(**self.params)
        self.detections = 0
        # ADWIN's window is everything since its start (``_base_*``): afresh after a rise,
        # the values its cut kept after a fall; it drops nothing otherwise. Running sums
        # give the mean before a cut without reading River's (Python-level) estimation
        # after every update.
        self._count = 0
        self._total = 0.0
        self._base_count = 0
        self._base_total = 0.0

    def warm(self, errors: np.ndarray) -> None:
        """Reference errors from elsewhere than the stream (a reference profile): the
        change-point test's bins; River's detectors take none."""
        if self._glr is not None:
            self._glr.warm(errors)

    def update_many(self, errors: np.ndarray) -> list[Rise]:
        """Feed errors in order; returns (position, mean before, mean after) of each
        detected increase (the means are None for PageHinkley)."""
        if self._glr is not None:
            found: list[Rise] = list(self._glr.update_many(errors))
            self.detections = self._glr.detections
            return found
        if self.name != "adwin":
            hits = self._page_hinkley_hits(errors)
            self._count += len(errors)
            self.detections += len(hits)
            return [(i, None, None) for i in hits]
        sums = np.concatenate(([0.0], np.cumsum(errors)))
        rises = (self._adwin_rises(errors, sums) if _COMPILED_ADWIN
                 else self._river_adwin_rises(errors, sums))
        self._count += len(errors)
        self._total += sums[-1]
        return rises

    def _cut(self, i: int, after: float, width: int,
             sums: np.ndarray) -> Rise | None:
        """ADWIN cut its window at position ``i`` of the batch, keeping the ``width`` most
        recent values (this one included), of mean ``after``. A rise is counted and the
        detector starts afresh after it, as River's does; a fall is not an incident, and
        the window keeps what the cut left, so the next rise is measured from the lower
        level. (Starting afresh after a fall too, River's way, lost rises: pairs that reach
        the monitor a join partition at a time, as they do after a backlog, rise and fall in
        a sawtooth, and every cut can land on a fall — ``tests/test_monitor_rules.py``.)"""
        count = self._count + i  # values in before this one
        total = self._total + sums[i]
        before = (total - self._base_total) / max(count - self._base_count, 1)
        if after > before:
            self.detections += 1
            self._base_count, self._base_total = count + 1, self._total + sums[i + 1]
            return i, before, after
        self._base_count = count + 1 - width
        self._base_total = self._total + sums[i + 1] - after * width
        return None

    def _page_hinkley_hits(self, errors: np.ndarray) -> list[int]:
        """Positions of PageHinkley's detections (of rises only: ``mode="up"``)."""
        detector = self._detector
        update = detector.update
        hits = []
        for i, e in enumerate(errors.tolist()):
            update(e)
            if detector.drift_detected:
                hits.append(i)
        return hits

    def _river_adwin_rises(self, errors: np.ndarray,
                           sums: np.ndarray) -> list[Rise]:
        """The rises, through River's ADWIN API (where a River lacks the compiled window).
        After a fall, River's flag is cleared so its next update keeps the window."""
        detector = self._detector
        rises = []
        for i, e in enumerate(errors.tolist()):
            detector.update(e)
            if detector.drift_detected:
                rise = self._cut(i, detector.estimation, int(detector.width), sums)
                if rise is None:
                    detector._drift_detected = False
                else:
                    rises.append(rise)
        return rises

    def _adwin_rises(self, errors: np.ndarray,
                     sums: np.ndarray) -> list[Rise]:
        """The same as :meth:`_river_adwin_rises`, calling the compiled window River's ADWIN
        wraps (``_helper``) directly: River's ``update`` adds a Python call and two property
        reads per value, more than the window's own update (0.39 against 0.15 µs,
        ``bench/monitor_speed.py``). River resets after a detection at the next update; this
        resets right after reading the mean, which leaves the same state for the next value.
        ``tests/test_monitor_rules.py`` checks the two give the same detections."""
        detector = self._detector
        if detector.drift_detected:  # River's own update ran last and detected a rise
            detector._reset()
        rises = []
        update = detector._helper.update
        for i, e in enumerate(errors.tolist()):
            if update(e):
                helper = detector._helper
                width = int(helper.get_width())
                rise = self._cut(i, helper.get_total() / width if width else 0.0, width, sums)
                if rise is not None:
                    rises.append(rise)
                    detector._reset()
                    update = detector._helper.update
        return rises


_NO_MARKS = np.empty(0)


class PSICheck(NamedTuple):
    """One check after ``position`` events of the batch: PSI per column; the window's
    counts per column of (missing, type mismatch, below the reference's least value, above
    its greatest); the missing values since the last check."""

    position: int
    psi: np.ndarray
    marks: np.ndarray
    period_missing: np.ndarray


class PSIDrift:
    """PSI of ``len(columns)`` columns, reference = first events, current = sliding window.

    Each value is binned once, when it arrives (quantile edges of the reference), with four
    marks past the bins: missing (NaN), a type mismatch (a category where the version has
    numbers: ``mismatch``), and, where data quality reads them (``marks``), below or above
    the reference's range (in the first or the last bin for the PSI). The window's counts
    per column and code are kept as rows enter and leave it (:class:`~.window.CountedWindow`);
    a check is arithmetic on them.
    """

    def __init__(self, columns: list[str], config: DataDriftConfig,
                 marks: bool = True) -> None:
        self.columns = columns
        self.config = config
        self.marks = marks  # checks carry the marks' counts (data quality reads them)
        bins = config.bins
        self.missing, self.mismatch, self.below, self.above = range(bins, bins + 4)
        self._reference: list[np.ndarray] = []
        self._reference_mismatch: list[np.ndarray | None] = []
        self._reference_rows = 0
        self.edges: list[np.ndarray] | None = None
        self.expected: np.ndarray | None = None          # columns x bins
        self.reference: np.ndarray | None = None         # columns x codes, counted
        self.window = CountedWindow(len(columns), bins + 4, config.window, config.check_every)
        self.seen = 0

    @property
    def ready(self) -> bool:
        return self.edges is not None

    def extend(self, rows: np.ndarray, mismatch: np.ndarray | None = None) -> list[PSICheck]:
        """Add rows (events x columns, NaN = missing) in order, ``mismatch`` marking where a
        value was of the other type (None: nowhere); returns the checks that ran."""
        start = 0
        if not self.ready:
            need = self.config.reference_size - self._reference_rows
            self._reference.append(rows[:need].copy())  # a view would pin the batch
            self._reference_mismatch.append(None if mismatch is None else mismatch[:need].copy())
            self._reference_rows += len(rows[:need])
            start = min(need, len(rows))
            if self._reference_rows >= self.config.reference_size:
                reference = np.concatenate(self._reference)
                marks = [np.zeros(r.shape, bool) if m is None else m
                         for r, m in zip(self._reference, self._reference_mismatch)]
                self._fit_reference(reference, np.concatenate(marks))
                self._reference, self._reference_mismatch = [], []
        self.seen += len(rows)
        if start >= len(rows):
            return []
        if start:
            rows = rows[start:]
            mismatch = None if mismatch is None else mismatch[start:]
        return self.window.extend(self._bin(rows, mismatch), self._check, start)

    def _fit_reference(self, reference: np.ndarray, mismatch: np.ndarray) -> None:
        qs = np.linspace(0, 1, self.config.bins + 1)[1:-1]
        self.edges = []
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column
            self._low = np.nanmin(reference, axis=0) if len(reference) else np.empty(0)
            self._high = np.nanmax(reference, axis=0) if len(reference) else np.empty(0)
        for j in range(reference.shape[1]):
            col = reference[:, j]
            col = col[~np.isnan(col)]
            edges = np.unique(np.quantile(col, qs)) if len(col) else np.empty(0)
            self.edges.append(edges[~np.isnan(edges)])  # inf in a reference: no NaN edge
        # Every column's edges in one array, padded with +inf to the longest, edge-major:
        # binning a batch is then one comparison of all its values with all edges, not a
        # searchsorted call per column (2-3x faster on 50 to 500 rows, measured).
        width = max((len(e) for e in self.edges), default=0)
        self._edges = np.full((width, len(self.edges), 1), np.inf)
        for j, edges in enumerate(self.edges):
            self._edges[:len(edges), j, 0] = edges
        self._n_edges = np.array([len(e) for e in self.edges], np.int64)
        self.reference = self.window.count(self._bin(reference, mismatch))
        self.expected = shares(self._folded(self.reference), self.config.bins)

    def _bin(self, rows: np.ndarray, mismatch: np.ndarray | None = None) -> np.ndarray:
        """Bin numbers 0..bins-1 per value (``searchsorted(edges, value, side="right")``:
        the edges at or below it), or a mark: missing, mismatch, below, above the range."""
        assert self.edges is not None
        by_column = np.ascontiguousarray(rows.T)
        out: np.ndarray = np.add.reduce(self._edges <= by_column[None, :, :], axis=0,
                                        dtype=np.int64).T
        np.minimum(out, self._n_edges, out=out)  # +inf is at or above the padding
        if self.marks:  # out of the reference's range: only data quality reads it apart
            with np.errstate(invalid="ignore"):
                below, above = rows < self._low, rows > self._high
            if below.any():
                out[below] = self.below
            if above.any():
                out[above] = self.above
        missing = np.isnan(rows)
        if missing.any():
            out[missing] = self.missing
            if mismatch is not None:
                out[mismatch] = self.mismatch
        return out

    def _folded(self, counts: np.ndarray) -> np.ndarray:
        """Columns x bins counts, the values outside the reference's range in its first and
        last bins."""
        bins = self.config.bins
        if not self.marks:  # none was marked: the edges binned them (a view)
            return counts[:, :bins]
        out = counts[:, :bins].copy()
        out[:, 0] += counts[:, self.below]
        out[np.arange(len(out)), self._n_edges] += counts[:, self.above]
        return out

    def _check(self, position: int) -> PSICheck:
        assert self.expected is not None
        counts = self.window.counts
        folded = self._folded(counts)
        psi = psi_of_shares(shares(folded, self.config.bins), self.expected)
        psi[folded.sum(axis=1) == 0] = 0.0  # nothing seen
        if not self.marks:  # no data-quality checks read them (segments, the prediction)
            return PSICheck(position, np.asarray(psi, dtype=float), _NO_MARKS, _NO_MARKS)
        return PSICheck(position, np.asarray(psi, dtype=float),
                        counts[:, self.missing:].copy(),
                        self.window.period[:, self.missing].copy())
