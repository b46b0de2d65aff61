"""Test helpers that talk to the real broker: produce raw messages, read topics back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from types import SimpleNamespace

import orjson
from aiokafka import AIOKafkaProducer

from driftline.app import topic_configs, topics_to_create
from driftline.kafka import ensure_topics, opened_reader, read_partition
from driftline.models.wire import unbatch
from driftline.settings import Settings


def unstarted(make, read):
    """``read(consumer)`` of an aiokafka consumer built by ``make()`` and never started (its
    settings, its client), then stopped: stop() closes the client it built."""
    async def build():
        consumer = make()
        try:
            return read(consumer)
        finally:
            await consumer.stop()

    return asyncio.run(build())


def create_topics(settings: Settings) -> None:
    asyncio.run(ensure_topics(settings, topics_to_create(settings),
                              configs=topic_configs(settings)))


def produce(settings: Settings, messages: Iterable[tuple[str, bytes | None, bytes | None]],
            partition: int | None = None,
            compression: str | None = None) -> list[tuple[str, int, int]]:
    """Send (logical topic, key, value) in order; returns (topic, partition, offset) of each."""
    async def run():
        p = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                             max_request_size=4 * 1024 * 1024, compression_type=compression)
        await p.start()
        try:
            futures = [await p.send(settings.topic(t), v, key=k, partition=partition)
                       for t, k, v in messages]
            meta = await asyncio.gather(*futures)
        finally:
            await p.stop()
        return [(m.topic, m.partition, m.offset) for m in meta]
    return asyncio.run(run())


@contextlib.asynccontextmanager
async def agent_sender(settings: Settings):
    """The ``send(topic, key, value, partition)`` an agent gets from Faust, on a plain
    producer: for driving an agent object directly in a test."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()

    async def send(topic, key, value, partition, headers=None):
        return await producer.send(topic, value, key=key, partition=partition, headers=headers)
    try:
        yield send
    finally:
        await producer.stop()


def as_messages(values, *, topic: str, partition: int, key: bytes, first_offset: int = 0):
    """Raw values as what Faust hands an agent (``event.message``)."""
    return [SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition,
                                                    offset=first_offset + i, key=key,
                                                    value=value))
            for i, value in enumerate(values)]


def read_all(settings: Settings, name: str) -> list:
    """Every record on every partition of a logical topic, read to the true end."""
    async def run():
        out = []
        async with opened_reader(settings) as consumer:  # stopped even if start() fails
            for p in range(settings.partitions):
                async for records in read_partition(consumer, settings.topic(name), p):
                    out.extend(records)
        return out
    return asyncio.run(run())



def read_events(settings: Settings, name: str) -> list[dict]:
    """Every event of a logical topic, arrays unpacked (``scored`` and ``expired`` carry
    JSON arrays of events)."""
    return [e for r in read_all(settings, name) for e in unbatch(r.value)]


def wait_for_events(settings: Settings, name: str, count: int, timeout: float = 60.0,
                    settle: float = 1.5) -> list[dict]:
    """Events of ``name`` once there are at least ``count``, plus ``settle`` seconds for
    any extra (duplicate) event to show up, which the caller then sees and fails on."""
    deadline = time.monotonic() + timeout
    while True:
        events = read_events(settings, name)
        if len(events) >= count:
            time.sleep(settle)
            return read_events(settings, name)
        if time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def prediction(pid: str, value: float = 1.0, model: str = "m", **extra) -> bytes:
    return orjson.dumps({"prediction_id": pid, "model": model, "version": 1,
                         "prediction": value, **extra})


def label(pid: str, value: float = 0.0, **extra) -> bytes:
    return orjson.dumps({"prediction_id": pid, "label": value, **extra})
