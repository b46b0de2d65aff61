"""Data drift: the PSI of one feature, over the latest predictions vs the version's first.

The version's first event names the columns (:class:`~..columns.Columns`); an event
that lacks one leaves it out of that column's bins.
"""

from __future__ import annotations

import numpy as np

from driftline.agents.monitor.config import DataDriftConfig
from driftline.agents.monitor.rules.psi import PSIRule
from driftline.agents.monitor.rules.subject import Subject


class DataDriftRule(PSIRule):
    kind = "data_drift"

    def __init__(self, subject: Subject, features: list[str], config: DataDriftConfig,
                 rate: float = PSIRule.default_rate) -> None:
        super().__init__(subject, list(features), config, rate)
        self.features = features

    def update(self, rows: np.ndarray, ts: np.ndarray) -> DataDriftRule:
        """The feature rows of prediction events in order, at times ``ts``; :attr:`alerts`
        holds what they raised."""
        self.alerts = []
        if self.features:
            self._check(rows, ts)
        return self
