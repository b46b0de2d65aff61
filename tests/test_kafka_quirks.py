"""Tansu's two quirks that driftline works around, shown on the live broker, and the
workaround shown harmless on Apache Kafka."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from kafka_io import unstarted

from driftline.app import FETCH_MAX_WAIT_MS, create_app
from driftline.kafka import ensure_topics, read_partition, reader, true_end_offset

pytestmark = pytest.mark.integration


def two_batches_then_ends(settings) -> tuple[int, int, int]:
    """Write a batch of 10 and a batch of 7 records to one partition; return what
    ``end_offsets`` says, what :func:`true_end_offset` says and how many records a
    read to the end returns."""
    topic = settings.topic_prefix + "quirk"

    async def run():
        await ensure_topics(settings.replace(partitions=1), [topic])
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers,
                                    linger_ms=50)
        await producer.start()
        try:
            for size in (10, 7):  # two record batches
                futures = [await producer.send(topic, b"x", partition=0) for _ in range(size)]
                await producer.flush()
                await asyncio.gather(*futures)
        finally:
            await producer.stop()
        consumer = reader(settings)
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            listed = (await consumer.end_offsets([tp]))[tp]
            true_end = await true_end_offset(consumer, tp)
            read = sum([len(r) async for r in read_partition(consumer, topic, 0)])
        finally:
            await consumer.stop()
        return listed, true_end, read

    return asyncio.run(run())


@pytest.mark.tansu_only
def test_end_offsets_undercounts_and_true_end_offset_does_not(settings):
    """ListOffsets(latest) says 'base offset of the last batch + 1' on Tansu."""
    listed, true_end, read = two_batches_then_ends(settings)
    assert (true_end, read) == (17, 17)
    # Tansu's answer (real Kafka says 17, and true_end_offset is right on both). If this
    # starts failing, Tansu was fixed: the adapter can stay, the README's note can go.
    assert listed == 11  # 10 + 1: where the second batch starts, plus one


@pytest.mark.kafka_only
def test_on_apache_kafka_true_end_offset_is_end_offsets(settings):
    """The Tansu workaround is harmless on real Kafka: both say 17."""
    listed, true_end, read = two_batches_then_ends(settings)
    assert listed == true_end == read == 17


def test_the_worker_consumer_does_not_wait_1500_ms_per_fetch(settings):
    """Faust hard-codes fetch_max_wait_ms=1500; on Tansu that costs ~450 ms per stage."""
    def make():
        app = create_app(settings.replace(web_port=0), agents=("join",))
        return app.consumer._thread._create_worker_consumer(app.transport)

    assert unstarted(make, lambda c: c._fetch_max_wait_ms) == FETCH_MAX_WAIT_MS == 20


def test_the_readers_that_rebuild_state_do_not_wait_500_ms_per_fetch(settings):
    """aiokafka's default fetch_max_wait_ms is 500: on Tansu every fetch of a rebuild then
    waited for it (the monitor took 3-4 s to rebuild 8 nearly empty partitions)."""
    assert unstarted(lambda: reader(settings), lambda c: c._fetch_max_wait_ms) == \
        FETCH_MAX_WAIT_MS
