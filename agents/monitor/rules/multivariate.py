"""Multivariate drift: the PCA reconstruction error of the features moved away from the
reference's (:mod:`..multivariate`), ``consecutive`` checks in a row.

A check breaches when ``|z|`` is above ``z`` and clears when it is below half of it.
"""

from __future__ import annotations

from typing import Any

from driftline.agents.monitor.columns import at
from driftline.agents.monitor.config import MultivariateConfig
from driftline.agents.monitor.multivariate import PCADrift
from driftline.agents.monitor.rules.hysteresis import Hysteresis
from driftline.agents.monitor.rules.rule import Kind, Seen
from driftline.agents.monitor.rules.subject import Alert, Subject


class MultivariateDriftRule:
    kind = "multivariate_drift"
    detector = "pca_reconstruction"
    watches = frozenset({Kind.PREDICTIONS})

    def __init__(self, subject: Subject, config: MultivariateConfig) -> None:
        self.subject = subject
        self.config = config
        self.key = subject.key(self.kind)
        self.drift = PCADrift(config)
        self.runs = Hysteresis(config.consecutive)
        self.alerts: list[Alert] = []

    def update(self, seen: Seen) -> MultivariateDriftRule:
        """Prediction events in order (their feature rows); :attr:`alerts` holds what they
        raised."""
        self.alerts = []
        rows, ts = seen.rows, seen.when
        if rows.shape[1] < 2:  # one feature: PSI already says everything
            return self
        subject, book, cfg = self.subject, self.subject.alerts, self.config
        for check in self.drift.extend(rows):
            runs = self.runs.update(abs(check.z) > cfg.z, abs(check.z) < cfg.z / 2)
            when = at(ts, check.position)
            metrics = subject.metrics_now(reconstruction_error=check.error,
                                          reference_reconstruction_error=self.drift
                                          .reference_error or 0.0, multivariate_z=check.z)
            if runs.breached and not book.is_firing(self.key):
                alert = book.fire(
                    self.key, ts=when, detector=self.detector, metrics=metrics,
                    severity="critical" if abs(check.z) > 2 * cfg.z else "warning",
                    message=f"Multivariate drift on {subject.name}: the PCA reconstruction "
                            f"error of the last {cfg.window} predictions is {check.error:.4g} "
                            f"vs {self.drift.reference_error:.4g} on the reference "
                            f"({check.z:+.1f} standard errors, limit "
                            f"{cfg.z}); the features no longer move together as they did.")
            elif runs.cleared and book.is_firing(self.key):
                alert = book.resolve(
                    self.key, ts=when, detector=self.detector, metrics=metrics,
                    message=f"PCA reconstruction error of {subject.name} is back to "
                            f"{check.error:.4g} ({check.z:+.1f} standard errors).")
            else:
                continue
            if alert:
                self.alerts.append(alert)
        return self

    def report(self) -> dict[str, Any]:
        last = self.drift.last
        return {"reconstruction_error": last.error if last else None,
                "reference_reconstruction_error": self.drift.reference_error,
                "multivariate_z": last.z if last else None,
                "pca_components": self.drift.components}
