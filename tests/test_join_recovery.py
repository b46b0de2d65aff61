"""The join's crash windows, driven deterministically in-process against the real broker.

A SIGKILL rarely lands in the few milliseconds between "scored pairs acknowledged"
and "state records acknowledged"; these tests stop the Joiner exactly there.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from kafka_io import create_topics, label, prediction, read_all, read_events

from driftline.agents.join.agent import Joiner
from driftline.kafka import partition_for, read_partition

pytestmark = pytest.mark.integration


@dataclass
class Message:
    """What the Joiner reads from a Faust event: ``event.message``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float = 1_700_000_000.0


@dataclass
class Event:
    message: Message


class Crash(Exception):
    """Stands in for the process dying at this point."""


def batch(settings, ids, offset0=0):
    events = []
    for n, pid in enumerate(ids):
        p = partition_for(pid.encode(), settings.partitions)
        events.append(Event(Message(settings.topic("predictions"), p, offset0 + n,
                                    pid.encode(), prediction(pid, 2.0))))
        events.append(Event(Message(settings.topic("labels"), p, offset0 + n,
                                    pid.encode(), label(pid, 1.0))))
    return events


async def run(settings, scenario):
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        return await scenario(producer)
    finally:
        await producer.stop()


def sender(producer, crash_on_topic=None):
    async def send(topic, key, value, partition, headers=None):
        if topic == crash_on_topic:
            raise Crash(topic)
        return await producer.send(topic, value, key=key, partition=partition, headers=headers)
    return send


@pytest.mark.reliability
@pytest.mark.kafka
def test_crash_after_scored_before_state_does_not_score_twice(settings):
    create_topics(settings)
    ids = [f"w-{i}" for i in range(200)]
    events = batch(settings, ids)

    async def scenario(producer):
        first = Joiner(settings, sender(producer, crash_on_topic=settings.topic("join_state")))
        with pytest.raises(Crash):
            await first.process(events)
        # Restarted worker: the batch was never acknowledged, so Kafka re-delivers it.
        second = Joiner(settings, sender(producer))
        await second.process(events)
        return second

    second = asyncio.run(run(settings, scenario))
    keys = [p["prediction_id"] for p in read_events(settings, "scored")]
    assert sorted(keys) == sorted(ids)
    assert second.stats["duplicate_predictions"] == len(ids)
    assert second.stats["duplicate_labels"] == len(ids)


def test_without_reading_back_scored_the_same_crash_would_double(settings, monkeypatch):
    """Guards the test above: it fails if the read-back of ``scored`` is skipped."""
    create_topics(settings)
    ids = [f"v-{i}" for i in range(50)]
    events = batch(settings, ids)

    async def no_records(*args, **kwargs):
        return
        yield

    async def scenario(producer):
        first = Joiner(settings, sender(producer, crash_on_topic=settings.topic("join_state")))
        with pytest.raises(Crash):
            await first.process(events)
        second = Joiner(settings, sender(producer))
        real_read = __import__("driftline.agents.join.agent",
                               fromlist=["read_partition"]).read_partition

        def only_state(consumer, topic, partition, start=0, **kw):
            if topic == settings.topic("scored"):
                return no_records()
            return real_read(consumer, topic, partition, start, **kw)

        monkeypatch.setattr("driftline.agents.join.agent.read_partition", only_state)
        await second.process(events)

    asyncio.run(run(settings, scenario))
    assert len(read_events(settings, "scored")) == 2 * len(ids)


def test_state_survives_handing_a_partition_away_and_back(settings):
    create_topics(settings)
    ids = [f"r-{i}" for i in range(100)]
    preds = [e for e in batch(settings, ids) if e.message.topic.endswith("predictions")]
    labels = [e for e in batch(settings, ids) if e.message.topic.endswith("labels")]

    async def scenario(producer):
        joiner = Joiner(settings, sender(producer))
        await joiner.process(preds)
        assert sum(len(p.predictions) for p in joiner.parts.values()) == len(ids)
        await joiner.parts.drop(list(joiner.parts))  # rebalance: partitions revoked
        assert len(joiner.parts) == 0
        other = Joiner(settings, sender(producer))  # the worker that gets them
        await other.process(labels[:60])
        await other.process(labels)  # 60 of these are duplicates now
        return other

    other = asyncio.run(run(settings, scenario))
    pairs = read_events(settings, "scored")
    assert sorted(p["prediction_id"] for p in pairs) == sorted(ids)
    assert other.stats["duplicate_labels"] == 60


