"""Join agent: predictions + labels -> exactly one scored pair per labeled prediction.

How "exactly one" holds without Kafka transactions (Tansu has none):

1. The agent takes a batch of input events (decoded, timed and sorted by home
   partition in :mod:`~driftline.agents.join.intake`) and applies them to the
   in-memory :class:`~driftline.agents.join.state.PartitionJoin` of each partition.
2. It sends the batch's scored pairs (to the *same partition number* of
   ``scored``) and expirations, dead letters and forwards, and waits for every ack.
3. It sends what the monitor reads to ``monitor-input``, on the partition of each
   event's *model*, tagged with its source position: each ``scored`` array's pairs
   as columns (format 2, :func:`~driftline.models.wire.internal.columnar_element`)
   and each ``expired`` array as written, with the offset it got, and the batch's
   valid predictions (for data drift, as columns too) with the input position they
   came from (consecutive small messages in one element, with each event's offset;
   :mod:`~driftline.agents.routing` builds them).
4. With them go the batch's state records, as a *delta* message (more if large) to
   each partition's ``join-state`` log, whose last one carries the checkpoint: the
   ``scored`` offset where the monitor-input of the batches before ended (acknowledged;
   this batch's is not yet, so the next delta vouches for it). It waits for every ack.
5. Only then does Faust acknowledge the batch and later commit its offsets.

After a crash (or when a partition moves to another worker) the partition's
state is rebuilt by reading ``join-state`` to its true end, then reading
``scored`` from the checkpoint: any pair found there was written before the
crash, so its id is marked done before input is consumed again. A re-delivered
label for it is then a duplicate, not a second pair. Those pairs are sent to
``monitor-input`` again, since the crash may have come before step 3 (the
monitor drops what it already has by source position); a pair before the
checkpoint was on ``monitor-input`` before its checkpoint was written.

The ``join-state`` log (a compacted topic; its format is in
:mod:`driftline.models.wire.internal`) holds three kinds of record, see
:class:`StateLog`: deltas (``d:<seq>``), snapshot chunks (``s:<seq>:<k>``, the
whole state as of delta ``seq``) and a head (``h``) naming the latest complete
snapshot. Once the deltas since the last snapshot hold more records than the
state itself, a new snapshot is written, then its head, then tombstones for
the deltas and chunks it replaces, so compaction keeps the log near the size of
the state, and writing it costs at most one extra record per state record.

An event whose ``prediction_id`` does not hash (Kafka's murmur2) to the
partition it arrived on, e.g. inside a batch message keyed by something else,
is forwarded to its home partition first, so both sides of a pair always meet
in the same partition state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import faust

from driftline.agents.join.arrays import by_model
from driftline.agents.join.dedupe import fullest_due
from driftline.agents.join.intake import Intake, decode
from driftline.agents.join.state import PartitionJoin, StateRecord
from driftline.agents.join.statelog import StateLog, StateLogReplay
from driftline.agents.lifecycle import PartitionStates
from driftline.agents.monitor.baselines import RegistryBaselines
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.refusals import Tasks
from driftline.agents.outbox import Outbox, SendFn
from driftline.agents.routing import (
    ModelPartitions,
    Written,
    elements_of,
    header,
    predictions_by_partition,
    send_in_order,
    written_elements,
)
from driftline.agents.wiring import batch_agent, raw_topic, sender, timer
from driftline.kafka import read_partition
from driftline.models.wire import Prediction, Rejection, array, arrays, encode, unbatch
from driftline.models.wire import scored_pairs as decode_scored
from driftline.models.wire.deadletter import DeadLetterCounter
from driftline.models.wire.events import ScoredPair, as_dict
from driftline.models.wire.internal import EXPIRED, MODEL_HEADER, SCORED
from driftline.settings import Settings

log = logging.getLogger(__name__)

Drained = tuple[list[ScoredPair], dict[str, StateRecord]]  # what PartitionJoin.drain returns

# A snapshot is written only once the deltas since the last one hold this many records.
SNAPSHOT_MIN_RECORDS = 50_000


class Joiner:
    """Everything the join agent does, minus the Faust wiring (see :func:`install`)."""

    def __init__(self, settings: Settings, send: SendFn,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.send = send
        self.clock = clock
        self.labels_topic = settings.topic("labels")
        self.scored_topic = settings.topic("scored")
        self.state_topic = settings.topic("join_state")
        self.deadletter_topic = settings.topic("deadletter")
        self.expired_topic = settings.topic("expired")
        self.monitor_topic = settings.topic("monitor_input")
        self.model_home = ModelPartitions(settings.partitions)
        self.lock = asyncio.Lock()
        self.parts: PartitionStates[PartitionJoin] = PartitionStates(
            settings, send, (settings.topic("predictions"), self.labels_topic), self._recover,
            on_drop=self._retire, lock=self.lock)
        self.logs: dict[int, StateLog] = {}
        self.dead_letters = DeadLetterCounter()
        # Event times later than the clock + DRIFTLINE_MAX_FUTURE_SKEW, clamped, by kind.
        self.clamped: Counter[str] = Counter()
        self.forwarded = 0
        self._retired: Counter[str] = Counter()  # stats of partitions handed to another worker
        # Each model's task: a pair that does not fit it is dead-lettered here (see _refuse)
        # (the config's, else the registry's word for the version, as the monitor's)
        self.tasks = Tasks(MonitorConfig.load(settings.monitor_config),
                           RegistryBaselines(settings).task)

    @property
    def stats(self) -> Counter[str]:
        total = Counter(self._retired)
        for part in self.parts.values():
            total.update(part.stats)
        return total

    # --- the batch ---------------------------------------------------------------

    async def process(self, messages: Sequence[Any]) -> None:
        """One batch of Faust events (anything with ``.message``) from either input topic:
        steps 1 to 5 of the module docstring."""
        async with self.lock:
            now = self.clock()
            batch = Intake(decode(messages, self.labels_topic,
                                  max_bytes=self.settings.max_message_bytes,
                                  max_batch=self.settings.max_batch_events))
            batch.stamp(now, now + self.settings.max_future_skew, self.clamped)
            batch.route(self.settings.partitions, self.model_home)
            out = Outbox()
            for msg, rejection in batch.rejected:
                self._dead_letter(out, msg, rejection)
            to_monitor = predictions_by_partition(batch.predicted)
            for (topic, partition), events in batch.forwards.items():
                self._forward(out, topic, partition, events)
            await self.parts.ensure(batch.joining)
            shed = self._join(batch, now)
            # The predictions' elements go out before the input is acknowledged: a crash
            # re-delivers them, and the monitor drops the copies by their source position.
            await self._persist(out, set(batch.joining), shed or None, to_monitor=to_monitor)

    def _join(self, batch: Intake, now: float) -> dict[int, list[Prediction]]:
        """Step 1: each partition's events into its join; returns the predictions shed by
        those now holding more than ``join_max_pending`` waiting events."""
        shed: dict[int, list[Prediction]] = {}
        for partition, events in batch.joining.items():
            part = self.parts[partition]
            part.add_events(events, now, batch.hashes(partition))
            if part.max_pending and len(part.predictions) + len(part.labels) > \
                    part.max_pending:
                shed[partition] = part.shed().predictions
        return shed

    async def _persist(self, out: Outbox, partitions: Iterable[int],
                       expired: dict[int, list[Prediction]] | None = None,
                       to_monitor: dict[int, list[bytes]] | None = None) -> None:
        """Steps 2 to 4 of the module docstring, for the given partitions (``expired``:
        their predictions that expired unlabeled; ``to_monitor``: the batch's predictions,
        as elements by monitor-input partition), then a snapshot where one is due."""
        drained = self._drain(partitions)
        scored = self._queue_scored(out, drained)
        expirations = self._queue_expired(out, expired or {})
        offsets = await out.flush(self.send) if len(out) else []
        self._advance_checkpoints(scored, offsets)
        # Steps 3 and 4 together: the state records vouch only for the batches before
        # (their checkpoint is where the last one's monitor-input ended).
        await send_in_order(self.send, self.monitor_topic, written_elements(
            scored + expirations, offsets, self.model_home, to_monitor), self._deltas(drained))
        for p in drained:
            self.parts[p].vouched = self.parts[p].scored_next
        for p in drained:
            log_ = self.logs[p]
            if log_.since_snapshot >= max(SNAPSHOT_MIN_RECORDS, len(self.parts[p])):
                await self._snapshot(p, log_)

    def _drain(self, partitions: Iterable[int]) -> dict[int, Drained]:
        """What the batch changed in each partition: its scored pairs and state records.

        One partition at most freezes its newest done ids per batch (the fullest): under
        even load they all reach :data:`.dedupe.FREEZE` together, and eight freezes of
        ~10 ms in one batch held every stage behind it. The others take one bounded step
        of their generation merges, if any run (~3 ms: :mod:`.generations`)."""
        partitions = list(partitions)
        freezes = fullest_due({p: len(self.parts[p].done.recent) for p in partitions})
        return {p: self.parts[p].drain(freeze=p == freezes) for p in partitions}

    def _queue_scored(self, out: Outbox, drained: dict[int, Drained]) -> list[Written]:
        """Step 2: each partition's pairs on ``out``, to the same partition of ``scored``,
        as arrays of one model each (its name in their header)."""
        written = []
        for p, (scored, _) in drained.items():
            self._refuse(out, p, scored)
            for model, key, value, pairs in by_model((s.model, s.prediction_id, s, s)
                                                      for s in scored):
                i = out.add(self.scored_topic, key, value, p, [(MODEL_HEADER, model.encode())])
                written.append(Written(SCORED, p, model, value, i, pairs))
        return written

    def _refuse(self, out: Outbox, p: int, scored: list[ScoredPair]) -> None:
        """Step 2's dead letters: the pairs that do not fit their model's task, here where
        each pair is scored once, live (the monitor counts them: :mod:`..monitor.refusals`),
        and again for the pairs a rebuild finds after its checkpoint (:meth:`_recover`)."""
        for s, reason, task in self.tasks.refused(scored):
            why = Rejection("refused_pair", f"{reason}: the pair does not fit {s.model}'s "
                                            f"task ({task})", encode(s))
            self.dead_letters.count(why)
            out.dead_letter(self.deadletter_topic, s.prediction_id.encode(), self.scored_topic,
                            p, None, why, limit=self.settings.max_message_bytes)

    def _queue_expired(self, out: Outbox,
                       expired: dict[int, list[Prediction]]) -> list[Written]:
        """Step 2: each partition's expired predictions on ``out``, to the same partition
        of ``expired``, stamped with the time they expired, as arrays of one model each."""
        written = []
        for p, events in expired.items():
            now = self.clock()
            for model, key, value, _ in by_model(
                    (ev.model, ev.prediction_id, {**as_dict(ev), "expired_ts": now}, None)
                    for ev in events):
                i = out.add(self.expired_topic, key, value, p, [(MODEL_HEADER, model.encode())])
                written.append(Written(EXPIRED, p, model, value, i, None))
        return written

    def _advance_checkpoints(self, scored: list[Written], offsets: list[int]) -> None:
        """Each partition's next ``scored`` offset: past the last of its arrays just
        written (a retried array can land after a later one)."""
        last: dict[int, int] = {}
        for w in scored:
            last[w.partition] = max(last.get(w.partition, -1), offsets[w.outbox_index])
        for p, offset in last.items():
            self.parts[p].scored_next = offset + 1

    def _deltas(self, drained: dict[int, Drained]) -> Outbox:
        """Step 4: each partition's state records as deltas, the last with its checkpoint:
        where the monitor-input of the batches before ended, never past a pair the
        monitor may not have (nor past a done record: those of the batches before are
        acknowledged)."""
        out = Outbox()
        for p, (_, records) in drained.items():
            if records:
                for key, value in self.logs[p].deltas(records, self.parts[p].vouched):
                    out.add(self.state_topic, key, value, p)
        return out

    async def _snapshot(self, p: int, log_: StateLog) -> None:
        """The whole state of partition ``p`` as of its last delta, then the head that makes
        it the one to restore from, then tombstones for what it replaces."""
        part, seq = self.parts[p], log_.seq
        if seq == log_.snapshot_seq:  # nothing since the last one (whose keys these would be)
            return
        chunks = log_.snapshot(part)
        await self._write_state(p, chunks)
        await self._write_state(p, [log_.head(seq, len(chunks), part.vouched)])
        await self._write_state(p, [(key, None) for key in log_.replaced(seq)])
        log.debug("join partition %d: snapshot at delta %d, %d entries in %d chunks",
                  p, seq, len(part), len(chunks))
        log_.snapshot_written(seq, len(chunks))

    async def _write_state(self, p: int,
                           records: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Records on partition ``p`` of ``join-state``, acknowledged."""
        out = Outbox()
        for key, value in records:
            out.add(self.state_topic, key, value, p)
        await out.flush(self.send)

    def _dead_letter(self, out: Outbox, msg: Any, rejection: Rejection) -> None:
        self.dead_letters.count(rejection)
        log.debug("dead letter %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset,
                  rejection.error[:200])
        out.dead_letter(self.deadletter_topic, msg.key, msg.topic, msg.partition, msg.offset,
                        rejection, limit=self.settings.max_message_bytes)

    def _forward(self, out: Outbox, topic: str, partition: int,
                 events: list[tuple[str, bytes]]) -> None:
        """Events to their home partition, as arrays keyed by their first event's id."""
        self.forwarded += len(events)
        ids = [pid for pid, _ in events]
        first = 0
        for run in arrays([encoded for _, encoded in events]):
            out.add(topic, ids[first].encode(), array(run), partition)
            first += len(run)

    # --- recovery and rebalance --------------------------------------------------

    async def _recover(self, consumer: Any, partition: int, out: Outbox) -> PartitionJoin:
        """Rebuild one partition: ``join-state`` to its end, then ``scored`` after the checkpoint.

        See :class:`~driftline.agents.join.statelog.StateLogReplay` for how the log is
        applied."""
        started = time.monotonic()
        replay = StateLogReplay(self._new_part, partition)
        n_state = 0
        async for records in read_partition(consumer, self.state_topic, partition):
            n_state += len(records)
            for r in records:
                replay.apply(r.key, r.value)
        part, checkpoint = replay.part, replay.checkpoint
        self.logs[partition] = replay.log
        part.drain()  # restoring writes nothing
        part.scored_next = checkpoint
        n_scored = 0
        # Pairs after the checkpoint may not have reached monitor-input before the crash:
        # they go again (the monitor drops what it has by source position), and so do the
        # refused ones' dead letters, which need not have gone in the same request as
        # their pairs (at least once: a second copy may follow one that went).
        elements: dict[int, list[bytes]] = defaultdict(list)
        async for records in read_partition(consumer, self.scored_topic, partition,
                                            start=checkpoint):
            for r in records:
                for pair in unbatch(r.value):
                    part.mark_done(pair["prediction_id"], self.clock())
                    n_scored += 1
                self._refuse(out, partition, decode_scored(r.value))
                part.scored_next = r.offset + 1
                for q, value in elements_of(SCORED, partition, r.offset, r.value,
                                            header(r, MODEL_HEADER), self.model_home).items():
                    elements[q].append(value)
        await send_in_order(self.send, self.monitor_topic, elements)
        part.vouched = part.scored_next
        log.info("join partition %d recovered in %.2fs: %d state records, %d scored pairs "
                 "after the checkpoint; %d waiting predictions, %d waiting labels, %d done ids",
                 partition, time.monotonic() - started, n_state, n_scored,
                 len(part.predictions), len(part.labels), len(part.done))
        return part

    def _new_part(self) -> PartitionJoin:
        return PartitionJoin(self.settings.join_ttl, self.settings.dedupe_window,
                             self.settings.join_max_pending)

    def _retire(self, partition: int, part: PartitionJoin) -> None:
        """A partition went to another worker: keep its counts, forget its log position."""
        self.logs.pop(partition, None)
        self._retired.update(part.stats)

    def summary(self) -> str:
        """One log line of what the join has done since this worker started."""
        st = self.stats
        dead = ", ".join(f"{k}={v}" for k, v in sorted(self.dead_letters.items())) or "none"
        return (f"join: {st['scored']} scored, {st['predictions']} predictions, "
                f"{st['labels']} labels, {st['duplicate_predictions'] + st['duplicate_labels']} "
                f"duplicates, {st['expired_predictions']} expired predictions, "
                f"{self.forwarded} forwarded; waiting: "
                f"{sum(len(p.predictions) for p in self.parts.values())} predictions, "
                f"{sum(len(p.labels) for p in self.parts.values())} labels; "
                f"dead letters: {dead}")

    # --- time --------------------------------------------------------------------

    async def sweep(self) -> None:
        """Expire old join entries of every loaded partition and persist the removals."""
        async with self.lock:
            now = self.clock()
            expired: dict[int, list[Prediction]] = {}
            touched = []
            for p, part in self.parts.items():
                gone = part.expire(now)
                if gone.predictions or gone.labels or gone.forgotten:
                    touched.append(p)
                    expired[p] = gone.predictions
            if touched:
                await self._persist(Outbox(), touched, expired)


def install(app: faust.App, settings: Settings) -> Joiner:
    """Register the join agent, its expiry timer and rebalance hooks on ``app``."""
    inputs = {settings.topic("predictions"), settings.topic("labels")}
    joiner = Joiner(settings, sender(app))
    batch_agent(app, raw_topic(app, *sorted(inputs)), "driftline.join", settings,
                joiner.process, states=joiner.parts)

    @timer(app, settings.expiry_interval, "driftline.join.expiry")
    async def expiry() -> None:
        await joiner.sweep()

    last_summary = [""]

    @timer(app, 30.0, "driftline.join.summary")
    async def summary() -> None:
        line = joiner.summary()
        if line != last_summary[0]:
            log.info("%s", line)
            last_summary[0] = line

    joiner.parts.install(app)
    return joiner
