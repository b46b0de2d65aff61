"""The rule both PSI kinds share: drift while a column's PSI stays high, per column.

A column (a feature, or the prediction) breaches when its PSI is above
``psi_threshold`` and clears when it is below ``psi_resolve``; after ``consecutive``
checks in a row of either, its episode fires or resolves. A fire held back by the
cooldown is tried again at the next check that still breaches.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftline.agents.monitor.config import DataDriftConfig
from driftline.agents.monitor.drift import PSIDrift
from driftline.agents.monitor.rules.hysteresis import Hysteresis
from driftline.agents.monitor.rules.subject import Alert, Subject


class PSIRule:
    """PSI drift of ``columns`` (None: the prediction), alerting as ``kind``."""

    kind: str

    def __init__(self, subject: Subject, columns: list[str | None],
                 config: DataDriftConfig) -> None:
        self.subject = subject
        self.config = config
        self.columns = columns
        self.detector = PSIDrift([c or "prediction" for c in columns], config)
        self.keys = [subject.key(self.kind, c) for c in columns]
        self.runs = [Hysteresis(config.consecutive) for _ in columns]
        self.last_psi: dict[str, float] = {}  # the latest PSI per column
        self.alerts: list[Alert] = []         # raised by the last update

    def _check(self, rows: np.ndarray, events: list[dict[str, Any]]) -> PSIRule:
        """Rows (events x columns, NaN = missing) of ``events``; checks run as they fall due."""
        self.alerts = []
        for check in self.detector.extend(rows):
            event = events[check.position]
            for j, value in enumerate(check.psi.tolist()):
                self._apply(j, value, event["ts"])
        return self

    def _apply(self, j: int, value: float, ts: float) -> None:
        cfg, subject = self.config, self.subject
        name, key = self.columns[j], self.keys[j]
        self.last_psi[name or "prediction"] = value
        runs = self.runs[j].update(value > cfg.psi_threshold, value < cfg.psi_resolve)
        what = f"feature {name!r}" if name else "the prediction"
        if runs.breached and not subject.alerts.is_firing(key):
            alert = subject.alerts.fire(
                key, ts=ts, detector="psi", metrics=subject.metrics_now(psi=value),
                severity="critical" if value > 2 * cfg.psi_threshold else "warning",
                message=f"{'Data' if name else 'Prediction'} drift on {subject.name}: PSI of "
                        f"{what} is {value:.3f} over the last {cfg.window} predictions vs the "
                        f"first {cfg.reference_size} (limit {cfg.psi_threshold}).")
        elif runs.cleared and subject.alerts.is_firing(key):
            alert = subject.alerts.resolve(
                key, ts=ts, detector="psi", metrics=subject.metrics_now(psi=value),
                message=f"PSI of {what} on {subject.name} is back to {value:.3f} "
                        f"(below {cfg.psi_resolve}).")
        else:
            return
        if alert:
            self.alerts.append(alert)
