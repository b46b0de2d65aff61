"""The rule both PSI kinds share: drift while a column's PSI stays high, per column.

A column (a feature, or the prediction) breaches when its PSI is above its limit
and clears when it is below its resolve limit; after ``consecutive`` checks in a row
of either, its episode fires or resolves. A fire held back by the cooldown is tried
again at the next check that still breaches. The limits are ``psi_threshold`` and
``psi_resolve`` where the config sets them, else calibrated per column once its
reference is in, from the version's false-alarm rate per test
(:mod:`~driftline.agents.monitor.calibration`).
"""

from __future__ import annotations

import numpy as np

from driftline.agents.monitor import calibration
from driftline.agents.monitor.columns import at
from driftline.agents.monitor.config import DataDriftConfig
from driftline.agents.monitor.drift import PSIDrift
from driftline.agents.monitor.rules.hysteresis import Hysteresis
from driftline.agents.monitor.rules.subject import Alert, Subject


class PSIRule:
    """PSI drift of ``columns`` (None: the prediction), alerting as ``kind``."""

    kind: str
    default_rate = calibration.per_test_rate(1.0, calibration.count_tests(0))

    def __init__(self, subject: Subject, columns: list[str | None],
                 config: DataDriftConfig, rate: float = default_rate) -> None:
        self.subject = subject
        self.config = config
        self.rate = rate  # false alarms per prediction allowed to each column's test
        self.limits: np.ndarray | None = None   # per column, once the reference is in
        self.resolves: np.ndarray | None = None
        self.columns = columns
        self.detector = PSIDrift([c or "prediction" for c in columns], config)
        self.keys = [subject.key(self.kind, c) for c in columns]
        self.runs = [Hysteresis(config.consecutive) for _ in columns]
        self.last_psi: dict[str, float] = {}  # the latest PSI per column
        self.alerts: list[Alert] = []         # raised by the last update

    def _check(self, rows: np.ndarray, ts: np.ndarray) -> PSIRule:
        """Rows (events x columns, NaN = missing) of events at times ``ts``; checks run as
        they fall due."""
        self.alerts = []
        checks = self.detector.extend(rows)
        if self.limits is None and self.detector.ready:
            self._calibrate()
        for check in checks:
            when = at(ts, check.position)
            for j, value in enumerate(check.psi.tolist()):
                self._apply(j, value, when)
        return self

    def _calibrate(self) -> None:
        """Each column's limits: the config's, else its PSI under no drift exceeds the limit
        on a share ``rate * check_every`` of the checks (bootstrapped from the reference)."""
        cfg, n = self.config, len(self.columns)
        assert self.detector.expected is not None  # the reference is in
        if cfg.psi_threshold is not None:
            limits = np.full(n, cfg.psi_threshold)
        else:
            limits = calibration.psi_thresholds(
                self.detector.expected, cfg.reference_size, cfg.window,
                calibration.check_alpha(self.rate, cfg.check_every))
        resolves = (np.full(n, cfg.psi_resolve) if cfg.psi_resolve is not None
                    else calibration.RESOLVE_RATIO * limits)
        # A resolve limit set alone may sit above a calibrated limit: then the ratio.
        self.resolves = np.where(resolves < limits, resolves,
                                 calibration.RESOLVE_RATIO * limits)
        self.limits = limits

    def limits_by_column(self) -> dict[str, float]:
        """The PSI limit of each column (empty before its reference is in)."""
        if self.limits is None:
            return {}
        return {c or "prediction": float(v) for c, v in zip(self.columns, self.limits)}

    def _apply(self, j: int, value: float, ts: float) -> None:
        cfg, subject = self.config, self.subject
        name, key = self.columns[j], self.keys[j]
        assert self.limits is not None and self.resolves is not None  # calibrated before
        limit, resolve = float(self.limits[j]), float(self.resolves[j])
        self.last_psi[name or "prediction"] = value
        runs = self.runs[j].update(value > limit, value < resolve)
        what = f"feature {name!r}" if name else "the prediction"
        if runs.breached and not subject.alerts.is_firing(key):
            alert = subject.alerts.fire(
                key, ts=ts, detector="psi", metrics=subject.metrics_now(psi=value),
                severity="critical" if value > 2 * limit else "warning",
                message=f"{'Data' if name else 'Prediction'} drift on {subject.name}: PSI of "
                        f"{what} is {value:.3f} over the last {cfg.window} predictions vs the "
                        f"first {cfg.reference_size} (limit {limit:.3g}).")
        elif runs.cleared and subject.alerts.is_firing(key):
            alert = subject.alerts.resolve(
                key, ts=ts, detector="psi", metrics=subject.metrics_now(psi=value),
                message=f"PSI of {what} on {subject.name} is back to {value:.3f} "
                        f"(below {resolve:.3g}).")
        else:
            return
        if alert:
            self.alerts.append(alert)
