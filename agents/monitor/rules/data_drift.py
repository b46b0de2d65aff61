"""Data drift: the PSI of one feature, over the latest predictions vs the version's first.

The version's first event names the columns (:class:`~..columns.Columns`); an event
that lacks one leaves it out of that column's bins.
"""

from __future__ import annotations

from driftline.agents.monitor.config import DataDriftConfig
from driftline.agents.monitor.rules.psi import PSIRule
from driftline.agents.monitor.rules.rule import Kind, Seen
from driftline.agents.monitor.rules.subject import Subject


class DataDriftRule(PSIRule):
    kind = "data_drift"
    watches = frozenset({Kind.PREDICTIONS})

    def __init__(self, subject: Subject, features: list[str], config: DataDriftConfig,
                 rate: float = PSIRule.default_rate) -> None:
        super().__init__(subject, list(features), config, rate)
        self.features = features

    def update(self, seen: Seen) -> DataDriftRule:
        """Prediction events in order (their feature rows); :attr:`alerts` holds what they
        raised."""
        self.alerts = []
        if self.features:
            self._check(seen.rows, seen.when)
        return self
