"""Data drift: the PSI of one feature, over the latest predictions vs the version's first.

The version's first prediction names the columns; an event that lacks one leaves
it out of that column's bins.
"""

from __future__ import annotations

import itertools
import math
import operator
from typing import Any

import numpy as np

from driftline.agents.monitor.config import DataDriftConfig
from driftline.agents.monitor.rules.psi import PSIRule
from driftline.agents.monitor.rules.subject import Subject


class DataDriftRule(PSIRule):
    kind = "data_drift"

    def __init__(self, subject: Subject, features: list[str], config: DataDriftConfig) -> None:
        super().__init__(subject, list(features), config)
        self.features = features
        self._getter = operator.itemgetter(*features) if features else None

    def update(self, events: list[dict[str, Any]],
               rows: np.ndarray | None = None) -> DataDriftRule:
        """Prediction events in order (``rows``: their feature rows, if the caller has
        them already); :attr:`alerts` holds what they raised."""
        self.alerts = []
        if self.features:
            self._check(self.rows([e["features"] for e in events]) if rows is None else rows,
                        events)
        return self

    def rows(self, features: list[dict[str, float]]) -> np.ndarray:
        """Events x columns, NaN where an event lacks a column."""
        names = self.features
        assert self._getter is not None  # only called with features
        try:  # the common case: every event has every column; one C call per event
            flat = (itertools.chain.from_iterable(map(self._getter, features))
                    if len(names) > 1 else map(self._getter, features))
            return np.fromiter(flat, float, len(features) * len(names)).reshape(
                len(features), len(names))
        except KeyError:
            return np.array([[f.get(n, math.nan) for n in names] for f in features],
                            float).reshape(len(features), len(names))
