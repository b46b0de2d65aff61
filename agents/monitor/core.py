"""The monitor: metrics, drift detectors and alert rules per (model, version).

This module only orchestrates: the metrics are in :mod:`.metrics`, each alert rule
in its own module under :mod:`.rules`; here they are fed in order and what they
raise is merged in the order it happened.

Plain Python and numpy, no Kafka: the Faust agent in :mod:`driftline.agents.monitor.agent`
feeds it, tests and offline replay use it directly. Everything it computes is a
function of the order of its inputs only (event times, never the wall clock), so
replaying the same input gives the same numbers and the same alert ids; that is
how the agent survives kill -9 (see the README).

>>> from driftline.agents.monitor.config import MonitorConfig
>>> mon = Monitor(MonitorConfig())
>>> pairs = [{"prediction_id": str(i), "model": "m", "version": 1, "prediction": 1.0,
...           "label": 0.0, "error": 1.0, "features": {}, "ts": 0.0, "label_ts": float(i)}
...          for i in range(10)]
>>> mon.process_pairs(pairs)
[]
>>> mon.versions[("m", 1)].report()["rolling_mse"]
1.0
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from driftline.agents.monitor import calibration
from driftline.agents.monitor.alerting import AlertBook
from driftline.agents.monitor.config import ModelConfig, MonitorConfig
from driftline.agents.monitor.metrics import Baseline, RollingErrors
from driftline.agents.monitor.rules import (
    ConceptDriftRule,
    DataDriftRule,
    LabelStarvationRule,
    PredictionDriftRule,
    Subject,
    ThresholdRule,
)
from driftline.agents.monitor.rules.subject import Alert
from driftline.agents.monitor.superseded import supersede

_TS = operator.itemgetter("ts")


class VersionMonitor:
    """Everything the monitor knows about one version of one model."""

    def __init__(self, model: str, version: int | None, config: ModelConfig,
                 alerts: AlertBook, baseline_mse: float | None = None,
                 features: int = 0) -> None:
        self.model, self.version, self.config = model, version, config
        self.alerts = alerts
        # The false-alarm budget split over this version's tests (the features its first
        # event names): each test's false alarms per prediction.
        self.tests = calibration.count_tests(features)
        self.rate = calibration.per_test_rate(config.false_alarm_budget, self.tests)
        self.rolling = RollingErrors(config.window)
        # The version's own baseline (registry metadata) wins over the model's (config
        # file); without either, the first `baseline_pairs` pairs set it.
        self.baseline = Baseline(config.baseline_pairs,
                                 baseline_mse if baseline_mse is not None else config.baseline_mse)
        subject = Subject(model, version, alerts, self.rolling, self.baseline)
        self.concept = ConceptDriftRule(subject, config.concept_drift, self.classification,
                                        self.rate)
        self.threshold = ThresholdRule(subject, config.threshold)
        self.data_drift: DataDriftRule | None = None  # the first prediction names the columns
        self.prediction_drift = PredictionDriftRule(subject, config.data_drift, self.rate)
        self.starvation = LabelStarvationRule(subject, config.starvation)
        self.subject = subject
        self.n_predictions = 0
        self.n_expired = 0
        self.last_prediction_ts = -math.inf  # event time of its newest prediction seen
        self.rejected = 0

    @property
    def classification(self) -> bool:
        return self.config.task == "classification"

    @property
    def baseline_mse(self) -> float | None:
        return self.baseline.mse

    def process_pairs(self, pairs: list[dict[str, Any]]) -> list[Alert]:
        preds = np.fromiter((p["prediction"] for p in pairs), float, len(pairs))
        labels = np.fromiter((p["label"] for p in pairs), float, len(pairs))
        if self.classification:
            ok = ((labels == 0) | (labels == 1)) & (preds >= 0) & (preds <= 1)
            if not ok.all():
                self.rejected += int((~ok).sum())
                pairs = [p for p, good in zip(pairs, ok) if good]
                preds, labels = preds[ok], labels[ok]
            if not pairs:
                return []
        with np.errstate(over="ignore"):
            sq = (preds - labels) ** 2
        finite = np.isfinite(sq)  # 1e200 - 0 is finite, its square is not
        if not finite.all():
            self.rejected += int((~finite).sum())
            pairs = [p for p, good in zip(pairs, finite) if good]
            preds, labels, sq = preds[finite], labels[finite], sq[finite]
            if not pairs:
                return []
        self._served(pairs)
        first = self.rolling.count
        rolling = self.rolling.extend(preds, labels)
        applies_from = self.baseline.update(sq).applies_from
        concept = self.concept.update(preds, labels, sq)
        out = self.starvation.update(pairs, expired=False).alerts
        # The threshold applies once the baseline is set and the window is full.
        start = (max(applies_from, self.config.window - first - 1, 0)
                 if self.baseline.mse is not None else len(pairs))
        threshold = self.threshold.update(rolling, start, restarts=concept.positions)
        # What the two pair rules raise, in the order of the pairs; at one pair, a
        # detection (0) before a fire (1) before a resolve (2).
        steps = sorted([(i, 0) for i in concept.positions] + [(i, 1) for i in threshold.fires]
                       + [(i, 2) for i in threshold.resolves])
        for i, step in steps:
            ts, mse, n = pairs[i]["label_ts"], float(rolling[i]), first + i + 1
            if step == 2:
                out.extend(threshold.resolve(ts, mse, n, concept))
                continue
            alert = concept.fire(i, ts, mse, n) if step == 0 else threshold.fire(ts, mse, n)
            if alert:
                out.append(alert)
        return out

    def process_predictions(self, events: list[dict[str, Any]]) -> list[Alert]:
        self.n_predictions += len(events)
        self._served(events)
        self.alerts.reinstate(self.model, self.version)  # it serves again
        if self.data_drift is None:
            self.data_drift = DataDriftRule(self.subject, sorted(events[0]["features"]),
                                            self.config.data_drift, self.rate)
        return (self.data_drift.update(events).alerts
                + self.prediction_drift.update(events).alerts)

    def process_expired(self, events: list[dict[str, Any]]) -> list[Alert]:
        self.n_expired += len(events)
        return self.starvation.update(events, expired=True).alerts

    def _served(self, events: list[dict[str, Any]]) -> None:
        """The newest prediction time of predictions, or of pairs (their ``ts``)."""
        try:  # one C call per event in the common case: every event has a time
            newest = max(map(_TS, events), default=None)
        except (TypeError, KeyError):
            newest = max((e["ts"] for e in events if e.get("ts") is not None), default=None)
        if newest is not None and newest > self.last_prediction_ts:
            self.last_prediction_ts = newest

    def calibration(self) -> dict[str, Any]:
        """The budget's split and the thresholds it gave (config values where set)."""
        limits = {**(self.data_drift.limits_by_column() if self.data_drift else {}),
                  **self.prediction_drift.limits_by_column()}
        return {"false_alarm_budget": self.config.false_alarm_budget, "tests": self.tests,
                "rate_per_test": self.rate, "psi_limits": limits,
                "detector_params": {k: v for k, v in self.concept.detector.params.items()
                                    if isinstance(v, (int, float))}}

    def report(self) -> dict[str, Any]:
        """Current metrics, baseline, detector and drift state of this version."""
        metrics = (self.rolling.classification_report() if self.classification else {})
        psi = {**(self.data_drift.last_psi if self.data_drift else {}),
               **self.prediction_drift.last_psi}
        return {"model": self.model, "version": self.version, "task": self.config.task,
                **self.rolling.report(), **metrics, "baseline_mse": self.baseline.mse,
                "n_scored": self.rolling.count, "n_predictions": self.n_predictions,
                "n_expired": self.n_expired, "detector": self.concept.name,
                "drift_detections": self.concept.detections, "psi": psi,
                "calibration": self.calibration()}


