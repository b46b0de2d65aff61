"""``GET /metrics``: the worker's state in the Prometheus exposition format.

Everything is read from the agents at scrape time, so the hot path pays nothing.
Counters of the join are this process's since it started (Prometheus handles the
reset on restart); per-model values come from the monitor partitions this worker
owns, so summing over workers never counts a model twice. Names follow Prometheus
conventions: base units, ``_total`` for counters.

========================================  =========  ==================================
``driftline_events_consumed_total``       counter    ``kind``: prediction, label
``driftline_pairs_scored_total``          counter    scored pairs made by the join
``driftline_duplicates_total``            counter    ``kind``: prediction, label
``driftline_predictions_expired_total``   counter    unlabelled after the join TTL
``driftline_dead_letters_total``          counter    ``reason``: the error kind
``driftline_timestamps_clamped_total``    counter    ``kind``: event ts ahead of the clock
``driftline_join_shed_total``             counter    ``kind``: waiting entries past the cap
``driftline_internal_errors_total``       counter    ``agent``: records an agent could not
                                                     process, dead-lettered (issue 29)
``driftline_handler_failures_total``      counter    ``agent``: batch handler calls (and
                                                     timer ticks) that raised
``driftline_io_retries_total``            counter    ``agent``: ... and waited on I/O
``driftline_dead_letters_unsent_total``   counter    ``topic``: dead letters Kafka refused
``driftline_label_delay_seconds``         histogram  label time - prediction time
``driftline_rolling_mse``                 gauge      ``model``, ``version``
``driftline_baseline_mse``                gauge      ``model``, ``version``
``driftline_version_pairs_total``         counter    ``model``, ``version``
``driftline_estimated_mse``               gauge      ``model``, ``version``: DLE / CBPE
``driftline_multivariate_z``              gauge      ``model``, ``version``: PCA drift
``driftline_classifier_metric``           gauge      ``model``, ``version``, ``metric``: a
                                                     classifier's rolling accuracy, f1,
                                                     roc_auc, pr_auc, macro_f1, log_loss,
                                                     and estimated_accuracy, ...
``driftline_feature_drift``               gauge      ``model``, ``version``, ``feature``,
                                                     ``statistic`` (psi, chi2): the latest
``driftline_feature_drift_limit``         gauge      ... and its limit (over it: a breach)
``driftline_feature_missing_share``       gauge      ``model``, ``version``, ``feature``:
                                                     missing over the drift window
``driftline_segment_rolling_mse``         gauge      ``model``, ``version``, ``segment``
``driftline_segment_estimated_mse``       gauge      ``model``, ``version``, ``segment``
``driftline_alerts_firing``               gauge      ``model``, ``kind``
``driftline_monitor_refused_events_total``  counter  ``reason``: too_many_models, ...
``driftline_monitor_versions_evicted_total``  counter  quiet versions dropped for room
``driftline_monitor_refused_pairs_total``  counter  ``model``, ``version``, ``reason``: pairs
                                                     that do not fit the model's task
``driftline_alerts_total``                counter    ``model``, ``kind``: episodes fired
``driftline_retrain_requests_total``      counter    ``model``
``driftline_promotions_total``            counter    ``model``
``driftline_rollbacks_total``             counter    ``model`` (the canary's and by hand)
``driftline_shadow_mse``                  gauge      ``model``, ``version``, ``role``,
                                                     ``metric``: a challenger's shadow MSE,
                                                     a canary's (a classifier's: log loss)
``driftline_alert_deliveries_total``      counter    ``target``, ``outcome``: delivery records
``driftline_bad_records_total``           counter    ``topic``: malformed records the
                                                     dashboard's reader skipped
``driftline_consumer_lag_records``        gauge      ``topic``, ``partition``
``driftline_event_time_lag_seconds``      gauge      ``model``: now - newest label time
========================================  =========  ==================================
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from driftline.agents.guard import TROUBLES
from driftline.kafka import partition_for


class _Collector:
    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self):
        return iter(self.families)


async def exposition(app, state) -> tuple[bytes, str]:
    families = list(_join_families(app.driftline.get("join")))
    families += _trouble_families()
    monitor = app.driftline.get("monitor")
    owned: set[int] = set(monitor.parts) if monitor is not None else set()
    families += _monitor_families(monitor)
    families += _loop_families(app, state, owned)
    families += [await _lag_family(app, state.settings.topic_prefix)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(families))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _join_families(joiner) -> list:
    consumed = CounterMetricFamily("driftline_events_consumed", "Prediction and label events "
                                   "read by the join.", labels=["kind"])
    scored = CounterMetricFamily("driftline_pairs_scored", "Scored pairs made by the join.")
    duplicates = CounterMetricFamily("driftline_duplicates", "Re-sent events the join "
                                     "recognised.", labels=["kind"])
    expired = CounterMetricFamily("driftline_predictions_expired", "Predictions that got no "
                                  "label within DRIFTLINE_JOIN_TTL.")
    dead = CounterMetricFamily("driftline_dead_letters", "Refused inputs sent to the "
                               "dead-letter topic.", labels=["reason"])
    stats = joiner.stats if joiner is not None else Counter()
    for kind in ("prediction", "label"):
        consumed.add_metric([kind], stats[f"{kind}s"])
        duplicates.add_metric([kind], stats[f"duplicate_{kind}s"])
    scored.add_metric([], stats["scored"])
    expired.add_metric([], stats["expired_predictions"])
    shed = CounterMetricFamily("driftline_join_shed", "Waiting predictions and labels expired "
                               "early: past DRIFTLINE_JOIN_MAX_PENDING in their partition.",
                               labels=["kind"])
    clamped = CounterMetricFamily("driftline_timestamps_clamped", "Event times later than "
                                  "the worker's clock + DRIFTLINE_MAX_FUTURE_SKEW, clamped "
                                  "to the clock.", labels=["kind"])
    for kind in ("prediction", "label"):
        clamped.add_metric([kind], joiner.clamped[kind] if joiner is not None else 0)
        shed.add_metric([kind], stats[f"shed_{kind}s"])
    reasons = Counter(joiner.dead_letters if joiner is not None else {})
    reasons["internal_error"] += sum(TROUBLES.internal_errors.values())
    for reason, count in sorted(reasons.items()):
        dead.add_metric([reason], count)
    return [consumed, scored, duplicates, expired, dead, clamped, shed]


def _trouble_families() -> list:
    """What went wrong inside this process's agents and timers (agents/guard.py)."""
    internal = CounterMetricFamily("driftline_internal_errors", "Records an agent could not "
                                   "process after its retries, dead-lettered as "
                                   "internal_error.", labels=["agent"])
    failures = CounterMetricFamily("driftline_handler_failures", "Batch handler calls and "
                                   "timer ticks that raised.", labels=["agent"])
    io = CounterMetricFamily("driftline_io_retries", "Batch handler calls that raised an I/O "
                             "error and were retried.", labels=["agent"])
    unsent = CounterMetricFamily("driftline_dead_letters_unsent", "Dead letters Kafka "
                                 "refused for good (logged, passed over).", labels=["topic"])
    for family, counts in ((internal, TROUBLES.internal_errors),
                           (failures, TROUBLES.failures), (io, TROUBLES.io_retries),
                           (unsent, TROUBLES.unsent)):
        for name, count in sorted(counts.items()):
            family.add_metric([name], count)
    return [internal, failures, io, unsent]


