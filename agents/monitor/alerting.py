"""Alert episodes: one ``firing`` per episode, one ``resolved`` when it clears, a cooldown.

An episode is keyed by (model, version, kind, feature, segment); the segment is
None for the model-wide rules, and then left out of the id (ids of before segments
are unchanged). Alert ids are derived
from the key and the episode number, so replaying the same input yields the same
ids; the monitor agent uses that to publish each alert exactly once.

>>> book = AlertBook(cooldown=60)
>>> key = AlertKey("m", 1, "metric_threshold", None)
>>> a = book.fire(key, ts=100.0, severity="warning", detector="threshold",
...               metrics={"rolling_mse": 3.0}, message="MSE is high.")
>>> a["alert_id"], a["status"]
('m.v1.metric_threshold.1.firing', 'firing')
>>> book.fire(key, ts=101.0, severity="warning", detector="threshold",
...           metrics={}, message="again") is None      # same episode: no new alert
True
>>> book.resolve(key, ts=110.0, metrics={}, message="back to normal.")["status"]
'resolved'
>>> book.fire(key, ts=130.0, severity="warning", detector="threshold",
...           metrics={}, message="x") is None           # within the cooldown
True

A version that a newer one replaced has its open episodes resolved with ``reason``
``superseded``, and opens none until it is served again:

>>> _ = book.fire(key, ts=400.0, severity="warning", detector="threshold", metrics={},
...               message="MSE is high.")
>>> [(a["status"], a["reason"]) for a in book.supersede("m", 1, ts=1000.0, message="v2")]
[('resolved', 'superseded')]
>>> book.fire(key, ts=2000.0, severity="warning", detector="threshold", metrics={},
...           message="x") is None
True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, NamedTuple


class AlertKey(NamedTuple):
    model: str
    version: int | None
    kind: str
    feature: str | None
    segment: str | None = None
    check: str | None = None  # data_quality: which check (one episode per check of a feature)


@dataclass
class Episode:
    number: int = 0
    firing: bool = False
    resolved_at: float | None = None
    detector: str = ""  # of the open episode's firing alert
    severity: str = "warning"  # likewise: its resolve carries it


class AlertBook:
    def __init__(self, cooldown: float) -> None:
        self.cooldown = cooldown
        self.episodes: dict[AlertKey, Episode] = {}
        self.superseded: set[tuple[str, int | None]] = set()  # (model, version): no new episodes

    def is_firing(self, key: AlertKey) -> bool:
        episode = self.episodes.get(key)
        return episode is not None and episode.firing

    def fire(self, key: AlertKey, *, ts: float, severity: str, detector: str,
             metrics: dict[str, Any], message: str) -> dict[str, Any] | None:
        """A firing alert if ``key`` is not firing and out of its cooldown, else None."""
        if (key.model, key.version) in self.superseded:
            return None
        episode = self.episodes.setdefault(key, Episode())
        if episode.firing:
            return None
        if episode.resolved_at is not None and ts < episode.resolved_at + self.cooldown:
            return None
        episode.number += 1
        episode.firing = True
        episode.detector = detector
        episode.severity = severity
        return _alert(key, episode.number, "firing", ts, severity, detector, metrics, message)

    def resolve(self, key: AlertKey, *, ts: float, metrics: dict[str, Any], message: str,
                detector: str = "", reason: str = "cleared") -> dict[str, Any] | None:
        """A resolved alert if ``key`` is firing, else None."""
        episode = self.episodes.get(key)
        if episode is None or not episode.firing:
            return None
        episode.firing = False
        episode.resolved_at = ts
        # The firing's severity: Alertmanager tells alerts apart by their labels, severity
        # among them, so a resolve of a critical alert that said "warning" ended nothing.
        return {**_alert(key, episode.number, "resolved", ts, episode.severity, detector, metrics,
                         message), "reason": reason}

    def supersede(self, model: str, version: int | None, *, ts: float, message: str,
                  metrics: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Resolve every open episode of ``version`` as ``superseded``; it opens no new one
        until :meth:`reinstate`. Returns the resolved alerts, in key order."""
        self.superseded.add((model, version))
        out = []
        for key in sorted((k for k in self.episodes if (k.model, k.version) == (model, version)
                           and self.episodes[k].firing), key=_order):
            alert = self.resolve(key, ts=ts, metrics=dict(metrics or {}), message=message,
                                 detector=self.episodes[key].detector, reason="superseded")
            if alert:
                out.append(alert)
        return out

    def reinstate(self, model: str, version: int | None) -> None:
        """``version`` serves predictions again: it may open episodes again."""
        self.superseded.discard((model, version))


def _order(key: AlertKey) -> tuple[str, str, str, str]:
    return key.kind, key.feature or "", key.segment or "", key.check or ""


MAX_ALERT_ID = 256  # the wire's limit on alert_id
STATUSES = ("firing", "resolved")


def alert_id(key: AlertKey, episode: int, status: str) -> str:
    """``{episode id}.{status}``: the firing and the resolve of an episode differ only in
    their last part, so every reader (delivery, Alertmanager's labels, the dashboard)
    finds the episode with :func:`episode_of`.

    Readable while the longest of the two ids fits in 256 characters; else the
    (model, version, segment, kind, feature) part is hashed, never the status, so a
    long feature or segment name still gives the firing and its resolve one episode:

    >>> key = AlertKey("m", 1, "data_drift", "f" * 300)
    >>> firing, resolved = alert_id(key, 2, "firing"), alert_id(key, 2, "resolved")
    >>> firing
    'm.v1.data_drift.hce4a527d10a793e2427a099cc8cd1bd5.2.firing'
    >>> episode_of(firing) == episode_of(resolved), len(resolved) <= 256
    (True, True)
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    version = "vnone" if key.version is None else f"v{key.version}"
    feature = f".{key.feature}" if key.feature is not None else ""
    segment = f".s:{key.segment}" if key.segment is not None else ""
    check = f".{key.check}" if key.check is not None else ""
    readable = f"{key.model}.{version}{segment}.{key.kind}{feature}{check}.{episode}"
    # Decided on the longer status, so both ids of an episode take the same form.
    if len(readable) + len(".resolved") <= MAX_ALERT_ID:
        return f"{readable}.{status}"
    # Issue 30: the digest once covered the status too, so a resolve's id named another
    # episode than its firing and never ended it downstream.
    name = f"{key.model}.{version}{segment}.{key.kind}{feature}{check}"
    digest = hashlib.blake2b(name.encode(), digest_size=16).hexdigest()
    return f"{key.model}.{version}.{key.kind}.h{digest}.{episode}.{status}"


def episode_of(alert_id: str) -> str:
    """The episode's id: ``m.v1.kind.1.firing`` -> ``m.v1.kind.1``; the firing and its
    resolve share it (an id without a status is its own episode).

    >>> episode_of("m.v1.kind.1.resolved"), episode_of("odd")
    ('m.v1.kind.1', 'odd')
    """
    head, _, status = alert_id.rpartition(".")
    return head if status in STATUSES and head else alert_id


def _alert(key: AlertKey, episode: int, status: str, ts: float, severity: str, detector: str,
           metrics: dict[str, Any], message: str) -> dict[str, Any]:
    return {"alert_id": alert_id(key, episode, status), "model": key.model,
            "version": key.version, "kind": key.kind, "status": status, "severity": severity,
            "detector": detector, "feature": key.feature, "segment": key.segment, "ts": ts,
            "metrics": metrics, "message": message}
