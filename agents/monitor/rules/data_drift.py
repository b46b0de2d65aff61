"""Data drift: the PSI of each numeric feature, over the latest predictions vs the
version's first; model-wide, the data-quality checks of those features (:mod:`.quality`).

The version's columns (:class:`~..columns.Columns`) are its numeric features; an event
that lacks one, or has null there, leaves it out of that column's bins and counts it
missing; a category there is a type mismatch.
"""

from __future__ import annotations

import numpy as np

from driftline.agents.monitor import calibration
from driftline.agents.monitor.categories import RESOLVE_P
from driftline.agents.monitor.columns import at
from driftline.agents.monitor.config import DataDriftConfig
from driftline.agents.monitor.rules.psi import PSIRule
from driftline.agents.monitor.rules.quality import Quality
from driftline.agents.monitor.rules.rule import Kind, Seen
from driftline.agents.monitor.rules.subject import Subject


class DataDriftRule(PSIRule):
    kind = "data_drift"
    watches = frozenset({Kind.PREDICTIONS})

    def __init__(self, subject: Subject, features: list[str], config: DataDriftConfig,
                 rate: float = PSIRule.default_rate, quality: bool = False) -> None:
        super().__init__(subject, list(features), config, rate, marks=quality)
        self.features = features
        self.quality = (Quality(subject, config, rate, features, "out_of_range")
                        if quality and features else None)

    def update(self, seen: Seen) -> DataDriftRule:
        """Prediction events in order (their feature rows); :attr:`alerts` holds what they
        raised."""
        self.alerts = []
        if not self.features:
            return self
        fitted = self.detector.ready
        checks = self._check(seen.rows, seen.when, seen.mismatch)
        quality = self.quality
        if quality is None:
            return self
        if not fitted and self.detector.ready:
            self._fit_quality(quality)
        for check in checks:
            marks = check.marks  # missing, mismatch, below, above
            self.alerts += quality.check(at(seen.when, check.position), marks[:, 0],
                                         marks[:, 1], marks[:, 2] + marks[:, 3],
                                         check.period_missing)
        return self

    def _fit_quality(self, quality: Quality) -> None:
        detector, cfg = self.detector, self.config
        reference = detector.reference
        assert reference is not None
        missing, mismatch = reference[:, detector.missing], reference[:, detector.mismatch]
        present = cfg.reference_size - missing - mismatch
        alpha = quality.alpha
        quality.fit(missing, mismatch,
                    np.array([calibration.out_of_range_limit(int(p), cfg.window, alpha)
                              for p in present.tolist()]),
                    np.array([calibration.out_of_range_limit(int(p), cfg.window, RESOLVE_P)
                              for p in present.tolist()]))
