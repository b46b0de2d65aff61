"""Categorical drift: the chi-square of each categorical feature's categories, over the
latest predictions vs the version's first (:mod:`~..categories`); model-wide, the
data-quality checks of those features (:mod:`.quality`).
"""

from __future__ import annotations

import numpy as np

from driftline.agents.monitor import calibration
from driftline.agents.monitor.categories import RESOLVE_P, CategoricalDrift
from driftline.agents.monitor.columns import at
from driftline.agents.monitor.config import DataDriftConfig
from driftline.agents.monitor.rules.psi import ColumnDriftRule
from driftline.agents.monitor.rules.quality import Quality
from driftline.agents.monitor.rules.rule import Kind, Seen
from driftline.agents.monitor.rules.subject import Subject
from driftline.models.wire.events import MAX_CLASSES

UNSEEN_STEP = 100  # the reference's present values, rounded down for the unseen limit


class CategoricalDriftRule(ColumnDriftRule):
    kind = "data_drift"
    statistic = "chi2"
    watches = frozenset({Kind.PREDICTIONS})

    def __init__(self, subject: Subject, features: list[str], config: DataDriftConfig,
                 rate: float = ColumnDriftRule.default_rate, quality: bool = False) -> None:
        super().__init__(subject, list(features), config, rate)
        self.features = features
        self.detector = CategoricalDrift(features, config, config.max_categories,
                                         calibration.check_alpha(rate, config.check_every))
        self.quality = (Quality(subject, config, rate, features, "unseen_category")
                        if quality and features else None)

    def update(self, seen: Seen) -> CategoricalDriftRule:
        """Prediction events in order (their category codes); :attr:`alerts` holds what
        they raised."""
        self.alerts = []
        if not self.features:
            return self
        fitted = self.detector.ready
        checks = self.detector.extend(self._codes(seen))
        if not fitted and self.detector.ready and self.quality is not None:
            self._fit_quality(self.quality)
        for check in checks:
            when = at(seen.when, check.position)
            for j, value in enumerate(check.values.tolist()):
                idlike = bool(self.detector.idlike[j])
                self._apply(j, value, float(check.limits[j]), bool(check.clears[j]), when,
                            "the chi-square of {what}'s categories", dof=int(check.dof[j]),
                            **({"idlike": True} if idlike else {}))
            if self.quality is not None:
                self.alerts += self.quality.check(when, check.marks[:, 0], check.marks[:, 1],
                                                  check.unseen, check.period_missing)
        return self

    def _codes(self, seen: Seen) -> np.ndarray:
        return seen.codes

    def _fit_quality(self, quality: Quality) -> None:
        detector, cfg = self.detector, self.config
        reference = detector.reference
        assert reference is not None
        cap = detector.cap
        missing, mismatch = reference[:, cap], reference[:, cap + 1]
        present = (cfg.reference_size - missing - mismatch) // UNSEEN_STEP * UNSEEN_STEP

        def limits(alpha: float) -> np.ndarray:
            return np.array([cfg.window + 1 if p < UNSEEN_STEP or idlike else
                             calibration.unseen_limit(int(p), cfg.window, alpha)
                             for p, idlike in zip(present.tolist(), detector.idlike.tolist())])
        quality.fit(missing, mismatch, limits(quality.alpha), limits(RESOLVE_P))


class ClassDriftRule(CategoricalDriftRule):
    """Prediction drift of a multiclass model: the chi-square of its predicted classes
    (codes of the version's classes), as a categorical feature's."""

    kind = "prediction_drift"

    def __init__(self, subject: Subject, config: DataDriftConfig,
                 rate: float = ColumnDriftRule.default_rate) -> None:
        ColumnDriftRule.__init__(self, subject, [None], config, rate)
        self.features = ["prediction"]
        self.detector = CategoricalDrift(self.features, config, MAX_CLASSES,
                                         calibration.check_alpha(rate, config.check_every))
        self.quality = None

    def _codes(self, seen: Seen) -> np.ndarray:
        return seen.prediction.astype(np.int32).reshape(-1, 1)
