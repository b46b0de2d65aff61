"""Concept drift: the error detector (the change-point test, ADWIN or PageHinkley) saw the
error rise.

Fires on each detected rise while no episode is open (the alert book keeps one
episode at a time and the cooldown). It has no resolve of its own: the episode
resolves with the metric threshold's, after ``consecutive`` good pairs counted from
the last detection (:class:`~driftline.agents.monitor.rules.threshold.ThresholdRule`).
"""

from __future__ import annotations

import numpy as np

from driftline.agents.monitor.config import ConceptDriftConfig
from driftline.agents.monitor.drift import ErrorDrift
from driftline.agents.monitor.rules.subject import Alert, Subject, number

Change = tuple[float | None, float | None]  # the mean error before and after (ADWIN only)


class ConceptDriftRule:
    kind = "concept_drift"

    def __init__(self, subject: Subject, config: ConceptDriftConfig,
                 task: str = "regression", rate: float | None = None,
                 threshold: float = 0.5) -> None:
        self.subject = subject
        self.key = subject.key(self.kind)
        self.classification = task != "regression"
        # A binary model's mistakes are the user's: P(1) at or above its decision
        # threshold is a 1, as in its realised accuracy (classes.binary_report).
        self.threshold = threshold if task == "binary" else None
        # rate: false alarms per pair allowed; a classifier's error is 0/1, so the test's
        # bins (and its calibrated limit) are 0 and 1 whatever the threshold.
        self.detector = ErrorDrift(config, rate, bounded=self.classification)
        self.changes: dict[int, Change] = {}

    @property
    def name(self) -> str:
        """The detector's name, ``glr``, ``adwin`` or ``page_hinkley``."""
        return self.detector.name

    @property
    def detections(self) -> int:
        """Rises of the error detected so far."""
        return self.detector.detections

    @property
    def positions(self) -> list[int]:
        """Where the last :meth:`update` detected a rise, in order."""
        return list(self.changes)

    def update(self, predictions: np.ndarray, labels: np.ndarray,
               squared: np.ndarray) -> ConceptDriftRule:
        """A batch of scored pairs: the squared error, or the 0/1 error of a classifier
        (``squared`` is already a multiclass model's)."""
        errors = (((predictions >= self.threshold) != (labels >= 0.5)).astype(float)
                  if self.threshold is not None else squared)
        self.changes = {i: (before, after)
                        for i, before, after in self.detector.update_many(errors)}
        return self

    def fire(self, position: int, ts: float, rolling_mse: float, n_scored: int) -> Alert | None:
        """The alert of the rise detected at ``position`` of the last batch, if it opens an
        episode."""
        before, after = self.changes[position]
        what = "error rate" if self.classification else "squared error"
        if before is not None and after is not None:
            detail = f"saw the mean {what} rise from {before:.4g} to {after:.4g}"
        else:
            detail = f"saw the {what} rise"
        subject = self.subject
        baseline = subject.baseline.mse
        critical = baseline is not None and rolling_mse > 2 * baseline
        return subject.alerts.fire(
            self.key, ts=ts, severity="critical" if critical else "warning",
            detector=self.name, metrics=subject.metrics(rolling_mse, n_scored),
            message=f"Concept drift on {subject.name}: {self.name} {detail} after "
                    f"{n_scored:,} pairs; rolling {subject.metric} {rolling_mse:.4g} vs baseline "
                    f"{number(baseline)}.")
