"""The monitor of one version of one model (or of one segment of it): its metrics, its
alert rules, and its segments' monitors.

A batch of one version's events becomes a :class:`~.columns.Batch` once; the version's
metrics and rules read its arrays, and its segments' monitors views of one copy of it
in segment order. :class:`~driftline.agents.monitor.core.Monitor` makes one per
version it meets and feeds each its events in order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from driftline.agents.monitor import calibration
from driftline.agents.monitor.alerting import AlertBook
from driftline.agents.monitor.attribution import attribute, describe
from driftline.agents.monitor.categories import Vocabulary
from driftline.agents.monitor.class_estimation import ClassEstimation
from driftline.agents.monitor.classes import task_metrics
from driftline.agents.monitor.columns import Batch, Columns, Tail
from driftline.agents.monitor.config import ModelConfig
from driftline.agents.monitor.estimation import Reference, Stacked
from driftline.agents.monitor.metrics import Baseline, EventSpan, LabelDelays, RollingErrors
from driftline.agents.monitor.refusals import Refusals
from driftline.agents.monitor.rules import (
    CategoricalDriftRule,
    ConceptDriftRule,
    DataDriftRule,
    ErrorRules,
    EstimatedDegradationRule,
    Kind,
    LabelStarvationRule,
    MultivariateDriftRule,
    PredictionDriftRule,
    Rule,
    Seen,
    Subject,
    ThresholdRule,
)
from driftline.agents.monitor.rules.categorical_drift import ClassDriftRule
from driftline.agents.monitor.rules.quality import NewFeatures, features_report
from driftline.agents.monitor.rules.subject import Alert
from driftline.agents.monitor.segments import Segments, segment_predictions
from driftline.agents.monitor.warm import warm
from driftline.agents.monitor.window import Ring
from driftline.models.losses import BASELINE, NAMES
from driftline.models.wire.events import MAX_CLASSES
from driftline.models.wire.internal import Columnar


class VersionMonitor:
    """Everything the monitor knows about one version of one model, or (``segment``
    set) of one segment of it. With ``segments = true`` the version-wide monitor holds
    one such monitor per segment and feeds each the events of its segment.

    A batch of event dicts becomes a :class:`~.columns.Batch` once (:meth:`batch`); the
    version's rules read its arrays, and its segments' rules views of one copy of it in
    segment order, so a segment costs numpy calls on its share of the rows, not a
    second pass over the dicts."""

    def __init__(self, model: str, version: int | None, config: ModelConfig,
                 alerts: AlertBook, baseline_mse: float | None = None,
                 features: int = 0, segment: str | None = None,
                 columns: Columns | None = None,
                 label_delays: LabelDelays | None = None) -> None:
        self.model, self.version, self.config = model, version, config
        self.task = config.kind  # regression, binary or multiclass
        self.segment = segment
        self.label_delays = label_delays  # the model's histogram (version-wide monitors)
        self.alerts = alerts
        # The false-alarm budget split over this version's tests (the features its first
        # event names, numeric and categorical): each test's false alarms per prediction.
        # Each prediction meets the model-wide tests and, with segments on, its segment's.
        self.tests = calibration.count_tests(
            features, segments=2 if config.segments else 1,
            extra=int(config.estimation.enabled) + int(config.multivariate.enabled))
        self.rate = calibration.per_test_rate(config.false_alarm_budget, self.tests)
        self.rolling = RollingErrors(config.window)
        # The version's own baseline (registry metadata) wins over the model's (config
        # file); without either, the first `baseline_pairs` pairs set it.
        self.baseline = Baseline(config.baseline_pairs,
                                 baseline_mse if baseline_mse is not None else config.baseline_mse)
        subject = Subject(model, version, alerts, self.rolling, self.baseline, segment,
                          NAMES[BASELINE[self.task]])  # what rolling_mse measures
        # A classifier's error is 0/1: a multiclass one's predicted class is not the label,
        # a binary one's P(1) is on the wrong side of its decision threshold.
        self.concept = ConceptDriftRule(subject, config.concept_drift, self.task, self.rate,
                                        config.decision_threshold)
        self.threshold = ThresholdRule(subject, config.threshold)
        self.errors = ErrorRules(self.concept, self.threshold, config.window)
        self.data_drift: DataDriftRule | None = None  # the first prediction names the columns
        self.categorical_drift: CategoricalDriftRule | None = None  # likewise
        self.new_features: NewFeatures | None = None  # version-wide: feature_new
        self.prediction_drift: PredictionDriftRule | ClassDriftRule = (
            ClassDriftRule(subject, config.data_drift, self.rate) if self.task == "multiclass"
            else PredictionDriftRule(subject, config.data_drift, self.rate))
        self.starvation = LabelStarvationRule(subject, config.starvation)
        self.subject = subject
        self.n_predictions = 0
        # What the registry says of this version (see Monitor.version): False for a
        # version number the registry does not have of a model it knows.
        self.registered: bool | None = None
        self.n_expired = 0
        self.span = EventSpan()  # label times of its pairs, its trail: the dashboard's
        self.last_prediction_ts = -math.inf  # event time of its newest prediction seen
        self.refusals = Refusals()  # pairs that do not fit the task (version-wide)
        self.p_true = Ring(config.window)  # multiclass: P(true class) of the window's pairs
        # The columns (the first event's features, or the version's for a segment): the
        # rules, the estimator, the multivariate drift and the attribution read the
        # numeric rows; the categorical drift the categories' codes.
        self.columns: Columns | None = None
        self.reference: Reference | None = None   # the first labeled pairs
        self.reference_source = "first events"    # or "profile" (warm)
        self.recent: Tail | None = None            # the last `window` pairs
        if columns is not None:
            self._use(columns)
        self.estimated = (EstimatedDegradationRule(subject, config.estimation, config.window,
                                                   self.classification,
                                                   multiclass=self.task == "multiclass",
                                                   threshold=config.decision_threshold)
                          if config.estimation.enabled else None)
        # Per segment: metrics, concept drift, threshold, data drift and estimation (issue
        # #17); multivariate drift, prediction drift and label starvation are model-wide.
        self.multivariate = (MultivariateDriftRule(subject, config.multivariate)
                             if config.multivariate.enabled and segment is None else None)
        self.segments: dict[str, VersionMonitor] = {}
        self._segments = Segments(config.max_segments) if (
            config.segments and segment is None) else None
        self._stacked = Stacked()  # the segments' estimators, stacked
        self._wire()

    def _wire(self) -> None:
        """:attr:`rules` in the order they are fed, and the rules of each kind of batch:
        pairs go to label starvation then the error rules; predictions to data drift,
        prediction drift, estimation, multivariate drift; expiries to label starvation.
        Label starvation, prediction drift and multivariate drift are model-wide."""
        wide = self.segment is None
        self.rules: list[Rule] = [
            rule for rule in (self.starvation if wide else None, self.errors, self.data_drift,
                              self.categorical_drift, self.prediction_drift if wide else None,
                              self.estimated, self.multivariate) if rule is not None]
        self._watching = {kind: [rule for rule in self.rules if kind in rule.watches]
                          for kind in Kind}

    def _feed(self, seen: Seen) -> list[Alert]:
        """One batch through the rules that watch its kind: what they raised, in order."""
        out: list[Alert] = []
        for rule in self._watching[seen.kind]:
            out.extend(rule.update(seen).alerts)
        return out

    def _use(self, columns: Columns) -> None:
        self.columns = columns
        self.reference = Reference(self.config.estimation.reference_pairs, len(columns))
        self.recent = Tail(self.config.window, len(columns))

    def batch(self, events: list[dict[str, Any]], pairs: bool = False) -> Batch:
        """Events of this version (the first one it sees names its columns) as columns."""
        if self.columns is None:
            self._use(Columns.of([e.get("features") or {} for e in events],
                                 self.config.data_drift.max_categories, self._classes()))
        assert self.columns is not None
        return self.columns.batch(events, pairs)

    def batch_of(self, cols: Columnar, index: np.ndarray | None, pairs: bool) -> Batch:
        """Events of this version given as columns (those at ``index``; None: all) as a
        :class:`Batch` of this version's columns: what :meth:`batch` makes of the same
        events as dicts."""
        if self.columns is None:
            self._use(Columns(cols.names, cols.categories, self.config.data_drift.max_categories,
                              self._classes()))
        assert self.columns is not None
        return self.columns.batch_of(cols, index, pairs)

    def _classes(self) -> Vocabulary | None:
        """A multiclass version's classes (predictions' and labels'), at most MAX_CLASSES."""
        return Vocabulary(MAX_CLASSES) if self.task == "multiclass" else None

    def _by_segment(self, batch: Batch) -> tuple[Batch, list[tuple[VersionMonitor, int, int]]]:
        """The batch in segment order (one copy) and each segment's monitor with where its
        events are in it (``segments = true``; none otherwise)."""
        if self._segments is None:
            return batch, []
        order, runs = self._segments.split(batch.segment)
        ordered = batch if order is None else batch.take(order, segments=False)
        out = []
        for name, (start, end) in runs.items():
            vm = self.segments.get(name)
            if vm is None:
                vm = self.segments[name] = VersionMonitor(
                    self.model, self.version, self.config, self.alerts,
                    features=len(self.columns.known) if self.columns else 0, segment=name,
                    columns=self.columns)
            out.append((vm, start, end))
        return ordered, out

    def _segment_pairs(self, batch: Batch) -> list[Alert]:
        ordered, parts = self._by_segment(batch)
        out: list[Alert] = []
        for vm, start, end in parts:
            out.extend(vm._pairs(ordered.slice(start, end)))
        return out

    def _segment_predictions(self, batch: Batch) -> list[Alert]:
        return segment_predictions(self, batch)

    @property
    def classification(self) -> bool:
        """A binary classifier (labels 0/1, prediction = P(1))."""
        return self.task == "binary"

    @property
    def baseline_mse(self) -> float | None:
        return self.baseline.mse

    def process_pairs(self, pairs: list[dict[str, Any]]) -> list[Alert]:
        """Scored pairs of this version, in order."""
        return self.pairs(self.batch(pairs, pairs=True))

    def process_predictions(self, events: list[dict[str, Any]]) -> list[Alert]:
        """Prediction events of this version, in order."""
        return self.predictions(self.batch(events))

    def pairs(self, batch: Batch) -> list[Alert]:
        """Scored pairs as columns: their label delays, then the rules of the version and
        of its segments on the valid ones (checked once, here, for both)."""
        if self.label_delays is not None:
            label_ts = batch.label_ts
            known = label_ts[np.isfinite(label_ts)]
            self.label_delays.add(label_ts - batch.ts, float(known.max()) if len(known) else None)
        batch = self._valid(batch)
        if not len(batch):
            return []
        return self._pairs(batch) + self._segment_pairs(batch)

    def _valid(self, batch: Batch) -> Batch:
        """The pairs a rule can score (:class:`~.refusals.Refusals`: the others are counted
        by reason and dead-lettered)."""
        return self.refusals.valid(batch, self.task)

    def _pairs(self, batch: Batch) -> list[Alert]:
        """Valid scored pairs (:meth:`_valid`) through this monitor's metrics, then the
        rules that watch pairs."""
        preds, labels = batch.prediction, batch.label
        sq = self._squared(batch)
        if batch.p_true is not None:
            self.p_true.push(batch.p_true)
        self._served(batch)
        rows = batch.rows
        assert self.recent is not None
        # The estimator's fit is not a rule's update: it happens once, when the version's
        # reference fills, before the rolling errors take this batch (the alerts of the
        # predictions that waited for it report the metrics as they were then).
        waited = self._fit_estimator(batch)  # raised by predictions that waited for it
        scored = self.rolling.count
        rolling = self.rolling.extend(preds, labels, sq)
        self.span.add(batch.label_ts, rolling, scored)
        self.baseline.update(sq)
        out = self._feed(Seen(Kind.PAIRS, batch.label_ts, rows, preds, label=labels,
                              squared=sq, rolling=rolling, scored=scored))
        for i, alert in self.errors.fired:  # the alerts in `out`, explained in place
            self._attribute(alert, self.recent, rows[:i + 1], sq[:i + 1])
        self.recent.extend(rows, sq)
        return out + waited

    def _squared(self, batch: Batch) -> np.ndarray:
        """Each pair's squared error; a multiclass pair's is its 0/1 error (rolling_mse is
        the error rate)."""
        preds, labels = batch.prediction, batch.label
        out: np.ndarray = ((preds != labels).astype(float) if self.task == "multiclass"
                           else (preds - labels) ** 2)
        return out

    def _fit_estimator(self, batch: Batch) -> list[Alert]:
        """Valid pairs into the estimator's reference (and the attribution's) until it is
        full; then the estimator is fitted: the alerts of predictions that waited for it."""
        assert self.reference is not None
        preds, labels = batch.prediction, batch.label
        estimated = self.estimated
        if estimated is not None and isinstance(estimated.estimation, ClassEstimation):
            if not estimated.estimation.fitted and batch.proba is not None and \
                    estimated.estimation.add_reference(batch.proba, preds, labels):
                return estimated.fitted_now().alerts  # its reference: probabilities
        elif not self.reference.full and self.reference.add(batch.rows, preds, labels):
            if estimated is not None:
                return estimated.fit(*self.reference.arrays()).alerts
        return []

    def _attribute(self, alert: Alert, before: Tail, rows: np.ndarray,
                   sq: np.ndarray) -> None:
        """Add to ``alert`` the features that best explain the rise of the error, over the
        window ending at the pair that fired (``before``: the pairs before this batch),
        against the reference (:mod:`.attribution`)."""
        assert self.columns is not None and self.reference is not None
        if not self.reference.full:
            return
        ref_rows, ref_preds, ref_labels = self.reference.arrays()
        window = self.config.window
        recent_rows = np.concatenate((before.rows, rows))[-window:]
        recent_sq = np.concatenate((before.values, sq))[-window:]
        found = attribute(self.columns.names, ref_rows, (ref_preds - ref_labels) ** 2,
                          recent_rows, recent_sq)
        if found:
            alert["attribution"] = found
            alert["message"] += describe(found)

    def predictions(self, batch: Batch, expected: np.ndarray | None = None) -> list[Alert]:
        """Prediction events as columns (``expected``: their expected squared errors, if a
        version-wide monitor computed them for its segments)."""
        self.n_predictions += len(batch)
        self._served(batch)
        assert self.columns is not None
        if self.segment is None:
            self.alerts.reinstate(self.model, self.version)  # it serves again
        self._data_rules()
        out: list[Alert] = []
        if batch.new and self.new_features is not None:
            out += self.new_features.update(batch.new, batch.newest_ts or 0.0)
        out += self._feed(Seen(Kind.PREDICTIONS, batch.ts, batch.rows, batch.prediction,
                               expected=expected, codes=batch.codes, mismatch=batch.mismatch,
                               proba=batch.proba))
        return out + self._segment_predictions(batch)

    def _data_rules(self) -> None:
        """The rules made once the columns are known (the first predictions')."""
        assert self.columns is not None
        if self.data_drift is not None:
            return
        wide, cfg = self.segment is None, self.config.data_drift
        self.data_drift = DataDriftRule(self.subject, self.columns.names, cfg, self.rate,
                                        quality=wide)
        if self.columns.categorical:
            self.categorical_drift = CategoricalDriftRule(
                self.subject, self.columns.categorical, cfg, self.rate, quality=wide)
        if wide:
            self.new_features = NewFeatures(self.subject, set(self.columns.known))
        self._wire()

    def warm(self, rows: list[dict[str, Any]]) -> None:
        """The references from a reference profile's rows (:func:`.warm.warm`)."""
        warm(self, rows)

    def process_expired(self, events: list[dict[str, Any]]) -> list[Alert]:
        """Expired predictions: label starvation, model-wide only."""
        self.n_expired += len(events)
        ts = np.array([e.get("expired_ts", e.get("label_ts", 0.0)) for e in events], float)
        return self._feed(Seen(Kind.EXPIRED, ts))

    def _served(self, batch: Batch) -> None:
        """The newest prediction time of predictions, or of pairs (their ``ts``): whether
        the version still serves (:mod:`.superseded`, version-wide only)."""
        if self.segment is not None:
            return
        newest = batch.newest_ts
        if newest is not None and newest > self.last_prediction_ts:
            self.last_prediction_ts = newest

    def feature_types(self) -> dict[str, str]:
        """Each feature of the version's columns: ``numeric`` or ``categorical``."""
        return self.columns.types() if self.columns else {}

    def features(self) -> dict[str, dict[str, Any]]:
        """Per feature: type, drift statistic, limit, data-quality shares
        (:func:`~.rules.quality.features_report`)."""
        return features_report(self.columns, (self.data_drift, self.categorical_drift))

    def report(self) -> dict[str, Any]:
        """Current metrics, baseline, detector and drift state of this version."""
        metrics = task_metrics(self.task, self.rolling, self.config.decision_threshold,
                               self.columns.classes if self.columns else None, self.p_true)
        psi = {**(self.data_drift.last_psi if self.data_drift else {}),
               **(self.prediction_drift.last_psi
                  if isinstance(self.prediction_drift, PredictionDriftRule) else {})}
        report: dict[str, Any] = {
                  "model": self.model, "version": self.version, "segment": self.segment,
                  "task": self.task, **self.rolling.report(classes=self.task == "multiclass"),
                  **metrics, "baseline_mse": self.baseline.mse, "n_scored": self.rolling.count,
                  "n_predictions": self.n_predictions, "n_expired": self.n_expired,
                  "detector": self.concept.name, "drift_detections": self.concept.detections,
                  "psi": psi, "calibration": calibration.of_version(self),
                  "reference": self.reference_source, **self.span.report(),
                  "prediction_ts_max": (self.last_prediction_ts
                                        if math.isfinite(self.last_prediction_ts) else None),
                  "threshold_factor": self.config.threshold.factor,
                  "feature_types": self.feature_types(), "features": self.features(),
                  "prediction_drift": self.prediction_drift.last.get("prediction"),
                  **({"refused_pairs": dict(self.refusals.counts)}
                     if self.refusals.counts else {})}
        if self.new_features is not None and self.new_features.reported:
            report["new_features"] = list(self.new_features.reported)
        if self.estimated is not None:
            report.update(self.estimated.report())
        if self.multivariate is not None:
            report.update(self.multivariate.report())
        if self._segments is not None:
            report["segments"] = {name: vm.report() for name, vm in self.segments.items()}
        return report
