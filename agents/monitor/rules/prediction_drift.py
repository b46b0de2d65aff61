"""Prediction drift: the PSI of the prediction itself; needs no labels and no features."""

from __future__ import annotations

from typing import Any

import numpy as np

from driftline.agents.monitor.config import DataDriftConfig
from driftline.agents.monitor.rules.psi import PSIRule
from driftline.agents.monitor.rules.subject import Subject


class PredictionDriftRule(PSIRule):
    kind = "prediction_drift"

    def __init__(self, subject: Subject, config: DataDriftConfig,
                 rate: float = PSIRule.default_rate) -> None:
        super().__init__(subject, [None], config, rate)

    def update(self, events: list[dict[str, Any]]) -> PredictionDriftRule:
        """Prediction events in order; :attr:`alerts` holds what they raised."""
        preds = np.fromiter((e["prediction"] for e in events), float, len(events))
        self._check(preds.reshape(-1, 1), events)
        return self
