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

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from driftline.agents.monitor.alerting import AlertBook
from driftline.agents.monitor.attribution import attribute, describe
from driftline.agents.monitor.columns import Columns, Tail
from driftline.agents.monitor.config import ModelConfig, MonitorConfig
from driftline.agents.monitor.estimation import Reference
from driftline.agents.monitor.metrics import Baseline, RollingErrors
from driftline.agents.monitor.rules import (
    ConceptDriftRule,
    DataDriftRule,
    EstimatedDegradationRule,
    LabelStarvationRule,
    MultivariateDriftRule,
    PredictionDriftRule,
    Subject,
    ThresholdRule,
)
from driftline.agents.monitor.rules.subject import Alert
from driftline.agents.monitor.segments import Segments


class VersionMonitor:
    """Everything the monitor knows about one version of one model, or (``segment``
    set) of one segment of it. With ``segments = true`` the version-wide monitor holds
    one such monitor per segment and feeds each the events of its segment."""

    def __init__(self, model: str, version: int | None, config: ModelConfig,
                 alerts: AlertBook, baseline_mse: float | None = None,
                 segment: str | None = None) -> None:
        self.model, self.version, self.config = model, version, config
        self.segment = segment
        self.alerts = alerts
        self.rolling = RollingErrors(config.window)
        # The version's own baseline (registry metadata) wins over the model's (config
        # file); without either, the first `baseline_pairs` pairs set it.
        self.baseline = Baseline(config.baseline_pairs,
                                 baseline_mse if baseline_mse is not None else config.baseline_mse)
        subject = Subject(model, version, alerts, self.rolling, self.baseline, segment)
        self.concept = ConceptDriftRule(subject, config.concept_drift, self.classification)
        self.threshold = ThresholdRule(subject, config.threshold)
        self.data_drift: DataDriftRule | None = None  # the first prediction names the columns
        self.prediction_drift = PredictionDriftRule(subject, config.data_drift)
        self.starvation = LabelStarvationRule(subject, config.starvation)
        self.subject = subject
        self.n_predictions = 0
        self.n_expired = 0
        self.rejected = 0
        # Set by the first event's features (:meth:`_start`): the estimator, the
        # multivariate drift and the attribution read feature rows.
        self.columns: Columns | None = None
        self.reference: Reference | None = None   # the first labeled pairs
        self.recent: Tail | None = None            # the last `window` pairs
        self.estimated = (EstimatedDegradationRule(subject, config.estimation, config.window,
                                                   self.classification)
                          if config.estimation.enabled else None)
        # Per segment: metrics, concept drift, threshold, data drift and estimation (issue
        # #17); multivariate drift, prediction drift and label starvation are model-wide.
        self.multivariate = (MultivariateDriftRule(subject, config.multivariate)
                             if config.multivariate.enabled and segment is None else None)
        self.segments: dict[str, VersionMonitor] = {}
        self._segments = Segments(config.max_segments) if (
            config.segments and segment is None) else None

    def _start(self, event: dict[str, Any]) -> Columns:
        if self.columns is None:
            self.columns = Columns(event.get("features") or {})
            width = len(self.columns)
            self.reference = Reference(self.config.estimation.reference_pairs, width)
            self.recent = Tail(self.config.window)
        return self.columns

    def _by_segment(self, events: list[dict[str, Any]], method) -> list[Alert]:
        """Each segment's monitor gets the events of its segment (``segments = true``)."""
        if self._segments is None:
            return []
        out: list[Alert] = []
        for name, group in self._segments.split(events).items():
            vm = self.segments.get(name)
            if vm is None:
                vm = self.segments[name] = VersionMonitor(
                    self.model, self.version, self.config, self.alerts, segment=name)
            out.extend(method(vm, group))
        return out

    @property
    def classification(self) -> bool:
        return self.config.task == "classification"

    @property
    def baseline_mse(self) -> float | None:
        return self.baseline.mse

    def process_pairs(self, pairs: list[dict[str, Any]]) -> list[Alert]:
        segmented = self._by_segment(pairs, VersionMonitor.process_pairs)
        return self._process_pairs(pairs) + segmented

    def _process_pairs(self, pairs: list[dict[str, Any]]) -> list[Alert]:
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
        columns = self._start(pairs[0])
        features = [p["features"] for p in pairs]
        assert self.reference is not None and self.recent is not None
        waited: list[Alert] = []  # raised by predictions that waited for the estimator
        if not self.reference.full and self.reference.add(columns.rows(features), preds,
                                                          labels):
            if self.estimated is not None:
                waited = self.estimated.fit(*self.reference.arrays()).alerts
        before = (self.recent.features, self.recent.values)
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
                out.append(self._attribute(alert, before, features[:i + 1], sq[:i + 1]))
        self.recent.extend(features, sq)
        return out + waited

    def _attribute(self, alert: Alert, before: tuple[list[dict[str, float]], np.ndarray],
                   features: list[dict[str, float]], sq: np.ndarray) -> Alert:
        """The features that best explain the rise of the error, over the window ending at
        the pair that fired, against the reference (:mod:`.attribution`)."""
        assert self.columns is not None and self.reference is not None
        if not self.reference.full:
            return alert
        ref_rows, ref_preds, ref_labels = self.reference.arrays()
        window = self.config.window
        recent_rows = self.columns.rows((before[0] + features)[-window:])
        recent_sq = np.concatenate((before[1], sq))[-window:]
        found = attribute(self.columns.names, ref_rows, (ref_preds - ref_labels) ** 2,
                          recent_rows, recent_sq)
        if found:
            alert["attribution"] = found
            alert["message"] += describe(found)
        return alert

    def process_predictions(self, events: list[dict[str, Any]]) -> list[Alert]:
        self.n_predictions += len(events)
        if self.data_drift is None:
            self.data_drift = DataDriftRule(self.subject, sorted(events[0]["features"]),
                                            self.config.data_drift)
        columns = self._start(events[0])
        # One feature matrix for data drift, the estimator and the multivariate drift.
        rows = (columns.rows([e["features"] for e in events])
                if columns.names == self.data_drift.features and columns.names else None)
        out = self.data_drift.update(events, rows).alerts
        if self.segment is None:  # the prediction's own PSI: model-wide only
            out += self.prediction_drift.update(events).alerts
        if rows is None:
            rows = columns.rows([e["features"] for e in events])
        if self.estimated is not None:
            preds = np.fromiter((e["prediction"] for e in events), float, len(events))
            out += self.estimated.update(events, rows, preds).alerts
        if self.multivariate is not None:
            out += self.multivariate.update(events, rows).alerts
        return out + self._by_segment(events, VersionMonitor.process_predictions)

    def process_expired(self, events: list[dict[str, Any]]) -> list[Alert]:
        """Expired predictions: label starvation, model-wide only."""
        self.n_expired += len(events)
        return self.starvation.update(events, expired=True).alerts

    def report(self) -> dict[str, Any]:
        """Current metrics, baseline, detector and drift state of this version."""
        metrics = (self.rolling.classification_report() if self.classification else {})
        psi = {**(self.data_drift.last_psi if self.data_drift else {}),
               **self.prediction_drift.last_psi}
        report: dict[str, Any] = {
                  "model": self.model, "version": self.version, "segment": self.segment,
                  "task": self.config.task, **self.rolling.report(), **metrics,
                  "baseline_mse": self.baseline.mse, "n_scored": self.rolling.count,
                  "n_predictions": self.n_predictions, "n_expired": self.n_expired,
                  "detector": self.concept.name, "drift_detections": self.concept.detections,
                  "psi": psi}
        if self.estimated is not None:
            report.update(self.estimated.report())
        if self.multivariate is not None:
            report.update(self.multivariate.report())
        if self._segments is not None:
            report["segments"] = {name: vm.report() for name, vm in self.segments.items()}
        return report


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

    def version(self, model: str, version: int | None) -> VersionMonitor:
        key = (model, version)
        vm = self.versions.get(key)
        if vm is None:
            cfg = self.config.for_model(model)
            book = self.books.setdefault(model, AlertBook(cfg.cooldown))
            baseline = self.baselines(model, version) if self.baselines else None
            vm = self.versions[key] = VersionMonitor(model, version, cfg, book, baseline)
        return vm

    def process_pairs(self, pairs: Iterable[dict[str, Any]]) -> list[Alert]:
        return self._dispatch(pairs, VersionMonitor.process_pairs)

    def process_predictions(self, events: Iterable[dict[str, Any]]) -> list[Alert]:
        return self._dispatch(events, VersionMonitor.process_predictions)

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
        for (model, version), group in groups.items():
            out.extend(method(self.version(model, version), group))
        return out