def _monitor_families(monitor) -> list:
    mse = GaugeMetricFamily("driftline_rolling_mse", "Rolling MSE over the version's window.",
                            labels=["model", "version"])
    baseline = GaugeMetricFamily("driftline_baseline_mse", "The version's baseline MSE.",
                                 labels=["model", "version"])
    pairs = CounterMetricFamily("driftline_version_pairs", "Scored pairs of the version.",
                                labels=["model", "version"])
    estimated = GaugeMetricFamily("driftline_estimated_mse", "Estimated MSE before labels "
                                  "(DLE; CBPE's expected Brier score).",
                                  labels=["model", "version"])
    multivariate = GaugeMetricFamily("driftline_multivariate_z", "PCA reconstruction error of "
                                     "the last window vs the reference, in standard errors.",
                                     labels=["model", "version"])
    classifier = GaugeMetricFamily("driftline_classifier_metric", "A classifier's rolling "
                                   "metric (binary, multiclass) and its estimates before "
                                   "labels.", labels=["model", "version", "metric"])
    # Features: at most 1,024 per event (the wire's limit), fixed per version.
    feature_labels = ["model", "version", "feature", "statistic"]
    drift = GaugeMetricFamily("driftline_feature_drift", "A feature's latest drift statistic "
                              "(PSI; chi-square for a categorical one).", labels=feature_labels)
    drift_limit = GaugeMetricFamily("driftline_feature_drift_limit", "The limit of a "
                                    "feature's drift statistic (over it: a breach).",
                                    labels=feature_labels)
    missing = GaugeMetricFamily("driftline_feature_missing_share", "A feature's share of "
                                "missing values over the drift window.",
                                labels=["model", "version", "feature"])
    # Segments: only those inside max_segments have a monitor (the rest pool as
    # "_other"), so the label's values are bounded.
    seg_mse = GaugeMetricFamily("driftline_segment_rolling_mse", "Rolling MSE of a segment.",
                                labels=["model", "version", "segment"])
    seg_estimated = GaugeMetricFamily("driftline_segment_estimated_mse", "Estimated MSE of a "
                                      "segment.", labels=["model", "version", "segment"])
    firing = GaugeMetricFamily("driftline_alerts_firing", "Alert episodes firing now.",
                               labels=["model", "kind"])
    fired = CounterMetricFamily("driftline_alerts", "Alert episodes fired.",
                                labels=["model", "kind"])
    delay = HistogramMetricFamily("driftline_label_delay_seconds", "Label time minus "
                                  "prediction time of scored pairs.", labels=["model"],
                                  unit="")
    event_lag = GaugeMetricFamily("driftline_event_time_lag_seconds", "Now minus the newest "
                                  "label time the monitor has applied.", labels=["model"])
    refused = CounterMetricFamily("driftline_monitor_refused_events", "Events the monitor's "
                                  "limits kept out ([limits] of the monitor config).",
                                  labels=["reason"])
    evicted = CounterMetricFamily("driftline_monitor_versions_evicted", "Quiet versions "
                                  "dropped to make room for a newer one of their model.")
    refused_pairs = CounterMetricFamily("driftline_monitor_refused_pairs", "Scored pairs that "
                                        "do not fit their model's task, dead-lettered.",
                                        labels=["model", "version", "reason"])
    reasons: Counter[str] = Counter()
    n_evicted = 0
    for part in (monitor.parts.values() if monitor is not None else ()):
        reasons.update(part.monitor.refused)
        n_evicted += part.monitor.evicted
    for reason in ("too_many_models", "too_many_versions", "unregistered"):
        refused.add_metric([reason], reasons[reason])
    evicted.add_metric([], n_evicted)
    now = time.time()
    for part in (monitor.parts.values() if monitor is not None else ()):
        for (model, version), vm in part.monitor.versions.items():
            labels = [model, str(version)]
            if vm.rolling.count:
                mse.add_metric(labels, vm.rolling.mse())
            if vm.baseline_mse is not None:
                baseline.add_metric(labels, vm.baseline_mse)
            pairs.add_metric(labels, vm.rolling.count)
            for reason, n in sorted(vm.refusals.counts.items()):
                refused_pairs.add_metric([*labels, reason], n)
            _estimates(vm, labels, estimated, multivariate)
            if vm.task != "regression":
                _classifier_metrics(vm, labels, classifier)
            for name, entry in vm.features().items():
                if "value" in entry:
                    drift.add_metric([*labels, name, entry["statistic"]], entry["value"])
                    drift_limit.add_metric([*labels, name, entry["statistic"]], entry["limit"])
                if "missing_share" in entry:
                    missing.add_metric([*labels, name], entry["missing_share"])
            for name, seg in vm.segments.items():
                if seg.rolling.count:
                    seg_mse.add_metric([*labels, name], seg.rolling.mse())
                _estimates(seg, [*labels, name], seg_estimated, None)
        counts_firing: Counter[tuple[str, str]] = Counter()
        counts_fired: Counter[tuple[str, str]] = Counter()
        for model, book in part.monitor.books.items():
            for key, episode in book.episodes.items():
                counts_fired[(model, key.kind)] += episode.number
                counts_firing[(model, key.kind)] += int(episode.firing)
        for (model, kind), n in sorted(counts_fired.items()):
            fired.add_metric([model, kind], n)
            firing.add_metric([model, kind], counts_firing[(model, kind)])
        for model, histogram in sorted(part.label_delays.items()):
            delay.add_metric([model], histogram.buckets(), histogram.total)
            if histogram.newest_label_ts is not None:
                event_lag.add_metric([model], max(0.0, now - histogram.newest_label_ts))
    return [mse, baseline, pairs, estimated, multivariate, classifier, drift, drift_limit,
            missing, seg_mse, seg_estimated, firing, fired, delay, event_lag, refused, evicted,
            refused_pairs]