def _state(joiner: Joiner) -> dict:
    """Every partition's maps, the waiting ones with their order (expiry relies on arrival
    order); the done ids as (hash, seen), however many of them are frozen."""
    return {p: (list(part.predictions.items()), list(part.labels.items()), _done(part.done))
            for p, part in sorted(joiner.parts.items()) if len(part)}


def _done(done) -> list[tuple[int, float]]:
    from driftline.keyhash import id_hash

    seen = list(done.recent.values())
    assert seen == sorted(seen)  # arrival order: a sweep stops at the first live id
    out = [(id_hash(pid.encode()), t) for pid, t in done.recent.items()]
    for h, t, _ in done.frozen():
        out.extend(zip(h.tolist(), t.tolist()))
    return sorted(out)


def _compacted(settings, other_settings) -> None:
    """Copy ``join-state`` as Kafka's compaction would leave it (the last record of each
    key, in log order, tombstones gone) to ``other_settings``' topic."""
    from driftline.kafka import read_partition, reader

    async def copy():
        consumer, producer = reader(settings), AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers, acks="all")
        await consumer.start()
        await producer.start()
        try:
            for p in range(settings.partitions):
                latest = {}
                async for records in read_partition(consumer, settings.topic("join_state"), p):
                    for r in records:
                        latest.pop(r.key, None)
                        latest[r.key] = r.value
                for key, value in latest.items():
                    if value is not None:
                        await producer.send_and_wait(other_settings.topic("join_state"), value,
                                                     key=key, partition=p)
        finally:
            await consumer.stop()
            await producer.stop()
    asyncio.run(copy())


@pytest.mark.parametrize("freeze", [None, 4], ids=["named", "frozen"])
def test_snapshots_rebuild_the_same_state_from_the_whole_or_a_compacted_log(
        settings, monkeypatch, freeze):
    """Many batches of pending predictions, early labels, pairs and expirations, with a
    snapshot every few records: a fresh Joiner rebuilds exactly the same state from the
    log as written (every delta) and from the log as compaction leaves it (the snapshot
    and the deltas after it). ``frozen``: done ids are frozen into hashes every 4, so the
    snapshots carry frozen chunks."""
    import driftline.agents.join.agent as join
    from driftline.agents.join import dedupe

    monkeypatch.setattr(join, "SNAPSHOT_MIN_RECORDS", 30)
    froze: list[int] = [0]  # per batch the joiner persists: the partitions that froze
    if freeze:
        monkeypatch.setattr(dedupe, "FREEZE", freeze)
        real_freeze, real_persist = dedupe.DoneIds.freeze, Joiner._persist

        def counted_freeze(done, min_size=None):
            froze[-1] += len(done.recent) >= (dedupe.FREEZE if min_size is None else min_size)
            real_freeze(done, min_size)

        async def counted_persist(joiner, *args, **kwargs):
            froze.append(0)
            await real_persist(joiner, *args, **kwargs)

        monkeypatch.setattr(dedupe.DoneIds, "freeze", counted_freeze)
        monkeypatch.setattr(Joiner, "_persist", counted_persist)
    create_topics(settings)
    clock = [1_000.0]
    ids = [f"s-{i}" for i in range(400)]

    def kind(e):  # 0: never labeled, 1: both in one batch, 2: label a batch early
        return int(e.message.key.decode().split("-")[1]) % 3

    async def scenario(producer):
        joiner = Joiner(settings.replace(join_ttl=50.0, dedupe_window=50.0), sender(producer),
                        clock=lambda: clock[0])
        early: list = []
        for k in range(0, len(ids), 40):
            events = batch(settings, ids[k:k + 40], offset0=k)
            preds = [e for e in events if e.message.topic.endswith("predictions")]
            labels = [e for e in events if e.message.topic.endswith("labels")]
            late = [e for e in preds if kind(e) == 2]
            now = [e for e in preds if kind(e) != 2] + [e for e in labels if kind(e) == 1]
            await joiner.process(early + (now[::-1] if k % 80 else now)
                                 + [e for e in labels if kind(e) == 2])
            early = late if k + 40 < len(ids) - 40 else []
            clock[0] += 10.0
            await joiner.sweep()  # what waited over 50 s expires
        for p, log in joiner.logs.items():  # every partition's state in a snapshot, then
            await joiner._snapshot(p, log)   # deltas after it
        await joiner.process(batch(settings, ["tail-1", "tail-2"], offset0=10_000)[:3])
        return joiner

    first = asyncio.run(run(settings, scenario))
    assert sum(log.snapshot_seq > 0 for log in first.logs.values()) >= 2
    if freeze:
        # Every partition's snapshot carries frozen chunks (one partition freezes per
        # batch, so how many generations there are depends on the batches' order).
        assert all(part.done.generations >= 1 for part in first.parts.values())
        assert len(first.parts) >= 4
        # One partition at most freezes per batch, though several are due in most.
        assert max(froze) == 1 and sum(froze) >= 2 * len(first.parts)

    async def recover(s):
        producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers)
        await producer.start()
        try:
            fresh = Joiner(s, sender(producer), clock=lambda: clock[0])
            await fresh.parts.ensure(range(s.partitions))
            return fresh
        finally:
            await producer.stop()

    expected = _state(first)
    for i, what in enumerate(("waiting predictions", "waiting labels", "done ids")):
        assert any(maps[i] for maps in expected.values()), f"no {what}: the test is too weak"
    assert first.stats["expired_predictions"] > 0
    assert _state(asyncio.run(recover(settings))) == expected
    compacted = settings.replace(topic_prefix=settings.topic_prefix + "compacted.")
    create_topics(compacted)
    _compacted(settings, compacted)
    # Every done record is in a delta at or before the last checkpoint, so the compacted
    # copy (with an empty scored topic) must hold the whole state.
    assert _state(asyncio.run(recover(compacted))) == expected


