"""The join's crash windows, driven deterministically in-process against the real broker.

A SIGKILL rarely lands in the few milliseconds between "scored pairs acknowledged"
and "state records acknowledged"; these tests stop the Joiner exactly there.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from driftline.agents.join import Joiner
from driftline.kafka import partition_for
from kafka_io import create_topics, label, prediction, read_all

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
    async def send(topic, key, value, partition):
        if topic == crash_on_topic:
            raise Crash(topic)
        return await producer.send(topic, value, key=key, partition=partition)
    return send


@pytest.mark.reliability
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
    keys = [r.key for r in read_all(settings, "scored")]
    assert sorted(keys) == sorted(i.encode() for i in ids)
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
        real_read = __import__("driftline.agents.join", fromlist=["read_partition"]).read_partition

        def only_state(consumer, topic, partition, start=0, **kw):
            if topic == settings.topic("scored"):
                return no_records()
            return real_read(consumer, topic, partition, start, **kw)

        monkeypatch.setattr("driftline.agents.join.read_partition", only_state)
        await second.process(events)

    asyncio.run(run(settings, scenario))
    assert len(read_all(settings, "scored")) == 2 * len(ids)


def test_state_survives_handing_a_partition_away_and_back(settings):
    create_topics(settings)
    ids = [f"r-{i}" for i in range(100)]
    preds = [e for e in batch(settings, ids) if e.message.topic.endswith("predictions")]
    labels = [e for e in batch(settings, ids) if e.message.topic.endswith("labels")]

    async def scenario(producer):
        joiner = Joiner(settings, sender(producer))
        await joiner.process(preds)
        assert sum(len(p.predictions) for p in joiner.parts.values()) == len(ids)
        await joiner.drop(list(joiner.parts))  # rebalance: partitions revoked
        assert joiner.parts == {}
        other = Joiner(settings, sender(producer))  # the worker that gets them
        await other.process(labels[:60])
        await other.process(labels)  # 60 of these are duplicates now
        return other

    other = asyncio.run(run(settings, scenario))
    pairs = [orjson.loads(r.value) for r in read_all(settings, "scored")]
    assert sorted(p["prediction_id"] for p in pairs) == sorted(ids)
    assert other.stats["duplicate_labels"] == 60
