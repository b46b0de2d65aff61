"""The prediction-label join of one partition, as a plain state machine.

No Kafka in here: :mod:`driftline.agents.join.agent` feeds it decoded events
(:class:`~driftline.models.wire.Prediction`, :class:`~driftline.models.wire.Label`)
and persists what :meth:`PartitionJoin.drain` hands back. Every change to the
state is also returned as a *state record* (``prediction_id`` -> ``(state, seen,
event)``, ``None`` = delete), which the agent appends to the partition's
``join-state`` topic in the format of :mod:`driftline.models.wire.internal`;
replaying those records through :meth:`PartitionJoin.restore` rebuilds the same
state after a crash.

An id is in exactly one of three maps:

* ``predictions`` - a prediction waiting for its label;
* ``labels``      - a label that came first, waiting for its prediction;
* ``done``        - already scored; later copies of either side are duplicates. Kept
  for the dedupe window in ~16 bytes an id (:class:`~driftline.agents.join.dedupe.DoneIds`).

>>> from driftline.models.wire import Label, Prediction
>>> j = PartitionJoin(ttl=60, dedupe_window=60)
>>> j.add_label(Label("a", 1.0, ts=5.0), now=10)
>>> j.add_prediction(Prediction("a", "m", 3.0, version=1, ts=4.0), now=11)
>>> j.add_label(Label("a", 1.0, ts=5.0), now=12)
>>> scored, records = j.drain()
>>> [(s.prediction_id, s.error) for s in scored], records
([('a', 2.0)], {'a': ('d', 11, None)})
>>> j.stats["duplicate_labels"]
1
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from msgspec import UnsetType

from driftline.agents.join.dedupe import DoneIds, older_than
from driftline.models.wire import Label, Prediction, ScoredPair
from driftline.models.wire.joinstate import DONE, PENDING_LABEL, PENDING_PREDICTION

Event = Prediction | Label
# (state, seen, waiting event or None); None deletes the id.
StateRecord = tuple[str, float, Event | None] | None


def make_scored(prediction: Prediction, label: Label, prediction_time: float,
                label_time: float) -> ScoredPair:
    """The scored pair of a prediction and its label (``error`` = prediction - label when
    both are numbers, else None: a class)."""
    ts = prediction.ts
    label_ts = label.ts
    y, truth = prediction.prediction, label.label
    pair = ScoredPair(prediction.prediction_id, prediction.model, prediction.version,
                      y, truth,
                      None if type(y) is str or type(truth) is str else y - truth,  # type: ignore[operator]
                      prediction.features or {},
                      prediction_time if isinstance(ts, UnsetType) else ts,
                      label_time if isinstance(label_ts, UnsetType) else label_ts)
    if not isinstance(prediction.segment, UnsetType):
        pair.segment = prediction.segment
    if prediction.probabilities:
        pair.probabilities = prediction.probabilities
    return pair


@dataclass
class Expired:
    """What a sweep removed: predictions that never got a label, and orphan labels."""

    predictions: list[Prediction] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    forgotten: int = 0  # done ids older than the dedupe window


class PartitionJoin:
    """Join state of one partition. ``now`` is wall-clock seconds, passed in by the caller."""

    def __init__(self, ttl: float, dedupe_window: float, max_pending: int = 0) -> None:
        self.ttl = ttl
        self.dedupe_window = dedupe_window
        self.max_pending = max_pending  # per map; 0: no cap but the TTL
        # Insertion order is arrival order, so sweeps stop at the first live entry.
        self.predictions: dict[str, tuple[Prediction, float]] = {}
        self.labels: dict[str, tuple[Label, float]] = {}
        self.done = DoneIds()
        self.stats: Counter[str] = Counter()
        # Next offset of this partition of the scored topic, and the one before which every
        # pair is on monitor-input (what a checkpoint may say); kept by the agent.
        self.scored_next = self.vouched = 0
        self._scored: list[ScoredPair] = []
        self._records: dict[str, StateRecord] = {}

    def __len__(self) -> int:
        return len(self.predictions) + len(self.labels) + len(self.done)

    # --- events ------------------------------------------------------------------

    def add_events(self, events: list[Event], now: float,
                   hashes: np.ndarray | None = None) -> None:
        """Each event, in order: a duplicate of an id done or already waiting on its side is
        counted and dropped; an event whose other side waits makes their pair; any other
        waits. One search of the frozen done ids for the whole batch (they change only on
        drain; ``hashes``: the events' ids hashed already, :func:`.dedupe.hashes`).

        One loop with its maps in locals, the counts added once a batch: 2.24 µs a pair
        in a call per event, ~1.5 here (bench/pair_floor.py's stream)."""
        frozen = self.done.frozen_many([ev.prediction_id for ev in events], hashes)
        predictions, labels, records = self.predictions, self.labels, self._records
        done, scored = self.done.recent, self._scored  # a pair's id: DoneIds.add
        n_labels = duplicate_predictions = duplicate_labels = pairs = 0
        for i, ev in enumerate(events):
            pid = ev.prediction_id
            if isinstance(ev, Label):
                n_labels += 1
                if (frozen is not None and frozen[i]) or pid in done or pid in labels:
                    duplicate_labels += 1
                    continue
                waiting = predictions.pop(pid, None)
                if waiting is None:
                    labels[pid] = (ev, now)
                    records[pid] = (PENDING_LABEL, now, ev)
                    continue
                prediction, label = waiting[0], ev
            else:
                if (frozen is not None and frozen[i]) or pid in done or pid in predictions:
                    duplicate_predictions += 1
                    continue
                waiting_label = labels.pop(pid, None)
                if waiting_label is None:
                    predictions[pid] = (ev, now)
                    records[pid] = (PENDING_PREDICTION, now, ev)
                    continue
                prediction, label = ev, waiting_label[0]
            done[pid] = now
            records[pid] = (DONE, now, None)
            scored.append(make_scored(prediction, label, now, now))
            pairs += 1
        stats = self.stats
        for key, n in (("predictions", len(events) - n_labels), ("labels", n_labels),
                       ("duplicate_predictions", duplicate_predictions),
                       ("duplicate_labels", duplicate_labels), ("scored", pairs)):
            if n:
                stats[key] += n

    def add_prediction(self, event: Prediction, now: float) -> None:
        self.add_events([event], now)

    def add_label(self, event: Label, now: float) -> None:
        self.add_events([event], now)

    @property
    def undrained(self) -> int:
        """Scored pairs waiting for :meth:`drain`."""
        return len(self._scored)

    def drain(self, freeze: bool = True) -> tuple[list[ScoredPair], dict[str, StateRecord]]:
        """Scored pairs and state records produced since the last drain (when, with
        ``freeze``, the newest done ids may be frozen: between batches, never inside one),
        and one bounded step of the done ids' merges in progress."""
        scored, records = self._scored, self._records
        self._scored, self._records = [], {}
        if freeze:
            self.done.freeze()
        else:
            self.done.merge_step()
        return scored, records

    # --- time --------------------------------------------------------------------

    def expire(self, now: float) -> Expired:
        """Drop pending entries older than ``ttl`` and done ids older than the window."""
        out = Expired()
        cutoff = now - self.ttl
        for pid in older_than(self.predictions, cutoff, key=lambda v: v[1]):
            out.predictions.append(self.predictions.pop(pid)[0])
            self._records[pid] = None
        for pid in older_than(self.labels, cutoff, key=lambda v: v[1]):
            out.labels.append(self.labels.pop(pid)[0])
            self._records[pid] = None
        # A frozen id is known by its hash, so it gets no tombstone: restored from an older
        # record, it is forgotten again by the next sweep, its seen time being kept.
        named, frozen = self.done.expire(now - self.dedupe_window)
        for pid in named:
            self._records[pid] = None
        out.forgotten = len(named) + frozen
        self.stats["expired_predictions"] += len(out.predictions)
        self.stats["expired_labels"] += len(out.labels)
        return out

    def shed(self) -> Expired:
        """Past ``max_pending`` waiting predictions (or labels), the oldest go as if they
        had expired, counted apart (``shed_predictions``, ``shed_labels``): a producer
        that never sends labels (or sends labels of nothing) cannot grow the state
        without bound within the TTL (issue 30).

        >>> j = PartitionJoin(ttl=60, dedupe_window=60, max_pending=2)
        >>> for pid in "abc":
        ...     j.add_prediction(Prediction(pid, "m", 1.0), now=1)
        >>> [p.prediction_id for p in j.shed().predictions], list(j.predictions)
        (['a'], ['b', 'c'])
        """
        out = Expired()
        if not self.max_pending:
            return out
        for pid in self._oldest(self.predictions, "shed_predictions"):
            out.predictions.append(self.predictions.pop(pid)[0])
        for pid in self._oldest(self.labels, "shed_labels"):
            out.labels.append(self.labels.pop(pid)[0])
        return out

    def _oldest(self, waiting: dict[str, Any], stat: str) -> list[str]:
        """The ids of ``waiting`` past ``max_pending``, oldest first, tombstoned."""
        over = len(waiting) - self.max_pending
        if over <= 0:
            return []
        self.stats[stat] += over
        ids = list(itertools.islice(waiting, over))
        for pid in ids:
            self._records[pid] = None
        return ids

    # --- recovery ----------------------------------------------------------------

    def restore_many(self, records: list[tuple[str, StateRecord]]) -> None:
        """Apply state records read back from the changelog (the last one of an id wins; of
        distinct ids within a call, as a delta's or a snapshot chunk's are), the done ids
        they replace forgotten at once."""
        self.done.discard_many([pid for pid, _ in records])
        for pid, record in records:
            self._restore(pid, record)

    def _restore(self, pid: str, record: StateRecord) -> None:
        self.predictions.pop(pid, None)
        self.labels.pop(pid, None)
        if record is None:
            return
        state, seen, event = record
        if state == PENDING_PREDICTION and isinstance(event, Prediction):
            self.predictions[pid] = (event, seen)
        elif state == PENDING_LABEL and isinstance(event, Label):
            self.labels[pid] = (event, seen)
        elif state == DONE:
            self.done.add(pid, seen)
        else:
            raise ValueError(f"unknown join state {state!r} for {pid!r}")

    def records(self) -> Iterator[tuple[str, StateRecord]]:
        """The whole state as (pid, state record) pairs, each map in arrival order, but for
        the frozen done ids (:meth:`DoneIds.frozen`): replaying both through
        :meth:`restore_many` and :meth:`DoneIds.add_frozen` into an empty join rebuilds
        this one."""
        for pid, (prediction, seen) in self.predictions.items():
            yield pid, (PENDING_PREDICTION, seen, prediction)
        for pid, (label, seen) in self.labels.items():
            yield pid, (PENDING_LABEL, seen, label)
        for pid, seen in self.done.recent.items():
            yield pid, (DONE, seen, None)

    def mark_done(self, pid: str, when: float) -> None:
        """``pid`` was scored (found on the output topic): record it as done."""
        if pid in self.done:
            return
        self.predictions.pop(pid, None)
        self.labels.pop(pid, None)
        self.done.add(pid, when)
        self._records[pid] = (DONE, when, None)

