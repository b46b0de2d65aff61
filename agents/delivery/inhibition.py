"""Inhibition: while a retrain request for a model is open, its new alerts of the same
kind are not pushed (they are recorded ``inhibited``).

A request opens with its record on ``retrain`` and closes with the model event
(``promoted`` or ``rejected``, ``rolled_back`` too) that carries its ``request_id`` on
``models``. The delivery agent reads both topics itself, beside ``alerts``: the three
are keyed by model and co-partitioned, so one partition holds everything about a model
in order, a restart rebuilds the state by reading those partitions back (they are small),
and no second store (a Redis copy of the trigger's memory) can drift from what was
published. The request's kind is its alert's kind: the request names the alert
(``alert_id``), and the agent has read that alert on the same partition.

An alert is inhibited by an open request when it is of the same model and kind, fired
at or after the request's drift point (``since``, the event time of the alert that
made it), is not that alert itself, and is ``firing`` or the resolve of an inhibited
firing. The alert that made the request is always pushed.

>>> inh = Inhibitor()
>>> inh.on_alert({"alert_id": "m.v1.concept_drift.1.firing", "model": "m",
...               "kind": "concept_drift", "status": "firing", "ts": 100.0})
>>> inh.on_request({"request_id": "r1", "model": "m", "alert_id": "m.v1.concept_drift.1.firing",
...                 "since": 100.0, "ts": 101.0})
>>> later = {"alert_id": "m.v1.concept_drift.2.firing", "model": "m",
...          "kind": "concept_drift", "status": "firing", "ts": 150.0}
>>> inh.inhibited_by(later)
'r1'
>>> inh.on_model_event({"model": "m", "event": "promoted", "request_id": "r1"})
>>> inh.inhibited_by(later) is None
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from driftline.agents.delivery.payload import episode_id

CLOSING_EVENTS = ("promoted", "rejected", "rolled_back")
MAX_KINDS = 100_000  # alert ids remembered for their kind (alerts are few)


@dataclass
class OpenRequest:
    request_id: str
    model: str
    alert_id: str | None
    since: float


@dataclass
class Inhibitor:
    open: dict[str, OpenRequest] = field(default_factory=dict)   # request id -> request
    closed: set[str] = field(default_factory=set)                # request ids closed
    kinds: dict[str, str] = field(default_factory=dict)          # alert id -> kind
    inhibited: dict[str, str] = field(default_factory=dict)      # episode id -> request id

    def on_alert(self, alert: dict[str, Any]) -> None:
        """Remember an alert's kind (its request may come later)."""
        self.kinds[alert["alert_id"]] = alert["kind"]
        if len(self.kinds) > MAX_KINDS:
            del self.kinds[next(iter(self.kinds))]

    def on_request(self, request: dict[str, Any]) -> None:
        rid = request["request_id"]
        if rid in self.closed:  # the model event was read first
            return
        since = request.get("since")
        self.open[rid] = OpenRequest(rid, request["model"], request.get("alert_id"),
                                     float(request["ts"] if since is None else since))

    def on_model_event(self, event: dict[str, Any]) -> None:
        rid = event.get("request_id")
        if rid and event.get("event") in CLOSING_EVENTS:
            self.open.pop(rid, None)
            self.closed.add(rid)

    def inhibited_by(self, alert: dict[str, Any]) -> str | None:
        """The open request that inhibits ``alert``, or None; remembers an inhibited
        firing so its resolve is inhibited too."""
        episode = episode_id(alert["alert_id"])
        if alert["status"] == "resolved":
            return self.inhibited.pop(episode, None)
        for request in self.open.values():
            if (request.model == alert["model"] and request.alert_id != alert["alert_id"]
                    and request.alert_id is not None
                    and self.kinds.get(request.alert_id) == alert["kind"]
                    and float(alert["ts"]) >= request.since):
                self.inhibited[episode] = request.request_id
                return request.request_id
        return None
