"""When an alert becomes a retrain request: the trigger's policy, without Kafka.

The trigger agent (:mod:`driftline.agents.retrain.trigger`) feeds :class:`RetrainTrigger`
the ``alerts`` and ``metrics`` records of its partitions. Per model, from the
``retrain`` table of the monitoring config:

* a *firing* alert of one of ``kinds`` is **accepted** unless the model had an
  accepted alert less than ``cooldown`` seconds earlier, or ``max_per_hour``
  in the hour before it (both in the alerts' event time). A concept-drift and a
  threshold alert of the same drift therefore make one request;
* an accepted alert waits until its version has ``min_pairs`` more scored pairs
  than when it fired (the version's ``n_scored`` from the metrics records), then
  becomes one request;
* it is **dropped** instead if its episode resolves first, or if a newer version
  of the model is already scoring pairs (someone replaced the model meanwhile).

Acceptance depends only on the order of the alerts, and the request id only on
the alert id, so replaying the alerts partition after a crash makes the same
decisions and the same ids; the agent publishes an id only if it is not on the
``retrain`` partition yet.

>>> from driftline.agents.monitor.config import MonitorConfig
>>> trig = RetrainTrigger(MonitorConfig(), clock=lambda: 5.0)
>>> alert = {"alert_id": "m.v1.concept_drift.1.firing", "model": "m", "version": 1,
...          "kind": "concept_drift", "status": "firing", "ts": 100.0,
...          "metrics": {"n_scored": 2000}, "message": "Concept drift."}
>>> trig.on_alert(alert)
[]
>>> trig.on_metrics({"model": "m", "version": 1, "n_scored": 2499})
[]
>>> [r["request_id"] for r in trig.on_metrics({"model": "m", "version": 1, "n_scored": 2500})]
['m.v1.concept_drift.1.retrain']
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from driftline.agents.monitor.config import MonitorConfig
from driftline.models.wire.events import MAX_ID_CHARS

log = logging.getLogger(__name__)

HOUR = 3600.0


@dataclass
class Pending:
    alert: dict[str, Any]
    request_id: str
    start: int  # n_scored of the alert's version when it fired
    need: int   # n_scored at which the request goes out


def request_id_for(alert_id: str) -> str:
    """``houses.v1.concept_drift.1.firing`` -> ``houses.v1.concept_drift.1.retrain``.

    An id that would be too long (a firing's id of 256 characters gives 257) is cut and
    given a digest of the whole alert id, so that it stays unique and the same on replay:

    >>> len(request_id_for("m" * 249 + ".firing")), request_id_for("m" * 249 + ".firing")[-8:]
    (256, '.retrain')
    """
    made = alert_id.removesuffix(".firing") + ".retrain"
    if len(made) <= MAX_ID_CHARS:
        return made
    digest = hashlib.blake2b(alert_id.encode(), digest_size=16).hexdigest()
    return f"{alert_id[:MAX_ID_CHARS - len(digest) - len('..retrain')]}.{digest}.retrain"


class RetrainTrigger:
    def __init__(self, config: MonitorConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.seen: set[str] = set()                    # alert ids already applied
        self.accepted: dict[str, list[float]] = {}     # model -> event times of accepted alerts
        self.pending: dict[str, Pending] = {}          # request id -> waiting alert
        self.newest: dict[str, int] = {}               # model -> newest version with pairs
        self.decisions: list[tuple[str, str]] = []     # (alert or request id, what happened)

    def on_alert(self, alert: dict[str, Any]) -> list[dict[str, Any]]:
        """Apply one alert; returns the requests it makes ready at once (``min_pairs`` 0)."""
        alert_id = alert["alert_id"]
        if alert_id in self.seen:
            return []
        self.seen.add(alert_id)
        model = alert["model"]
        if alert["status"] == "resolved":
            rid = request_id_for(alert_id.removesuffix(".resolved") + ".firing")
            if self.pending.pop(rid, None) is not None:
                self._decide(rid, "dropped: the alert resolved before enough pairs arrived")
            return []
        policy = self.config.for_model(model).retrain
        if not policy.enabled or alert["kind"] not in policy.kinds:
            return []
        ts = float(alert["ts"])
        earlier = self.accepted.setdefault(model, [])
        last = max(earlier, default=None)
        if last is not None and ts < last + policy.cooldown:
            self._decide(alert_id, f"not retraining: within the {policy.cooldown:.0f} s cooldown "
                                   f"after the alert at {last:.0f}")
            return []
        if sum(1 for t in earlier if ts - HOUR < t <= ts) >= policy.max_per_hour:
            self._decide(alert_id, f"not retraining: {policy.max_per_hour} retrains in the "
                                   f"hour before it already")
            return []
        earlier.append(ts)
        del earlier[:-max(policy.max_per_hour, 1) - 1]  # older ones can no longer matter
        rid = request_id_for(alert_id)
        n_scored = alert["metrics"].get("n_scored")  # any metric value on the wire
        start = int(n_scored) if isinstance(n_scored, int | float) else 0
        self.pending[rid] = Pending(alert, rid, start, start + policy.min_pairs)
        self._decide(alert_id, f"accepted as {rid}: waiting for {policy.min_pairs} more pairs")
        if policy.min_pairs == 0:
            return [self._request(self.pending.pop(rid), None)]
        return []

    def on_metrics(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """A version's progress (a metrics record); returns the requests that are now ready."""
        model, version, n = record["model"], record.get("version"), record.get("n_scored", 0)
        if version is not None and n > 0 and version > self.newest.get(model, 0):
            self.newest[model] = version
        ready = []
        for rid, p in list(self.pending.items()):
            if p.alert["model"] != model:
                continue
            base = p.alert["version"]
            if base is not None and self.newest.get(model, 0) > base:
                del self.pending[rid]
                self._decide(rid, f"dropped: v{self.newest[model]} already serves {model}")
            elif base == version and n >= p.need:
                ready.append(self._request(self.pending.pop(rid), n))
        return ready

    def _request(self, p: Pending, n_scored: int | None) -> dict[str, Any]:
        alert = p.alert
        got = "" if n_scored is None else f"; {n_scored - p.start:,} pairs scored since"
        self._decide(p.request_id, "requested")
        return {"request_id": p.request_id, "model": alert["model"],
                "base_version": alert["version"], "alert_id": alert["alert_id"],
                "reason": f"{alert['kind']} alert {alert['alert_id']}{got}: "
                          f"{alert['message']}"[:4000],
                "ts": self.clock(), "since": float(alert["ts"])}

    def _decide(self, what: str, decision: str) -> None:
        self.decisions.append((what, decision))
        del self.decisions[:-1000]
        log.info("retrain trigger: %s %s", what, decision)
