"""What the dashboard and the HTTP API show: a view rebuilt from driftline's own topics.

:class:`Observatory` is fed the records of ``metrics`` (each version's report,
every ``DRIFTLINE_METRICS_INTERVAL`` s), ``alerts``, ``models`` (lifecycle
events) and ``alert-deliveries`` (the delivery outcomes); :func:`follow` feeds it
from Kafka, reading every partition, so every worker answers for every model
whichever partitions it owns. Bounded: a series of at most ``max_points`` per
version and ``max_alerts`` alerts per model.

Every record is checked before it is applied (:func:`admit`): alerts, model events and
delivery records by the wire layer's Structs, metrics records (driftline's own, with
no Struct) by their shape. A record that fails is skipped and counted per topic and
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
from typing import Any, TypeGuard

from aiokafka import TopicPartition

from driftline.agents.monitor.alerting import episode_of
from driftline.kafka import opened_reader, true_end_offset
from driftline.models.wire import ALERT, ALERT_DELIVERY, MODEL_EVENT, EventKind, unbatch
from driftline.models.wire.events import MODEL_RE, as_dict
from driftline.settings import Settings

log = logging.getLogger(__name__)

KINDS = ("metrics", "alerts", "models", "alert_deliveries")
METRICS_HISTORY = 5_000  # records per metrics partition read back at start


WIRE: dict[str, EventKind[Any]] = {"alerts": ALERT, "models": MODEL_EVENT,
                                   "alert_deliveries": ALERT_DELIVERY}
MAX_VERSION = 2**63 - 1


def _number_or_null(x: Any) -> bool:
    return x is None or (isinstance(x, int | float) and not isinstance(x, bool)
                         and math.isfinite(x))


def _finite(x: Any) -> TypeGuard[float]:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


FEATURE_CELLS = 100  # features kept per record in the drift history, the most drifted


def feature_cells(features: Any) -> dict[str, tuple[float | None, float | None]]:
    """feature -> (drift statistic / its limit, missing share) of a report's ``features``
    (either None where the record has none; at most :data:`FEATURE_CELLS`, the highest
    ratios first: the record comes from a topic anybody can write).

    >>> feature_cells({"x0": {"value": 0.3, "limit": 0.25, "missing_share": 0.0},
    ...                "x1": {"type": "numeric"}, "x2": "junk"})
    {'x0': (1.2, 0.0), 'x1': (None, None)}
    """
    if not isinstance(features, dict):
        return {}
    out: dict[str, tuple[float | None, float | None]] = {}
    for name, f in features.items():
        if not isinstance(name, str) or not isinstance(f, dict):
            continue
        value, limit, missing = f.get("value"), f.get("limit"), f.get("missing_share")
        out[name] = (value / limit if _finite(value) and _finite(limit) and limit > 0
                     else None, missing if _finite(missing) else None)
    if len(out) > FEATURE_CELLS:
        kept = sorted(out, key=lambda n: -(out[n][0] or 0.0))[:FEATURE_CELLS]
        out = {n: out[n] for n in kept}
    return out


def _count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def metrics_record_ok(value: Any) -> bool:
    """A metrics record (the monitor's report of one version) has what the views read,
    of the types they expect.

    >>> metrics_record_ok({"model": "m", "version": 1, "rolling_mse": 1.5, "n_scored": 3})
    True
    >>> metrics_record_ok({"model": "m", "version": "1"}), metrics_record_ok([1])
    (False, False)
    """
    if not isinstance(value, dict):
        return False
    model, version = value.get("model"), value.get("version")
    if not isinstance(model, str) or not MODEL_RE.fullmatch(model):
        return False
    if version is not None and not (isinstance(version, int) and not isinstance(version, bool)
                                    and 1 <= version <= MAX_VERSION):
        return False
    if not all(_number_or_null(value.get(k)) for k in ("rolling_mse", "baseline_mse")):
        return False
    if not all(_count(value[k]) for k in ("n_scored", "n_predictions") if k in value):
        return False
    if not trail_ok(value.get("trail")):
        return False
    shadow, segments = value.get("shadow"), value.get("segments")
    return ((shadow is None or (isinstance(shadow, list)
                                and all(isinstance(w, dict) for w in shadow)))
            and (segments is None or (isinstance(segments, dict)
                                      and all(isinstance(s, dict) for s in segments.values()))))


MAX_TRAIL = 256  # samples a metrics record may carry (the monitor sends at most 64)


def trail_ok(trail: Any) -> bool:
    """A metrics record's ``trail`` (absent, or ``[[n_scored, label_ts, rolling], ...]``).

    >>> trail_ok([[250, 1.5e9, 0.9]]), trail_ok(None), trail_ok([[250, "x", 0.9]])
    (True, True, False)
    """
    return trail is None or (isinstance(trail, list) and len(trail) <= MAX_TRAIL and all(
        isinstance(s, list) and len(s) == 3 and _count(s[0]) and _finite(s[1])
        and _number_or_null(s[2]) for s in trail))


def admit(kind: str, raw: bytes | None) -> tuple[list[dict[str, Any]], int]:
    """The valid records in one message of topic ``kind`` (one record or a JSON array),
    as dicts, and how many were not valid.

    >>> admit("alerts", b'{"model": "m", "status": "firing"}')[1]
    1
    >>> admit("metrics", b'[{"model": "m", "version": 1}, {"model": 7}]')
    ([{'model': 'm', 'version': 1}], 1)
    """
    if kind in WIRE:
        good, bad = WIRE[kind].decode(raw)
        return [as_dict(e) for e in good], len(bad)
    try:
        values = unbatch(raw or b"")
    except ValueError:  # not JSON
        return [], 1
    ok = [v for v in values if metrics_record_ok(v)]
    return ok, len(values) - len(ok)


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
        # (model, version) -> (event time, feature_cells()) of its records, when they moved
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
                     value.get("n_scored", 0), event_ts if _number_or_null(event_ts) else None)
            if not points or points[-1][1:] != point[1:]:  # an idle version adds nothing
                points.append(point)
            cells = feature_cells(value.get("features"))
            if cells:
                history = self.drift.setdefault((model, version),
                                                deque(maxlen=self.max_points))
                entry = (point[4] if point[4] is not None else ts, cells)
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

    # --- reading -----------------------------------------------------------------

    def models(self) -> list[str]:
        return sorted(set(self.reports) | set(self.alerts) | set(self.events))

    def open_alerts(self, model: str | None = None) -> list[dict[str, Any]]:
        models = [model] if model else list(self.firing)
        return sorted((a for m in models for a in self.firing.get(m, {}).values()),
                      key=lambda a: a["ts"])

    def recent_alerts(self, model: str | None = None, status: str | None = None,
                      limit: int = 100, since: float = -math.inf,
                      until: float = math.inf) -> list[dict[str, Any]]:
        """The newest ``limit`` alerts of ``model`` (all: None) with ``status``, whose
        event time ``ts`` is in [since, until]."""
        models = [model] if model else list(self.alerts)
        found = [a for m in models for a in self.alerts.get(m, ())
                 if since <= a["ts"] <= until and (
                     status is None or a.get("status") == status
                     or (status == "open" and episode(a["alert_id"]) in self.firing.get(m, {})
                         and a.get("status") == "firing"))]
        return sorted(found, key=lambda a: a["ts"])[-limit:] if limit else []

    def series_of(self, model: str, since: float = -math.inf,
                  until: float = math.inf) -> dict[str, list[tuple[Any, ...]]]:
        """Each version's points whose event time (else, in an older record, publication
        time) is in [since, until]."""
        return {str(v): [p for p in points if since <= (p[4] if p[4] is not None else p[0])
                         <= until]
                for (m, v), points in self.series.items() if m == model}

    def feature_drift(self, model: str, since: float = -math.inf, until: float = math.inf,
                      bins: int = 48) -> dict[str, Any]:
        """Each feature's drift statistic over its limit in ``bins`` equal spans of event
        time from ``since`` (else the first record's) to ``until`` (else the newest's):
        the highest of the records of any version in a span (None: no record), and the
        feature's latest missing share. Features the most drifted first.

        >>> obs = Observatory()
        >>> for t, v in ((10.0, 0.1), (20.0, 0.4), (30.0, 0.2)):
        ...     obs.apply("metrics", {"model": "m", "version": 1, "label_ts_max": t,
        ...         "features": {"x0": {"value": v, "limit": 0.2, "missing_share": 0.0}}}, t)
        >>> obs.feature_drift("m", bins=2)["ratio"]
        {'x0': [0.5, 2.0]}
        """
        records = sorted((entry for (m, _), history in self.drift.items() if m == model
                          for entry in history if since <= entry[0] <= until),
                         key=lambda entry: entry[0])
        if not records:
            return {"features": [], "from": None, "to": None, "ratio": {}, "missing": {}}
        lo = since if math.isfinite(since) else records[0][0]
        hi = until if math.isfinite(until) else records[-1][0]
        width = (hi - lo) / bins
        ratio: dict[str, list[float | None]] = {}
        missing: dict[str, float | None] = {}
        for at, cells in records:
            b = min(bins - 1, int((at - lo) / width)) if width > 0 else bins - 1
            for name, (r, miss) in cells.items():
                row = ratio.setdefault(name, [None] * bins)
                if r is not None and (row[b] is None or r > row[b]):
                    row[b] = round(r, 4)
                if miss is not None or name not in missing:
                    missing[name] = miss
        top = {n: max((r for r in row if r is not None), default=-1.0)
               for n, row in ratio.items()}
        return {"features": sorted(ratio, key=lambda n: (-top[n], n)), "from": lo, "to": hi,
                "ratio": ratio, "missing": missing}

    def newest_event_ts(self, model: str) -> float | None:
        """The newest label time any version of ``model`` has reported."""
        seen = [r["label_ts_max"] for r in self.reports.get(model, {}).values()
                if _number_or_null(r.get("label_ts_max")) and r["label_ts_max"] is not None]
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
