"""Prediction drift: the PSI of the prediction itself; needs no labels and no features."""

from __future__ import annotations

import numpy as np

from driftline.agents.monitor.config import DataDriftConfig
from driftline.agents.monitor.rules.psi import PSIRule
from driftline.agents.monitor.rules.subject import Subject


class PredictionDriftRule(PSIRule):
    kind = "prediction_drift"

    def __init__(self, subject: Subject, config: DataDriftConfig,
                 rate: float = PSIRule.default_rate) -> None:
        super().__init__(subject, [None], config, rate)

    def update(self, predictions: np.ndarray, ts: np.ndarray) -> PredictionDriftRule:
        """Predictions in order, at times ``ts``; :attr:`alerts` holds what they raised."""
        self._check(predictions.reshape(-1, 1), ts)
        return self