@pytest.mark.kafka_only
def test_state_rebuilds_after_the_log_cleaner_compacted_join_state(settings, monkeypatch):
    """On Apache Kafka the log cleaner really compacts ``join-state`` (tiny segments, any
    dirty ratio): deltas a snapshot replaced, and their tombstones' targets, are gone from
    the broker. A fresh Joiner rebuilds exactly the state from what the cleaner left."""
    import driftline.agents.join.agent as join
    from driftline.app import topic_configs, topics_to_create
    from driftline.kafka import ensure_topics, opened_reader

    monkeypatch.setattr(join, "SNAPSHOT_MIN_RECORDS", 30)
    state_topic = settings.topic("join_state")
    configs = topic_configs(settings)
    configs[state_topic] = {**configs[state_topic], "segment.ms": "100",
                            "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0",
                            "delete.retention.ms": "100"}
    asyncio.run(ensure_topics(settings, topics_to_create(settings), configs=configs))
    assert configs[state_topic]["cleanup.policy"] == "compact"
    clock = [1_000.0]
    ids = [f"c-{i}" for i in range(400)]

    async def scenario(producer):
        joiner = Joiner(settings.replace(join_ttl=50.0, dedupe_window=50.0),
                        sender(producer), clock=lambda: clock[0])
        for k in range(0, len(ids), 40):
            events = batch(settings, ids[k:k + 40], offset0=k)
            # a third never labeled, the rest paired: deltas, snapshots and tombstones
            await joiner.process([e for e in events if e.message.topic.endswith("predictions")
                                  or int(e.message.key.decode().split("-")[1]) % 3])
            clock[0] += 10.0
            await joiner.sweep()
            await asyncio.sleep(0.15)  # past segment.ms: the next write rolls a segment
        for p, log in joiner.logs.items():
            await joiner._snapshot(p, log)
        await asyncio.sleep(0.15)
        await joiner.process(batch(settings, ["tail-1"], offset0=10_000))
        return joiner

    first = asyncio.run(run(settings, scenario))
    expected = _state(first)
    assert first.stats["expired_predictions"] > 0 and any(m[2] for m in expected.values())

    async def on_the_broker() -> tuple[int, int]:
        """(records a read to the end returns, offsets written) over all partitions."""
        read = written = 0
        async with opened_reader(settings) as consumer:
            for p in range(settings.partitions):
                async for records in read_partition(consumer, state_topic, p):
                    read += len(records)
                tp = TopicPartition(state_topic, p)
                written += (await consumer.end_offsets([tp]))[tp]
        return read, written

    deadline = time.monotonic() + 120
    read, written = asyncio.run(on_the_broker())
    while read == written and time.monotonic() < deadline:
        time.sleep(1.0)
        read, written = asyncio.run(on_the_broker())
    assert read < written, "the log cleaner removed nothing from join-state in 120 s"

    async def recover():
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        await producer.start()
        try:
            fresh = Joiner(settings, sender(producer), clock=lambda: clock[0])
            await fresh.parts.ensure(range(settings.partitions))
            return fresh
        finally:
            await producer.stop()

    assert _state(asyncio.run(recover())) == expected


