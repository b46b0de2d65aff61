"""Estimated degradation: the estimated MSE (DLE, or CBPE's expected Brier score) stayed
above ``factor`` x its reference value for ``consecutive`` predictions in a row.

Driven by predictions, so it needs no labels once the estimator is fitted on the
version's first ``reference_pairs`` labeled pairs (:mod:`..estimation`). It resolves
after as many predictions in a row at or under halfway between the reference value and
the fire limit. Vectorised over runs (:class:`.hysteresis.Hysteresis`): batch
boundaries change nothing.

**The same whatever the interleaving.** Which predictions come before the fit depends on
how predictions and pairs interleave (in the worker, pairs take one hop more than
predictions; a backfill may deliver every prediction first), so predictions that come
before the fit wait, up to ``PENDING`` of them, and are estimated, in their order, when
it happens. The estimate and the alerts are then a function of the prediction order and
of the first pairs only: replay equals streaming.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from driftline.agents.monitor.class_estimation import ClassEstimation
from driftline.agents.monitor.columns import at, widen
from driftline.agents.monitor.config import EstimationConfig
from driftline.agents.monitor.estimation import Estimation
from driftline.agents.monitor.rules.hysteresis import Hysteresis
from driftline.agents.monitor.rules.rule import Kind, Seen
from driftline.agents.monitor.rules.subject import Alert, Subject

PENDING = 20_000  # predictions kept for the fit; older ones are not estimated


class EstimatedDegradationRule:
    kind = "estimated_degradation"
    watches = frozenset({Kind.PREDICTIONS})

    def __init__(self, subject: Subject, config: EstimationConfig, window: int,
                 classification: bool, multiclass: bool = False,
                 threshold: float = 0.5) -> None:
        self.subject = subject
        self.config = config
        self.key = subject.key(self.kind)
        # A multiclass model's estimator reads the class probabilities where the others
        # read the feature rows (its reference: ClassEstimation.add_reference). A binary
        # model's estimated confusion matrix is read at its decision threshold, the one
        # its realised metrics use.
        self.multiclass = multiclass
        self.estimation: Estimation | ClassEstimation = (
            ClassEstimation(window, config.reference_pairs) if multiclass
            else Estimation(window, classification, threshold))
        self.runs = Hysteresis(config.consecutive)
        self.alerts: list[Alert] = []
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # ts, rows, preds
        self._pending_count = 0

    @property
    def detector(self) -> str:
        return self.estimation.method

    def fit(self, rows: np.ndarray, predictions: np.ndarray,
            labels: np.ndarray) -> EstimatedDegradationRule:
        """The reference: the version's first ``reference_pairs`` labeled pairs. The
        predictions that waited for it are estimated now; :attr:`alerts` holds what they
        raised."""
        assert isinstance(self.estimation, Estimation)
        self.estimation.fit(rows, predictions, labels)
        return self.fitted_now()

    def fitted_now(self) -> EstimatedDegradationRule:
        """The estimator was just fitted: the predictions that waited are estimated now;
        :attr:`alerts` holds what they raised."""
        self.alerts = []
        if self._pending:
            width = max(rows.shape[1] for _, rows, _ in self._pending)  # classes grow
            ts, waiting, preds = (np.concatenate(a) for a in zip(*(
                (ts, widen(rows, width), preds) for ts, rows, preds in self._pending)))
            self._pending = []
            self._apply(ts, waiting, preds)
        return self

    def update(self, seen: Seen) -> EstimatedDegradationRule:
        """Prediction events in order (and their expected squared errors if the version
        has them); :attr:`alerts` holds what they raised."""
        self.alerts = []
        ts, predictions = seen.when, seen.prediction
        rows = seen.proba if self.multiclass and seen.proba is not None else seen.rows
        if not self.estimation.fitted:
            self._pending.append((ts.copy(), rows.copy(), predictions.copy()))  # not views
            self._pending_count += len(ts)
            while self._pending_count - len(self._pending[0][0]) >= PENDING:
                self._pending_count -= len(self._pending.pop(0)[0])
            return self
        return self._apply(ts, rows, predictions, seen.expected)

    def _apply(self, ts: np.ndarray, rows: np.ndarray, predictions: np.ndarray,
               expected: np.ndarray | None = None) -> EstimatedDegradationRule:
        full = self.estimation.count >= self.estimation.window  # no NaN comes out
        rolling = self.estimation.update(rows, predictions, expected)
        baseline = self.estimation.baseline
        if baseline is None or not len(rolling) or math.isnan(rolling[-1]):
            return self
        start = 0 if full else int(np.argmax(~np.isnan(rolling)))
        values = rolling[start:] if start else rolling
        resolve = (1 + self.config.factor) / 2 * baseline
        self.runs.update_many(values > self.config.factor * baseline, values <= resolve, ())
        steps = sorted([(i, True) for i in self.runs.breached_at]
                       + [(i, False) for i in self.runs.cleared_at])
        subject, book, cfg = self.subject, self.subject.alerts, self.config
        for i, fire in steps:
            value = float(values[i])
            when = at(ts, start + i)
            metrics = subject.metrics_now(estimated_mse=value, estimated_baseline_mse=baseline)
            ratio = value / baseline if baseline else float("inf")
            if fire:
                alert = book.fire(
                    self.key, ts=when, detector=self.detector, metrics=metrics,
                    severity="critical" if ratio > 2 * cfg.factor else "warning",
                    message=f"Estimated degradation of {subject.name} before its labels: "
                            f"{self.detector.upper()} estimates the MSE of the last "
                            f"{self.estimation.window} predictions at {value:.4g}, "
                            f"{ratio:.2f}x its reference {baseline:.4g}, for "
                            f"{cfg.consecutive} predictions in a row (limit {cfg.factor}x).")
            else:
                alert = book.resolve(
                    self.key, ts=when, detector=self.detector, metrics=metrics,
                    message=f"Estimated MSE of {subject.name} is back to {value:.4g} "
                            f"(reference {baseline:.4g}) for {cfg.consecutive} predictions "
                            f"in a row.")
            if alert:
                self.alerts.append(alert)
        return self

    def report(self) -> dict[str, Any]:
        return {**self.estimation.report(), "estimator": self.detector}
