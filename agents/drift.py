"""Drift detectors: River's on the error stream, PSI with numpy on feature values.

* :class:`ErrorDrift` wraps River's ADWIN or PageHinkley and reports only
  *increases* of the error (a model getting better is not an incident).
* :class:`PSIDrift` compares the distribution of each column (a feature, or the
  prediction) in the most recent ``window`` events with the version's first
  ``reference_size`` events, every ``check_every`` events, by the Population
  Stability Index over quantile bins of the reference. Picked over River's KSWIN
  (measured at ~5,500 updates/s here): a check of 10 features costs a few numpy
  calls, so the per-event cost is one row copy (see ``bench/monitor_speed.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from river import drift

from driftline.agents.monitor_config import ConceptDriftConfig, DataDriftConfig

_PSI_EPS = 1e-4


class ErrorDrift:
    """Concept drift on a stream of per-pair errors; ``update`` says if the error went up."""

    def __init__(self, config: ConceptDriftConfig) -> None:
        self.name = config.detector
        if config.detector == "adwin":
            # delta 2e-5, not River's 0.002: on squared errors (heavy-tailed) 0.002 raised
            # a false alarm in 1 of 8 stationary 100k-pair streams; 2e-5 in none, and still
            # caught an abrupt change after 47 pairs (tests/test_monitor_core.py).
            self._detector = drift.ADWIN(**{"delta": 2e-5, **config.params})
        else:
            params = {"mode": "up", **config.params}
            self._detector = drift.PageHinkley(**params)
        self.detections = 0
        self.last_change: tuple[float, float] | None = None  # (mean before, mean after)

    def update_many(self, errors: np.ndarray) -> list[int]:
        """Feed errors in order; returns the positions where an increase was detected."""
        hits = []
        detector = self._detector
        if self.name == "adwin":
            for i, e in enumerate(errors.tolist()):
                before = detector.estimation
                detector.update(e)
                if detector.drift_detected:
                    after = detector.estimation
                    if after > before:
                        self.detections += 1
                        self.last_change = (before, after)
                        hits.append(i)
        else:
            for i, e in enumerate(errors.tolist()):
                detector.update(e)
                if detector.drift_detected:
                    self.detections += 1
                    self.last_change = None
                    hits.append(i)
        return hits


@dataclass
class PSICheck:
    """The result of one check: PSI per column, after ``position`` events of the batch."""

    position: int
    psi: np.ndarray


class PSIDrift:
    """PSI of ``len(columns)`` columns, reference = first events, current = sliding window."""

    def __init__(self, columns: list[str], config: DataDriftConfig) -> None:
        self.columns = columns
        self.config = config
        self._reference: list[np.ndarray] = []
        self._reference_rows = 0
        self.edges: list[np.ndarray] | None = None
        self.expected: list[np.ndarray] | None = None
        self._recent = np.empty((0, len(columns)))
        self._since_check = 0
        self.seen = 0

    @property
    def ready(self) -> bool:
        return self.edges is not None

    def extend(self, rows: np.ndarray) -> list[PSICheck]:
        """Add rows (events x columns, NaN = missing) in order; returns the checks that ran."""
        checks: list[PSICheck] = []
        start = 0
        if not self.ready:
            need = self.config.reference_size - self._reference_rows
            self._reference.append(rows[:need])
            self._reference_rows += len(rows[:need])
            start = min(need, len(rows))
            if self._reference_rows >= self.config.reference_size:
                self._fit_reference(np.concatenate(self._reference))
                self._reference = []
        self.seen += len(rows)
        every = self.config.check_every
        position = start
        while position < len(rows):
            take = min(every - self._since_check, len(rows) - position)
            chunk = rows[position:position + take]
            self._recent = np.concatenate((self._recent, chunk))[-self.config.window:]
            self._since_check += take
            position += take
            if self._since_check == every and len(self._recent) >= self.config.window:
                self._since_check = 0
                checks.append(PSICheck(position - 1, self._psi(self._recent)))
            elif self._since_check == every:
                self._since_check = 0
        return checks

    def _fit_reference(self, reference: np.ndarray) -> None:
        qs = np.linspace(0, 1, self.config.bins + 1)[1:-1]
        self.edges, self.expected = [], []
        for j in range(reference.shape[1]):
            col = reference[:, j]
            col = col[~np.isnan(col)]
            edges = np.unique(np.quantile(col, qs)) if len(col) else np.empty(0)
            self.edges.append(edges)
            self.expected.append(_proportions(col, edges))

    def _psi(self, window: np.ndarray) -> np.ndarray:
        assert self.edges is not None and self.expected is not None
        out = np.zeros(window.shape[1])
        for j in range(window.shape[1]):
            col = window[:, j]
            col = col[~np.isnan(col)]
            if len(col) == 0:
                continue
            actual = _proportions(col, self.edges[j])
            expected = self.expected[j]
            out[j] = float(np.sum((actual - expected) * np.log(actual / expected)))
        return out


def _proportions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"),
                         minlength=len(edges) + 1).astype(float)
    total = counts.sum()
    share = counts / total if total else counts
    return np.maximum(share, _PSI_EPS)