def _monitored(settings) -> tuple[dict[str, tuple[int, int]], int, set[int]]:
    """What the monitor makes of monitor-input, every partition applied in order:
    (n_scored, n_predictions) per model, how many copies it dropped, and the formats of
    the scored elements. Checks on the way that each scored element holds the events of
    the ``scored`` record it names."""
    from driftline.agents.monitor.config import MonitorConfig
    from driftline.agents.monitor.partition import PartitionMonitor
    from driftline.models.wire import unbatch
    from driftline.models.wire.internal import SCORED, decode_elements

    scored = {(r.partition, r.offset): unbatch(r.value) for r in read_all(settings, "scored")}
    parts: dict[int, PartitionMonitor] = {}
    formats: set[int] = set()
    for r in read_all(settings, "monitor_input"):
        part = parts.setdefault(r.partition, PartitionMonitor(MonitorConfig()))
        part.apply(r.offset, r.value)
        for item in decode_elements(r.value):
            if item.k == SCORED:  # columns as the join writes them; events as re-sent
                assert item.events() == scored[item.s]
                assert {partition_for(e["model"].encode(), settings.partitions)
                        for e in item.events()} == {r.partition}
                formats.add(item.v)
    counts = {model: (vm.report()["n_scored"], vm.report()["n_predictions"])
              for part in parts.values() for (model, _), vm in part.monitor.versions.items()}
    return counts, sum(part.duplicates for part in parts.values()), formats


def _models_batch(settings, ids):
    """``batch`` with the ids spread over three models (so over monitor-input partitions)."""
    events = batch(settings, ids)
    for ev in events:
        if ev.message.topic == settings.topic("predictions"):
            pid = orjson.loads(ev.message.value)["prediction_id"]
            ev.message.value = prediction(pid, 2.0, model=f"m{int(pid.split('-')[1]) % 3}")
    return events


@pytest.mark.reliability
@pytest.mark.kafka
@pytest.mark.parametrize("crash_on", ["monitor_input", "join_state", "input_ack"])
def test_a_crash_after_scored_gets_each_pair_to_the_monitor_once(settings, crash_on):
    """The join writes monitor-input itself, after ``scored``, with its state records,
    whose checkpoint vouches only for the batches before. A crash before them (or after
    them, before the input is acknowledged) leaves pairs on ``scored`` that the monitor
    may not have: the rebuilt partition sends those again, and the monitor applies each
    pair once."""
    settings = settings.replace(partitions=4)
    create_topics(settings)
    ids = [f"w-{i}" for i in range(300)]
    events = _models_batch(settings, ids)
    after = crash_on == "input_ack"

    async def scenario(producer):
        first = Joiner(settings, sender(producer, None if after else settings.topic(crash_on)))
        if after:  # the batch done, its input never acknowledged
            await first.process(events)
        else:
            with pytest.raises(Crash):
                await first.process(events)
        second = Joiner(settings, sender(producer))
        await second.process(events)  # re-delivered: every id is a duplicate now

    asyncio.run(run(settings, scenario))
    counts, duplicates, formats = _monitored(settings)
    assert counts == {f"m{k}": (100, 100) for k in range(3)}
    # The pairs sent again on the rebuild are the scored arrays as they are (format 1);
    # after a crash past them the first run's went out as columns (format 2).
    assert formats == ({1, 2} if after else {1})
    assert len(read_events(settings, "scored")) == len(ids)
    # After the elements were out, the pairs sent again and the re-delivered predictions
    # are copies the monitor drops; before, there was nothing to drop.
    assert duplicates == (2 * len(ids) if after else 0)