CLASSIFIER_METRICS = ("accuracy", "precision", "recall", "f1", "log_loss", "brier", "roc_auc",
                      "pr_auc", "macro_f1", "weighted_f1")


def _classifier_metrics(vm, labels: list[str], family) -> None:
    """A classifier's rolling metrics and estimates, one sample each (None: left out)."""
    report = vm.report()
    for name in CLASSIFIER_METRICS:
        for key in (f"rolling_{name}", f"estimated_{name}"):
            value = report.get(key)
            if isinstance(value, (int, float)):
                family.add_metric([*labels, key], value)


def _estimates(vm, labels: list[str], estimated, multivariate) -> None:
    if vm.estimated is not None:
        value = vm.estimated.estimation.report()["estimated_mse"]
        if value is not None:
            estimated.add_metric(labels, value)
    last = vm.multivariate.drift.last if vm.multivariate is not None else None
    if multivariate is not None and last is not None:
        multivariate.add_metric(labels, last.z)


def _loop_families(app, state, owned: set[int]) -> list:
    requests = CounterMetricFamily("driftline_retrain_requests", "Retrain requests the "
                                   "trigger published.", labels=["model"])
    promotions = CounterMetricFamily("driftline_promotions", "Versions promoted "
                                     "(model events).", labels=["model"])
    trigger = app.driftline.get("trigger")
    per_model: Counter[str] = Counter()
    for counts in (trigger.requested.values() if trigger is not None else ()):
        per_model.update(counts)
    for model, n in sorted(per_model.items()):
        requests.add_metric([model], n)
    rollbacks = CounterMetricFamily("driftline_rollbacks", "Champions rolled back (model "
                                    "events).", labels=["model"])
    shadow = GaugeMetricFamily("driftline_shadow_mse", "MSE of a challenger in shadow, or of "
                               "a new champion in its canary, on live pairs (a classifier's: "
                               "its promotion metric, label metric).",
                               labels=["model", "version", "role", "metric"])
    n = state.settings.partitions
    for model, events in sorted(state.observatory.events.items()):
        if partition_for(model.encode(), n) in owned:  # one worker reports each model
            promotions.add_metric([model], sum(1 for e in events if e.get("event") == "promoted"))
            rollbacks.add_metric([model], sum(1 for e in events
                                              if e.get("event") == "rolled_back"))
    for model, watched in sorted(state.observatory.shadow.items()):
        if partition_for(model.encode(), n) in owned:
            for (role, version), report in sorted(watched.items(), key=str):
                metric = report.get("metric", "mse")
                if report.get(f"rolling_{metric}") is not None:
                    shadow.add_metric([model, str(version), str(role), metric],
                                      report[f"rolling_{metric}"])
    deliveries = CounterMetricFamily("driftline_alert_deliveries", "Alert delivery outcomes "
                                     "(records on alert-deliveries).",
                                     labels=["target", "outcome"])
    totals: Counter[tuple[str, str]] = Counter()
    monitor = app.driftline.get("monitor")
    # Partitions numbered alike: each record is reported by the one worker that owns its
    # monitor partition (assigned, whether or not a pair has arrived there yet).
    assigned = owned | (monitor.parts.assigned if monitor is not None else set())
    for q, counts in state.observatory.delivery_counts.items():
        if q in assigned:
            totals.update(counts)
    for (target, outcome), count in sorted(totals.items()):
        deliveries.add_metric([target, outcome], count)
    # Every worker's reader reads (and skips) every record; the owner of its partition
    # number reports it, as above.
    bad = CounterMetricFamily("driftline_bad_records", "Malformed records on metrics, "
                              "alerts, models and alert-deliveries that the dashboard's "
                              "reader skipped.", labels=["topic"])
    for topic, count in state.observatory.bad_record_totals(assigned).items():
        bad.add_metric([topic], count)
    return [requests, promotions, rollbacks, shadow, deliveries, bad]


async def _lag_family(app, prefix: str) -> Any:
    lag = GaugeMetricFamily("driftline_consumer_lag_records", "Records on the partition not "
                            "yet fetched by this worker.", labels=["topic", "partition"])
    consumer = app.consumer
    for tp in sorted(consumer.assignment()):
        if not tp.topic.startswith(prefix):  # Faust's own (the assignor's leader topic)
            continue
        try:
            position = await consumer.position(tp)
            high = consumer.highwater(tp)
        except Exception:  # not fetched yet
            continue
        if position is not None and high is not None:
            lag.add_metric([tp.topic, str(tp.partition)], max(0, high - position))
    return lag
