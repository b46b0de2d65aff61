"""The rule every per-column drift test shares: drift while a column's statistic stays
over its limit, per column; and PSI's limits.

A column (a feature, or the prediction) breaches when its statistic is over its limit
and clears when the test says so (PSI: below its resolve limit); after ``consecutive``
checks in a row of either, its episode fires or resolves. A fire held back by the
cooldown is tried again at the next check that still breaches. PSI's limits are
``psi_threshold`` and ``psi_resolve`` where the config sets them, else calibrated per
column once its reference is in, from the version's false-alarm rate per test
(:mod:`~driftline.agents.monitor.calibration`). The chi-square of categorical features
(:mod:`.categorical_drift`) has its limits from the same rate at each check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftline.agents.monitor import calibration
from driftline.agents.monitor.columns import at
from driftline.agents.monitor.config import DataDriftConfig
from driftline.agents.monitor.drift import PSICheck, PSIDrift
from driftline.agents.monitor.rules.hysteresis import Hysteresis
from driftline.agents.monitor.rules.subject import Alert, Subject


class ColumnDriftRule:
    """Drift of ``columns`` (None: the prediction) by a statistic named ``statistic``,
    alerting as ``kind``."""

    kind: str
    statistic = "psi"
    default_rate = calibration.per_test_rate(1.0, calibration.count_tests(0))

    def __init__(self, subject: Subject, columns: list[str | None],
                 config: DataDriftConfig, rate: float = default_rate) -> None:
        self.subject = subject
        self.config = config
        self.rate = rate  # false alarms per prediction allowed to each column's test
        self.columns = columns
        self.keys = [subject.key(self.kind, c) for c in columns]
        self.runs = [Hysteresis(config.consecutive) for _ in columns]
        self.last: dict[str, dict[str, Any]] = {}  # per column: the latest check's
        self.alerts: list[Alert] = []              # raised by the last update

    def _apply(self, j: int, value: float, limit: float, clear: bool, ts: float,
               detail: str, resolve: float | None = None, **extra: Any) -> None:
        cfg, subject = self.config, self.subject
        name, key = self.columns[j], self.keys[j]
        self.last[name or "prediction"] = {"statistic": self.statistic, "value": value,
                                           "limit": limit, **extra}
        breach = value > limit
        runs = self.runs[j].update(breach, clear and not breach)
        what = f"feature {name!r}" if name else "the prediction"
        if runs.breached and not subject.alerts.is_firing(key):
            alert = subject.alerts.fire(
                key, ts=ts, detector=self.statistic,
                metrics=subject.metrics_now(**{self.statistic: value}),
                severity="critical" if value > 2 * limit else "warning",
                message=f"{'Data' if name else 'Prediction'} drift on {subject.name}: "
                        f"{detail.format(what=what)} is {value:.3f} over the last "
                        f"{cfg.window} predictions vs the first {cfg.reference_size} "
                        f"(limit {limit:.3g}).")
        elif runs.cleared and subject.alerts.is_firing(key):
            alert = subject.alerts.resolve(
                key, ts=ts, detector=self.statistic,
                metrics=subject.metrics_now(**{self.statistic: value}),
                message=f"{detail.format(what=what)} on {subject.name} is back to "
                        f"{value:.3f}" + (f" (below {resolve:.3g})." if resolve else "."))
        else:
            return
        if alert:
            self.alerts.append(alert)

    def limits_by_column(self) -> dict[str, float]:
        """The latest limit of each column (empty before its reference is in)."""
        return {name: float(last["limit"]) for name, last in self.last.items()}

    @property
    def last_values(self) -> dict[str, float]:
        """The latest statistic per column."""
        return {name: float(last["value"]) for name, last in self.last.items()}


class PSIRule(ColumnDriftRule):
    """PSI drift of ``columns`` (None: the prediction), alerting as ``kind``."""

    def __init__(self, subject: Subject, columns: list[str | None],
                 config: DataDriftConfig, rate: float = ColumnDriftRule.default_rate,
                 marks: bool = False) -> None:
        super().__init__(subject, columns, config, rate)
        self.limits: np.ndarray | None = None   # per column, once the reference is in
        self.resolves: np.ndarray | None = None
        self.detector = PSIDrift([c or "prediction" for c in columns], config, marks)

    @property
    def last_psi(self) -> dict[str, float]:
        return self.last_values

    def _check(self, rows: np.ndarray, ts: np.ndarray,
               mismatch: np.ndarray | None = None) -> list[PSICheck]:
        """Rows (events x columns, NaN = missing) of events at times ``ts``; checks run as
        they fall due (returned)."""
        self.alerts = []
        checks = self.detector.extend(rows, mismatch)
        if self.limits is None and self.detector.ready:
            self._calibrate()
        assert not checks or (self.limits is not None and self.resolves is not None)
        for check in checks:
            when = at(ts, check.position)
            for j, value in enumerate(check.psi.tolist()):
                resolve = float(self.resolves[j])  # type: ignore[index]
                self._apply(j, value, float(self.limits[j]),  # type: ignore[index]
                            value < resolve, when, "PSI of {what}", resolve)
        return checks

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
