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


@dataclass
class Episode:
    number: int = 0
    firing: bool = False
    resolved_at: float | None = None


class AlertBook:
    def __init__(self, cooldown: float) -> None:
        self.cooldown = cooldown
        self.episodes: dict[AlertKey, Episode] = {}

    def is_firing(self, key: AlertKey) -> bool:
        episode = self.episodes.get(key)
        return episode is not None and episode.firing

    def fire(self, key: AlertKey, *, ts: float, severity: str, detector: str,
             metrics: dict[str, Any], message: str) -> dict[str, Any] | None:
        """A firing alert if ``key`` is not firing and out of its cooldown, else None."""
        episode = self.episodes.setdefault(key, Episode())
        if episode.firing:
            return None
        if episode.resolved_at is not None and ts < episode.resolved_at + self.cooldown:
            return None
        episode.number += 1
        episode.firing = True
        return _alert(key, episode.number, "firing", ts, severity, detector, metrics, message)

    def resolve(self, key: AlertKey, *, ts: float, metrics: dict[str, Any], message: str,
                detector: str = "") -> dict[str, Any] | None:
        """A resolved alert if ``key`` is firing, else None."""
        episode = self.episodes.get(key)
        if episode is None or not episode.firing:
            return None
        episode.firing = False
        episode.resolved_at = ts
        return _alert(key, episode.number, "resolved", ts, "warning", detector, metrics, message)


def alert_id(key: AlertKey, episode: int, status: str) -> str:
    version = "vnone" if key.version is None else f"v{key.version}"
    feature = f".{key.feature}" if key.feature is not None else ""
    segment = f".s:{key.segment}" if key.segment is not None else ""
    readable = f"{key.model}.{version}{segment}.{key.kind}{feature}.{episode}.{status}"
    if len(readable) <= 256:
        return readable
    digest = hashlib.blake2b(readable.encode(), digest_size=16).hexdigest()
    return f"{key.model}.{version}.{key.kind}.{digest}.{episode}.{status}"


def _alert(key: AlertKey, episode: int, status: str, ts: float, severity: str, detector: str,
           metrics: dict[str, Any], message: str) -> dict[str, Any]:
    return {"alert_id": alert_id(key, episode, status), "model": key.model,
            "version": key.version, "kind": key.kind, "status": status, "severity": severity,
            "detector": detector, "feature": key.feature, "segment": key.segment, "ts": ts,
            "metrics": metrics, "message": message}