BaselineLookup = Callable[[str, int | None], float | None]


class Monitor:
    """All models and versions; feed it scored pairs, predictions and expirations in order.

    ``baselines(model, version)``, when given, supplies a version's baseline MSE (the
    agent reads it from the registry's metadata), asked once per version.
    """

    def __init__(self, config: MonitorConfig, baselines: BaselineLookup | None = None) -> None:
        self.config = config
        self.baselines = baselines
        self.versions: dict[tuple[str, int | None], VersionMonitor] = {}
        self.books: dict[str, AlertBook] = {}
        self._touched: list[VersionMonitor] = []  # the versions the last call fed
        self.by_model: dict[str, list[VersionMonitor]] = {}  # each model's versions

    def version(self, model: str, version: int | None, features: int = 0) -> VersionMonitor:
        """The monitor of ``version``, made on its first event (``features``: how many
        features that event names, for the split of the false-alarm budget)."""
        key = (model, version)
        vm = self.versions.get(key)
        if vm is None:
            cfg = self.config.for_model(model)
            book = self.books.setdefault(model, AlertBook(cfg.cooldown))
            baseline = self.baselines(model, version) if self.baselines else None
            vm = self.versions[key] = VersionMonitor(model, version, cfg, book, baseline,
                                                     features)
            self.by_model.setdefault(model, []).append(vm)
        return vm

    def process_pairs(self, pairs: Iterable[dict[str, Any]]) -> list[Alert]:
        return self._dispatch(pairs, VersionMonitor.process_pairs)

    def process_predictions(self, events: Iterable[dict[str, Any]]) -> list[Alert]:
        out = self._dispatch(events, VersionMonitor.process_predictions)
        return out + supersede(self, {vm.model for vm in self._touched})

    def process_expired(self, events: Iterable[dict[str, Any]]) -> list[Alert]:
        return self._dispatch(events, VersionMonitor.process_expired)

    def _dispatch(self, events: Iterable[dict[str, Any]], method) -> list[Alert]:
        """Each version gets its events in their order; versions share no state."""
        events = events if isinstance(events, list) else list(events)
        keys = [(ev["model"], ev.get("version")) for ev in events]
        groups: dict[tuple[str, int | None], list[dict[str, Any]]]
        if keys and keys.count(keys[0]) == len(keys):  # the common case: one version
            groups = {keys[0]: events}
        else:
            groups = {}
            for key, ev in zip(keys, events):
                groups.setdefault(key, []).append(ev)
        out: list[Alert] = []
        self._touched = []
        for (model, version), group in groups.items():
            vm = self.version(model, version, len(group[0].get("features") or ()))
            self._touched.append(vm)
            out.extend(method(vm, group))
        return out
