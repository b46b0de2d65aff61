"""The Publisher SDK against the real broker and a real worker."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from kafka_io import create_topics, read_all, wait_for_events

from driftline import Publisher, PublishError, SchemaError, SyncPublisher
from driftline.kafka import partition_for

pytestmark = pytest.mark.integration


@pytest.mark.kafka
def test_published_pairs_are_scored(settings, worker_factory):
    create_topics(settings)
    worker_factory(settings)

    async def publish():
        async with Publisher(settings.kafka_url, topic_prefix=settings.topic_prefix) as pub:
            for i in range(300):
                await pub.log_prediction(f"pub-{i}", model="houses", version=2,
                                         prediction=float(i), features={"rooms": 3})
            for i in range(300):
                await pub.log_label(f"pub-{i}", label=float(i) - 0.5)

    asyncio.run(publish())
    scored = wait_for_events(settings, "scored", 300)
    assert len(scored) == 300 and {p["error"] for p in scored} == {0.5}
    assert {p["model"] for p in scored} == {"houses"} and {p["version"] for p in scored} == {2}


def test_events_are_batched_per_home_partition(settings):
    create_topics(settings)

    async def publish():
        async with Publisher(settings.kafka_url, topic_prefix=settings.topic_prefix,
                             linger=5.0, max_batch=100) as pub:
            for i in range(250):
                await pub.log_prediction(f"b-{i}", model="m", prediction=1.0)
            assert pub.sent_events == 0  # still lingering
        return pub.sent_events

    assert asyncio.run(publish()) == 250  # leaving the context flushed what lingered
    records = read_all(settings, "predictions")
    assert 1 < len(records) < 250
    events = 0
    for r in records:
        value = orjson.loads(r.value)
        batch = value if isinstance(value, list) else [value]
        events += len(batch)
        assert {partition_for(e["prediction_id"].encode(), settings.partitions)
                for e in batch} == {r.partition}
    assert events == 250


def test_max_batch_one_sends_plain_events_keyed_by_id(settings):
    create_topics(settings)

    async def publish():
        async with Publisher(settings.kafka_url, topic_prefix=settings.topic_prefix,
                             max_batch=1) as pub:
            await pub.log_label("k-1", label=1.0)

    asyncio.run(publish())
    [record] = read_all(settings, "labels")
    assert record.key == b"k-1"
    assert orjson.loads(record.value)["label"] == 1.0


def test_invalid_events_are_refused_before_sending(settings):
    create_topics(settings)

    async def publish():
        async with Publisher(settings.kafka_url, topic_prefix=settings.topic_prefix) as pub:
            with pytest.raises(ValueError, match="prediction: must be a finite number"):
                await pub.log_prediction("x", model="m", prediction=float("nan"))
            with pytest.raises(SchemaError, match="model: must match"):
                await pub.log_prediction("x", model="no spaces", prediction=1.0)
            with pytest.raises(ValueError, match=r"features\.a"):
                await pub.log_prediction("x", model="m", prediction=1.0, features={"a": ""})

    asyncio.run(publish())
    assert read_all(settings, "predictions") == []


def test_sync_publisher(settings):
    create_topics(settings)
    with SyncPublisher(settings.kafka_url, topic_prefix=settings.topic_prefix) as pub:
        pub.log_prediction("s-1", model="m", prediction=2.0)
        pub.log_label("s-1", label=1.0)
    assert len(read_all(settings, "predictions")) == 1
    assert len(read_all(settings, "labels")) == 1


@pytest.mark.reliability
def test_unreachable_broker_is_a_publish_error():
    async def publish():
        async with Publisher("kafka://127.0.0.1:1", topic_prefix="x."):
            pass

    started = time.monotonic()
    with pytest.raises(PublishError, match="cannot reach Kafka at kafka://127.0.0.1:1"):
        asyncio.run(publish())
    assert time.monotonic() - started < 60


def test_batches_stay_under_the_message_size_limit(settings):
    create_topics(settings)
    small = settings.replace(max_message_bytes=20_000)
    features = {f"feature_{j}": float(j) for j in range(100)}  # ~2.8 kB per event

    async def publish():
        async with Publisher(settings=small, max_batch=500, linger=5.0) as pub:
            for i in range(60):
                await pub.log_prediction(f"big-{i}", model="m", prediction=1.0,
                                         features=features)
            with pytest.raises(ValueError, match="bytes encoded; the limit is"):
                await pub.log_prediction("huge", model="m", prediction=1.0,
                                         features={f"a_rather_long_feature_name_{j}": 1.0
                                                   for j in range(1000)})

    asyncio.run(publish())
    records = read_all(settings, "predictions")
    assert all(len(r.value) <= small.max_message_bytes for r in records)
    assert sum(len(orjson.loads(r.value)) if r.value.startswith(b"[") else 1
               for r in records) == 60
