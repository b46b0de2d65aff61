"""The prediction-label join of one partition, as a plain state machine.

No Kafka in here: :mod:`driftline.agents.join.agent` feeds it decoded events and
persists what :meth:`PartitionJoin.drain` hands back. Every change to the
state is also returned as a *state record* (``prediction_id`` -> JSON-able
value, ``None`` = delete), which the agent appends to the partition's
compacted ``join-state`` topic; replaying those records through
:meth:`PartitionJoin.restore` rebuilds the same state after a crash.

An id is in exactly one of three maps:

* ``predictions`` - a prediction waiting for its label;
* ``labels``      - a label that came first, waiting for its prediction;
* ``done``        - already scored; later copies of either side are duplicates.

>>> j = PartitionJoin(ttl=60, dedupe_window=60)
>>> j.add_label({"prediction_id": "a", "label": 1.0, "ts": 5.0}, now=10)
>>> j.add_prediction({"prediction_id": "a", "model": "m", "version": 1,
...                   "prediction": 3.0, "features": {}, "ts": 4.0}, now=11)
>>> j.add_label({"prediction_id": "a", "label": 1.0, "ts": 5.0}, now=12)
>>> scored, records = j.drain()
>>> [(s["prediction_id"], s["error"]) for s in scored], records
([('a', 2.0)], {'a': {'s': 'd', 't': 11}})
>>> j.stats["duplicate_labels"]
1
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from driftline.models.events import make_scored

Event = dict[str, Any]
StateRecord = dict[str, Any] | None

PENDING_PREDICTION = "p"
PENDING_LABEL = "l"
DONE = "d"


@dataclass
class Expired:
    """What a sweep removed: predictions that never got a label, and orphan labels."""

    predictions: list[Event] = field(default_factory=list)
    labels: list[Event] = field(default_factory=list)
    forgotten: int = 0  # done ids older than the dedupe window


class PartitionJoin:
    """Join state of one partition. ``now`` is wall-clock seconds, passed in by the caller."""

    def __init__(self, ttl: float, dedupe_window: float) -> None:
        self.ttl = ttl
        self.dedupe_window = dedupe_window
        # Insertion order is arrival order, so sweeps stop at the first live entry.
        self.predictions: dict[str, tuple[Event, float]] = {}
        self.labels: dict[str, tuple[Event, float]] = {}
        self.done: dict[str, float] = {}
        self.stats: Counter[str] = Counter()
        # Next offset of this partition of the scored topic; kept by the agent.
        self.scored_next = 0
        self._scored: list[Event] = []
        self._records: dict[str, StateRecord] = {}

    def __len__(self) -> int:
        return len(self.predictions) + len(self.labels) + len(self.done)

    # --- events ------------------------------------------------------------------

    def add_prediction(self, event: Event, now: float) -> None:
        pid = event["prediction_id"]
        self.stats["predictions"] += 1
        if pid in self.done or pid in self.predictions:
            self.stats["duplicate_predictions"] += 1
            return
        waiting = self.labels.pop(pid, None)
        if waiting is None:
            self.predictions[pid] = (event, now)
            self._records[pid] = {"s": PENDING_PREDICTION, "t": now, "e": event}
        else:
            self._score(event, waiting[0], now)

    def add_label(self, event: Event, now: float) -> None:
        pid = event["prediction_id"]
        self.stats["labels"] += 1
        if pid in self.done or pid in self.labels:
            self.stats["duplicate_labels"] += 1
            return
        waiting = self.predictions.pop(pid, None)
        if waiting is None:
            self.labels[pid] = (event, now)
            self._records[pid] = {"s": PENDING_LABEL, "t": now, "e": event}
        else:
            self._score(waiting[0], event, now)

    def _score(self, prediction: Event, label: Event, now: float) -> None:
        pid = prediction["prediction_id"]
        self.done[pid] = now
        self._records[pid] = {"s": DONE, "t": now}
        self._scored.append(make_scored(prediction, label, now, now))
        self.stats["scored"] += 1

    @property
    def undrained(self) -> int:
        """Scored pairs waiting for :meth:`drain`."""
        return len(self._scored)

    def drain(self) -> tuple[list[Event], dict[str, StateRecord]]:
        """Scored pairs and state records produced since the last drain."""
        scored, records = self._scored, self._records
        self._scored, self._records = [], {}
        return scored, records

    # --- time --------------------------------------------------------------------

    def expire(self, now: float) -> Expired:
        """Drop pending entries older than ``ttl`` and done ids older than the window."""
        out = Expired()
        for pending, bucket in ((self.predictions, out.predictions),
                                (self.labels, out.labels)):
            cutoff = now - self.ttl
            for pid in _older_than(pending, cutoff, key=lambda v: v[1]):
                bucket.append(pending.pop(pid)[0])
                self._records[pid] = None
        for pid in _older_than(self.done, now - self.dedupe_window, key=lambda t: t):
            del self.done[pid]
            self._records[pid] = None
            out.forgotten += 1
        self.stats["expired_predictions"] += len(out.predictions)
        self.stats["expired_labels"] += len(out.labels)
        return out

    # --- recovery ----------------------------------------------------------------

    def restore(self, pid: str, record: StateRecord) -> None:
        """Apply one state record read back from the changelog (last one wins)."""
        self.predictions.pop(pid, None)
        self.labels.pop(pid, None)
        self.done.pop(pid, None)
        if record is None:
            return
        state, seen = record["s"], record["t"]
        if state == PENDING_PREDICTION:
            self.predictions[pid] = (record["e"], seen)
        elif state == PENDING_LABEL:
            self.labels[pid] = (record["e"], seen)
        elif state == DONE:
            self.done[pid] = seen
        else:
            raise ValueError(f"unknown join state {state!r} for {pid!r}")

    def records(self):
        """The whole state as (pid, state record) pairs, each map in arrival order:
        replaying them through :meth:`restore` into an empty join rebuilds this one."""
        for pid, (event, seen) in self.predictions.items():
            yield pid, {"s": PENDING_PREDICTION, "t": seen, "e": event}
        for pid, (event, seen) in self.labels.items():
            yield pid, {"s": PENDING_LABEL, "t": seen, "e": event}
        for pid, seen in self.done.items():
            yield pid, {"s": DONE, "t": seen}

    def mark_done(self, pid: str, when: float) -> None:
        """``pid`` was scored (found on the output topic): record it as done."""
        if pid in self.done:
            return
        self.predictions.pop(pid, None)
        self.labels.pop(pid, None)
        self.done[pid] = when
        self._records[pid] = {"s": DONE, "t": when}


def _older_than(entries: dict[str, Any], cutoff: float, key) -> list[str]:
    old = []
    for pid, value in entries.items():
        if key(value) > cutoff:
            break
        old.append(pid)
    return old
