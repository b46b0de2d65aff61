"""Prediction drift: the PSI of the prediction itself; needs no labels and no features."""

from __future__ import annotations

from driftline.agents.monitor.config import DataDriftConfig
from driftline.agents.monitor.rules.psi import PSIRule
from driftline.agents.monitor.rules.rule import Kind, Seen
from driftline.agents.monitor.rules.subject import Subject


class PredictionDriftRule(PSIRule):
    kind = "prediction_drift"
    watches = frozenset({Kind.PREDICTIONS})

    def __init__(self, subject: Subject, config: DataDriftConfig,
                 rate: float = PSIRule.default_rate) -> None:
        super().__init__(subject, [None], config, rate)

    def update(self, seen: Seen) -> PredictionDriftRule:
        """Prediction events in order; :attr:`alerts` holds what they raised."""
        self._check(seen.prediction.reshape(-1, 1), seen.when)
        return self
