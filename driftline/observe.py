"""What the dashboard and the HTTP API show: a view rebuilt from driftline's own topics.

:class:`Observatory` is fed the records of ``metrics`` (each version's report,
every ``DRIFTLINE_METRICS_INTERVAL`` s), ``alerts``, ``models`` (lifecycle
events) and ``alert-deliveries`` (the delivery outcomes); :func:`follow` feeds it
from Kafka, reading every partition, so every worker answers for every model
whichever partitions it owns. Bounded: a series of at most ``max_points`` per
version (the heatmap's: drift and data quality of at most
:data:`~driftline.observe_records.FEATURE_CELLS` features a point)
and ``max_alerts`` alerts per model.

Every record is checked before it is applied
(:func:`~driftline.observe_records.admit`): alerts, model events and delivery records
by the wire layer's Structs, metrics records (driftline's own, with no Struct) by
their shape. A record that fails is skipped and counted per topic and
partition (``bad_records``; ``driftline_bad_records_total`` in ``/metrics``): one
malformed record on a topic anybody can write must not take the dashboard down.

>>> obs = Observatory()
>>> obs.apply("metrics", {"model": "m", "version": 1, "rolling_mse": 1.5, "baseline_mse": 1.0,
...                       "n_scored": 10, "n_predictions": 12, "n_expired": 0,
...                       "label_ts_max": 98.5}, ts=100.0)
>>> obs.apply("alerts", {"alert_id": "m.v1.metric_threshold.1.firing", "model": "m",
...                      "version": 1, "kind": "metric_threshold", "status": "firing",
...                      "ts": 99.0}, ts=100.0)
>>> [a["alert_id"] for a in obs.open_alerts("m")]
['m.v1.metric_threshold.1.firing']
>>> obs.series[("m", 1)][-1]
(100.0, 1.5, 1.0, 10, 98.5)
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from typing import Any

from aiokafka import TopicPartition

from driftline.agents.monitor.alerting import episode_of
from driftline.agents.monitor.config import DataDriftConfig
from driftline.kafka import opened_reader, true_end_offset
from driftline.observe_records import admit, feature_cells, finite, number_or_null
from driftline.settings import Settings

log = logging.getLogger(__name__)

KINDS = ("metrics", "alerts", "models", "alert_deliveries")
METRICS_HISTORY = 5_000  # records per metrics partition read back at start
# A performance point of a version (or of one of its segments), from its metrics records:
# realised and estimated metric at the record's event time (its newest label time). The
# estimate covers the predictions up to the record, so it leads the realised metric by
# the label delay: NannyML's reading, an estimate before the labels say so.
PERFORMANCE = ("event_ts", "rolling_mse", "baseline_mse", "estimated_mse",
               "estimated_baseline_mse", "n_scored")
MAX_SEGMENTS = 100  # segments per record kept (the monitor pools past max_segments)
# A feature's data quality beside its drift: the shares of missing values and of type
# mismatches, of values out of the reference's range (numeric) and of the most frequent
# category the reference never saw (categorical), over the monitor's window.
QUALITY_KINDS = ("missing", "mismatch", "out_of_range", "unseen")
QUALITY_WINDOW = DataDriftConfig().window  # the window the counts are over, by default


def episode(alert_id: str) -> str:
    """``m.v1.kind.1.firing`` -> ``m.v1.kind.1`` (firing and resolved share it): the one
    rule of :func:`driftline.agents.monitor.alerting.episode_of`, as delivery uses."""
    return episode_of(alert_id)


class Observatory:
    def __init__(self, max_points: int = 2_000, max_alerts: int = 500) -> None:
        self.max_points = max_points
        self.max_alerts = max_alerts
        self.reports: dict[str, dict[int | None, dict[str, Any]]] = {}
        # (model, version) -> (published, rolling_mse, baseline_mse, n_scored, event time)
        self.series: dict[tuple[str, int | None], deque[tuple[float, float | None,
                                                               float | None, int,
                                                               float | None]]] = {}
        # (model, version, segment or None) -> PERFORMANCE points of its records
        self.performance: dict[tuple[str, int | None, str | None],
                               deque[tuple[float, ...]]] = {}
        # (model, version) -> (event time, feature_cells()) of its records, when they moved:
        # the heatmap's drift and the data quality beside it, at most FEATURE_CELLS a record
        self.drift: dict[tuple[str, int | None], deque[tuple[float, dict[str, Any]]]] = {}
        self.alerts: dict[str, deque[dict[str, Any]]] = {}
        self.firing: dict[str, dict[str, dict[str, Any]]] = {}  # model -> episode -> alert
        self.events: dict[str, deque[dict[str, Any]]] = {}
        # model -> (role, version) -> the latest shadow or canary report
        self.shadow: dict[str, dict[tuple[Any, Any], dict[str, Any]]] = {}
        # alert-deliveries: the latest records, and per partition (target, outcome) counts
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=max_alerts)
        self.delivery_counts: dict[int, Counter[tuple[str, str]]] = {}
        # records skipped as malformed: (topic, partition) -> count
        self.bad_records: Counter[tuple[str, int]] = Counter()

    def feed(self, kind: str, topic: str, partition: int, raw: bytes | None,
             ts: float) -> None:
        """Apply the valid records of one message; count the others, never raise on them."""
        values, bad = admit(kind, raw)
        for value in values:
            try:
                self.apply(kind, value, ts, partition)
            except Exception:  # a record the checks let through: skipped the same way
                log.exception("a %s record could not be applied; skipped", topic)
                bad += 1
        if bad:
            self.bad_records[(topic, partition)] += bad
            total = sum(n for (t, _), n in self.bad_records.items() if t == topic)
            if total & (total - 1) == 0:  # 1, 2, 4, 8...: said, without flooding the log
                log.warning("%d malformed record(s) on %s skipped so far", total, topic)

    def bad_record_totals(self, partitions: set[int] | None = None) -> dict[str, int]:
        """Skipped records per topic (of ``partitions`` only, when given)."""
        totals: Counter[str] = Counter()
        for (topic, q), n in self.bad_records.items():
            if partitions is None or q in partitions:
                totals[topic] += n
        return dict(sorted(totals.items()))

    def apply(self, kind: str, value: dict[str, Any], ts: float,
              partition: int | None = None) -> None:
        if kind == "alert_deliveries":
            if isinstance(value.get("target"), str) and isinstance(value.get("outcome"), str):
                self.deliveries.append(value)
                self.delivery_counts.setdefault(partition or 0, Counter())[
                    (value["target"], value["outcome"])] += 1
            return
        model = value.get("model")
        if not isinstance(model, str):
            return
        if kind == "metrics":
            # A challenger's shadow score and new champions' canaries, on the record of the
            # version serving the model (agents/monitor/safeloop.py)
            for watch in value.get("shadow") or ():
                if isinstance(watch, dict):
                    self.shadow.setdefault(model, {})[(watch.get("role"),
                                                       watch.get("version"))] = {
                        **watch, "updated": ts}
            version = value.get("version")
            trail = value.get("trail") or ()
            self.reports.setdefault(model, {})[version] = {
                **{k: v for k, v in value.items() if k != "trail"}, "updated": ts}
            points = self.series.setdefault((model, version), deque(maxlen=self.max_points))
            # The rolling metric every so many pairs since the version's previous record
            # (a burst scored within one metrics interval is more than one point)
            for n, at, rolling in trail:
                if not points or n > points[-1][3]:
                    points.append((ts, rolling, value.get("baseline_mse"), n, at))
            # Published at ts (the wall clock); its place on the event-time axis is the
            # newest label time of the pairs it covers (None in an older record).
            event_ts = value.get("label_ts_max")
            point = (ts, value.get("rolling_mse"), value.get("baseline_mse"),
                     value.get("n_scored", 0), event_ts if number_or_null(event_ts) else None)
            # Before its first label a record has predictions only: their newest event time
            # places it (the wall clock, ts, is on another axis: older records only).
            served = value.get("prediction_ts_max")
            fallback = served if finite(served) else ts
            if not points or points[-1][1:] != point[1:]:  # an idle version adds nothing
                points.append(point)
            self._performance(model, version, None, value, point[4] or fallback)
            segments = value.get("segments") or {}
            for name in sorted(n for n in segments if len(n) <= 128)[:MAX_SEGMENTS]:
                report = segments[name]
                at = report.get("label_ts_max")
                self._performance(model, version, name, report,
                                  at if finite(at) else point[4] or fallback)
            cells = feature_cells(value.get("features"))
            if cells:
                history = self.drift.setdefault((model, version),
                                                deque(maxlen=self.max_points))
                entry = (point[4] if point[4] is not None else fallback, cells)
                if not history or history[-1] != entry:
                    history.append(entry)
        elif kind == "alerts":
            # The series is in publication time (the metrics records'), the alert's ts in
            # event time; the dashboard places it by when it was published.
            value = {**value, "published": ts}
            self.alerts.setdefault(model, deque(maxlen=self.max_alerts)).append(value)
            firing = self.firing.setdefault(model, {})
            if value.get("status") == "firing":
                firing[episode(value["alert_id"])] = value
            else:
                firing.pop(episode(value.get("alert_id", "")), None)
        elif kind == "models":
            self.events.setdefault(model, deque(maxlen=self.max_alerts)).append(value)

    def _performance(self, model: str, version: int | None, segment: str | None,
                     report: dict[str, Any], at: float) -> None:
        point = (at, *(report.get(k) if finite(report.get(k)) else None
                       for k in PERFORMANCE[1:-1]), report.get("n_scored", 0))
        if point[1] is None and point[3] is None:
            return  # neither realised nor estimated yet
        # a segment's points are a quarter of a version's: up to MAX_SEGMENTS of them
        points = self.performance.setdefault((model, version, segment), deque(
            maxlen=self.max_points if segment is None else self.max_points // 4))
        if not points or points[-1][1:] != point[1:]:
            points.append(point)

    # --- reading -----------------------------------------------------------------

    def models(self) -> list[str]:
        return sorted(set(self.reports) | set(self.alerts) | set(self.events))

    def open_alerts(self, model: str | None = None) -> list[dict[str, Any]]:
        models = [model] if model else list(self.firing)
        return sorted((a for m in models for a in self.firing.get(m, {}).values()),
                      key=lambda a: a["ts"])

    def recent_alerts(self, model: str | None = None, status: str | None = None,
                      limit: int = 100, since: float = -math.inf,
                      until: float = math.inf, offset: int = 0) -> list[dict[str, Any]]:
        """The newest ``limit`` alerts of ``model`` (all: None) with ``status``, whose
        event time ``ts`` is in [since, until], past the newest ``offset``; oldest first."""
        return self.alerts_page(model, status, limit, since, until, offset)[0]

    def alerts_page(self, model: str | None = None, status: str | None = None,
                    limit: int = 100, since: float = -math.inf, until: float = math.inf,
                    offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """:meth:`recent_alerts`, and how many alerts match in all (paging: the next
        page is at ``offset + limit`` while that is below the total).

        >>> obs = Observatory()
        >>> for t in (1.0, 2.0, 3.0):
        ...     obs.apply("alerts", {"alert_id": f"m.v1.k.{t:.0f}.firing", "model": "m",
        ...                          "status": "firing", "ts": t}, t)
        >>> page, total = obs.alerts_page("m", limit=2, offset=1)
        >>> [a["ts"] for a in page], total
        ([1.0, 2.0], 3)
        """
        models = [model] if model else list(self.alerts)
        found = [a for m in models for a in self.alerts.get(m, ())
                 if since <= a["ts"] <= until and (
                     status is None or a.get("status") == status
                     or (status == "open" and episode(a["alert_id"]) in self.firing.get(m, {})
                         and a.get("status") == "firing"))]
        found.sort(key=lambda a: a["ts"])
        end = len(found) - offset
        return (found[max(0, end - limit):max(0, end)] if limit else []), len(found)

    def series_of(self, model: str, since: float = -math.inf,
                  until: float = math.inf) -> dict[str, list[tuple[Any, ...]]]:
        """Each version's points whose event time (else, in an older record, publication
        time) is in [since, until]."""
        return {str(v): [p for p in points if since <= (p[4] if p[4] is not None else p[0])
                         <= until]
                for (m, v), points in self.series.items() if m == model}

    def feature_drift(self, model: str, since: float = -math.inf, until: float = math.inf,
                      bins: int = 48, limit: int | None = None, offset: int = 0,
                      window: int = QUALITY_WINDOW) -> dict[str, Any]:
        """Each feature's drift statistic over its limit in ``bins`` equal spans of event
        time from ``since`` (else the first record's) to ``until`` (else the newest's):
        the highest of the records of any version in a span (None: no record), and the
        feature's latest missing share. Features the most drifted first; those of the
        page (``limit`` from ``offset``) also with their data quality in the same spans
        (``quality``: the highest share of each of :data:`QUALITY_KINDS` the range saw
        above zero; out-of-range and unseen counts over ``window``, the monitor's
        data-drift window).

        >>> obs = Observatory()
        >>> for t, v, odd in ((10.0, 0.1, 0), (20.0, 0.4, 50), (30.0, 0.2, 20)):
        ...     obs.apply("metrics", {"model": "m", "version": 1, "label_ts_max": t,
        ...         "features": {"x0": {"value": v, "limit": 0.2, "missing_share": 0.0,
        ...                             "out_of_range_count": odd}}}, t)
        >>> drift = obs.feature_drift("m", bins=2)
        >>> drift["ratio"], drift["quality"]
        ({'x0': [0.5, 2.0]}, {'x0': {'out_of_range': [0.0, 0.05]}})
        """
        records = sorted((entry for (m, _), history in self.drift.items() if m == model
                          for entry in history if since <= entry[0] <= until),
                         key=lambda entry: entry[0])
        if not records:
            return {"features": [], "total": 0, "offset": offset, "from": None, "to": None,
                    "ratio": {}, "missing": {}, "quality": {}, "quality_window": window}
        lo = since if math.isfinite(since) else records[0][0]
        hi = until if math.isfinite(until) else records[-1][0]
        width = (hi - lo) / bins
        spans = [min(bins - 1, int((at - lo) / width)) if width > 0 else bins - 1
                 for at, _ in records]
        ratio: dict[str, list[float | None]] = {}
        missing: dict[str, float | None] = {}
        for b, (_, cells) in zip(spans, records, strict=True):
            for name, (r, miss, *_) in cells.items():
                row = ratio.setdefault(name, [None] * bins)
                if r is not None and (row[b] is None or r > row[b]):
                    row[b] = round(r, 4)
                if miss is not None or name not in missing:
                    missing[name] = miss
        top = {n: max((r for r in row if r is not None), default=-1.0)
               for n, row in ratio.items()}
        ranked = sorted(ratio, key=lambda n: (-top[n], n))
        page = ranked[offset:None if limit is None else offset + limit]
        # the page's data quality only: a second pass over its features, not all of them
        quality: dict[str, dict[str, list[float | None]]] = {n: {} for n in page}
        for b, (_, cells) in zip(spans, records, strict=True):
            for name in page:
                cell = cells.get(name)
                if cell is None:
                    continue
                _, miss, mismatch, odd, unseen = cell
                for kind, share in zip(QUALITY_KINDS, (
                        miss, mismatch, None if odd is None else odd / window,
                        None if unseen is None else unseen / window), strict=True):
                    if share is not None:
                        row = quality[name].setdefault(kind, [None] * bins)
                        if row[b] is None or share > row[b]:
                            row[b] = round(share, 4)
        return {"features": page, "total": len(ranked), "offset": offset, "from": lo, "to": hi,
                "ratio": {n: ratio[n] for n in page}, "missing": {n: missing[n] for n in page},
                # a kind zero (or not checked) all through the range is left out
                "quality": {n: {k: row for k, row in kinds.items() if any(row)}
                            for n, kinds in quality.items()},
                "quality_window": window}

    def performance_of(self, model: str, segment: str | None = None,
                       since: float = -math.inf,
                       until: float = math.inf) -> dict[str, list[tuple[float, ...]]]:
        """Each version's :data:`PERFORMANCE` points (of ``segment``; None: the whole
        model) whose event time is in [since, until], oldest first.

        >>> obs = Observatory()
        >>> obs.apply("metrics", {"model": "m", "version": 1, "rolling_mse": 1.2,
        ...     "estimated_mse": 1.5, "n_scored": 9, "label_ts_max": 50.0,
        ...     "segments": {"eu": {"rolling_mse": 2.0, "n_scored": 4}}}, 60.0)
        >>> obs.performance_of("m"), obs.performance_of("m", "eu")
        ({'1': [(50.0, 1.2, None, 1.5, None, 9)]}, {'1': [(50.0, 2.0, None, None, None, 4)]})
        """
        return {str(v): [p for p in points if since <= p[0] <= until]
                for (m, v, s), points in self.performance.items()
                if m == model and s == segment}

    def segments_of(self, model: str) -> list[str]:
        """The segments any version of ``model`` has reported metrics of."""
        return sorted({s for (m, _, s) in self.performance if m == model and s is not None})

    def newest_event_ts(self, model: str) -> float | None:
        """The newest label time any version of ``model`` has reported."""
        seen = [r["label_ts_max"] for r in self.reports.get(model, {}).values()
                if number_or_null(r.get("label_ts_max")) and r["label_ts_max"] is not None]
        return max(seen) if seen else None

    def recent_deliveries(self, alert_id: str | None = None,
                          limit: int = 100) -> list[dict[str, Any]]:
        found = [d for d in self.deliveries if alert_id is None or d.get("alert_id") == alert_id]
        return found[-limit:]


async def follow(observatory: Observatory, settings: Settings) -> None:
    """Feed ``observatory`` from the topics: their recent history, then as records come."""
    topics = {settings.topic(kind): kind for kind in KINDS}
    async with opened_reader(settings) as consumer:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        consumer.assign(tps)
        for tp in tps:
            end = await true_end_offset(consumer, tp)
            start = max(0, end - METRICS_HISTORY) if topics[tp.topic] == "metrics" else 0
            consumer.seek(tp, start)
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=5_000)
            for tp, records in batches.items():
                kind = topics[tp.topic]
                for r in records:
                    observatory.feed(kind, tp.topic, tp.partition, r.value,
                                     r.timestamp / 1000)