def test_without_the_resend_the_crash_would_lose_the_pairs(settings, monkeypatch):
    """Guards the test above: it fails if the rebuild does not send the pairs after the
    checkpoint to monitor-input."""
    settings = settings.replace(partitions=4)
    create_topics(settings)
    ids = [f"u-{i}" for i in range(60)]
    events = _models_batch(settings, ids)
    monkeypatch.setattr("driftline.agents.join.agent.elements_of", lambda *a, **k: {})

    async def scenario(producer):
        first = Joiner(settings, sender(producer, crash_on_topic=settings.topic("monitor_input")))
        with pytest.raises(Crash):
            await first.process(events)
        await Joiner(settings, sender(producer)).process(events)

    asyncio.run(run(settings, scenario))
    counts, _, _ = _monitored(settings)
    assert counts == {f"m{k}": (0, 20) for k in range(3)}


def _refused_batch(settings, ids, refused):
    """``batch`` where the ids in ``refused`` get a class for a label, which a regression
    (every model here) refuses: ``class_label``."""
    events = batch(settings, ids)
    for ev in events:
        pid = orjson.loads(ev.message.value)["prediction_id"]
        if ev.message.topic == settings.topic("labels") and pid in refused:
            ev.message.value = label(pid, "cat")
    return events


def _dead_letters(settings) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for r in read_all(settings, "deadletter"):
        out.setdefault(r.key.decode(), []).append(r.value)
    return out


@pytest.mark.reliability
@pytest.mark.kafka
@pytest.mark.parametrize("crash", ["dead-letter-unsent", "join_state"])
def test_a_crash_after_scored_never_loses_a_refused_pairs_dead_letter(settings, crash):
    """A refused pair's dead letter goes out with its batch's scored pairs. A crash that
    finds the pairs on ``scored`` and the dead letter still in the producer's buffer (the
    two can go in different requests) lost it: the rebuilt partition marks the pair done
    and the re-delivered input is a duplicate. The rebuild dead-letters the refused pairs
    it reads after its checkpoint; where the crash came after the dead letter was out
    (before the checkpoint: ``join_state``), that one is a second copy of the same record:
    at least once, as the contract has the join's dead letters."""
    settings = settings.replace(partitions=2)
    create_topics(settings)
    ids = [f"r-{i}" for i in range(40)]
    refused = {f"r-{i}" for i in range(0, 40, 7)}
    events = _refused_batch(settings, ids, refused)

    async def scenario(producer):
        lost: asyncio.Future = asyncio.get_running_loop().create_future()  # never acked
        acked: list[asyncio.Future] = []

        async def send(topic, key, value, partition, headers=None):
            if crash == "dead-letter-unsent" and topic == settings.topic("deadletter"):
                return lost
            if crash == "join_state" and topic == settings.topic("join_state"):
                raise Crash(topic)
            future = await producer.send(topic, value, key=key, partition=partition,
                                         headers=headers)
            if topic == settings.topic("scored"):
                acked.append(future)
            return future

        first = asyncio.create_task(Joiner(settings, send).process(events))
        while not (acked and all(f.done() for f in acked)) and not first.done():
            await asyncio.sleep(0.01)
        first.cancel()  # the process dies: its pairs are on scored
        with pytest.raises((asyncio.CancelledError, Crash)):
            await first
        # Restarted worker: the batch was never acknowledged, so Kafka re-delivers it.
        await Joiner(settings, sender(producer)).process(events)

    asyncio.run(run(settings, scenario))
    assert sorted(p["prediction_id"] for p in read_events(settings, "scored")) == sorted(ids)
    letters = _dead_letters(settings)
    assert sorted(letters) == sorted(refused)
    for copies in letters.values():
        assert orjson.loads(copies[0])["error"].startswith("refused_pair: class_label: ")
        assert len(set(copies)) == 1, copies  # copies, if any, are the same record
        assert len(copies) == (1 if crash == "dead-letter-unsent" else 2)
