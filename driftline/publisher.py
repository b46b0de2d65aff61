"""Client SDK: how production services put predictions and labels on Kafka.

>>> async with Publisher("kafka://localhost:9092") as pub:      # doctest: +SKIP
...     await pub.log_prediction("p-1", model="houses", version=3, prediction=412.5,
...                              features={"rooms": 4, "area": 88.0})
...     await pub.log_label("p-1", label=398.0)

Events are validated before they are queued (a :class:`ValueError` naming the
field), grouped into JSON-array batch messages per partition, and sent after
``linger`` seconds or when a batch is full; leaving the context flushes. Each
event goes to the partition Kafka's default partitioner gives its
``prediction_id``, so a prediction and its label always meet in one partition.
:class:`SyncPublisher` is the same for code that is not async.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ._loop import LoopThread
from .errors import PublishError, TopicError
from .kafka import ensure_topics, partition_for
from .models.events import LABEL, PREDICTION, Schema
from .settings import Settings

log = logging.getLogger(__name__)


class Publisher:
    """Async publisher of prediction and label events.

    Parameters: ``kafka_url`` (default: ``DRIFTLINE_KAFKA_URL``), ``topic_prefix``
    (default: ``DRIFTLINE_TOPIC_PREFIX``), ``linger`` seconds a batch may wait,
    ``max_batch`` events per message (``1`` sends one event per message, keyed by
    its ``prediction_id``, readable by any Kafka consumer). ``create_topics``
    creates missing input topics with ``DRIFTLINE_PARTITIONS`` partitions.
    """

    def __init__(self, kafka_url: str | None = None, *, topic_prefix: str | None = None,
                 linger: float = 0.05, max_batch: int = 500, create_topics: bool = True,
                 max_buffered: int = 100_000, settings: Settings | None = None) -> None:
        base = settings or Settings.from_env()
        self.settings = base.replace(
            **{k: v for k, v in (("kafka_url", kafka_url), ("topic_prefix", topic_prefix))
               if v is not None})
        if linger < 0:
            raise ValueError("linger must be >= 0 seconds")
        if not 1 <= max_batch <= self.settings.max_batch_events:
            raise ValueError(f"max_batch must be 1 to {self.settings.max_batch_events}")
        self.linger = linger
        self.create_topics = create_topics
        self.max_buffered = max_buffered
        self.max_batch = max_batch
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, int] = {}
        self._buffers: dict[tuple[str, int], list[bytes]] = defaultdict(list)
        self._buffer_bytes: dict[tuple[str, int], int] = defaultdict(int)
        # A batch is sent before it would pass the broker's message size (and the join's
        # DRIFTLINE_MAX_MESSAGE_BYTES, which would dead-letter it whole).
        self.max_batch_bytes = self.settings.max_message_bytes - 1024
        self._lock = asyncio.Lock()  # the periodic flusher and flush() take turns
        self._first_buffered: float | None = None
        self._in_flight: list[asyncio.Future] = []
        self._flusher: asyncio.Task | None = None
        self.sent_events = 0

    async def __aenter__(self) -> "Publisher":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers, acks="all",
            linger_ms=int(self.linger * 1000),
            max_request_size=self.settings.max_message_bytes + 65_536,
        )
        try:
            await self._producer.start()
            if self.create_topics:
                # Asking for an unknown topic would make Tansu auto-create it with 4
                # partitions (DESIGN.md, "Traps"); create it with the configured count.
                await ensure_topics(self.settings, [self.settings.topic("predictions"),
                                                    self.settings.topic("labels")],
                                    check_counts=False)
        except (KafkaError, TopicError) as exc:
            await self._producer.stop()
            self._producer = None
            raise PublishError(f"cannot reach Kafka at {self.settings.kafka_url}: {exc}") from exc
        if self.linger > 0:
            self._flusher = asyncio.create_task(self._flush_periodically())

    async def log_prediction(self, prediction_id: str, *, model: str, prediction: float,
                             version: int | None = None,
                             features: dict[str, float] | None = None,
                             ts: float | None = None) -> None:
        event: dict[str, Any] = {"prediction_id": prediction_id, "model": model,
                                 "prediction": prediction, "version": version}
        if features is not None:
            event["features"] = features
        event["ts"] = time.time() if ts is None else ts
        await self._queue("predictions", PREDICTION, event)

    async def log_label(self, prediction_id: str, *, label: float, ts: float | None = None,
                        model: str | None = None) -> None:
        event: dict[str, Any] = {"prediction_id": prediction_id, "label": label,
                                 "ts": time.time() if ts is None else ts}
        if model is not None:
            event["model"] = model
        await self._queue("labels", LABEL, event)

    async def _queue(self, name: str, schema: Schema, event: dict[str, Any]) -> None:
        if self._producer is None:
            raise PublishError("the Publisher is not started: use 'async with Publisher(...)'")
        event = schema.validate(event)  # SchemaError is a ValueError naming the field
        topic = self.settings.topic(name)
        key = event["prediction_id"].encode()
        partition = partition_for(key, await self._partition_count(topic))
        encoded = orjson.dumps(event)
        if len(encoded) > self.max_batch_bytes:
            raise ValueError(f"event is {len(encoded)} bytes encoded; the limit is "
                             f"{self.max_batch_bytes} (DRIFTLINE_MAX_MESSAGE_BYTES)")
        slot = (topic, partition)
        async with self._lock:
            # A full batch goes out *before* this event joins the buffer: if sending fails,
            # the caller gets the error and this event was not kept, so a retry by the
            # caller cannot publish it twice.
            buffer = self._buffers.get(slot, [])
            if buffer and (len(buffer) >= self.max_batch or
                           self._buffer_bytes[slot] + len(encoded) + 1 > self.max_batch_bytes):
                await self._send(topic, partition)
            if sum(map(len, self._buffers.values())) >= self.max_buffered:
                raise PublishError(f"{self.max_buffered} events are waiting for Kafka; "
                                   f"refusing more until it is reachable again")
            self._buffers[slot].append(encoded)
            self._buffer_bytes[slot] += len(encoded) + 1
            if self._first_buffered is None:
                self._first_buffered = time.monotonic()

    async def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            assert self._producer is not None
            count = self._partitions[topic] = len(await self._producer.partitions_for(topic))
        return count

    async def _send(self, topic: str, partition: int) -> None:
        """Hand one buffer to the producer. Callers hold ``self._lock``."""
        assert self._producer is not None
        events = self._buffers.pop((topic, partition), [])
        self._buffer_bytes.pop((topic, partition), None)
        if not events:
            return
        if len(events) == 1:
            value = events[0]
            key = orjson.loads(value)["prediction_id"].encode()
        else:
            value = b"[" + b",".join(events) + b"]"
            key = None
        try:
            self._in_flight.append(await self._producer.send(topic, value, key=key,
                                                             partition=partition))
        except BaseException as exc:  # KafkaError, or cancelled mid-send: keep the events
            self._buffers[(topic, partition)][:0] = events
            self._buffer_bytes[(topic, partition)] += sum(len(e) + 1 for e in events)
            if isinstance(exc, KafkaError):
                raise PublishError(f"could not queue {len(events)} events for {topic}: "
                                   f"{exc}") from exc
            raise
        self.sent_events += len(events)

    async def flush(self) -> None:
        """Send every buffered event and wait until Kafka has acknowledged all of them."""
        async with self._lock:
            for topic, partition in list(self._buffers):
                await self._send(topic, partition)
            self._first_buffered = None
            in_flight, self._in_flight = self._in_flight, []
        results = await asyncio.gather(*in_flight, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise PublishError(f"{len(errors)} of {len(results)} messages were not delivered: "
                               f"{errors[0]!r}")

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.linger)
            try:
                async with self._lock:
                    if self._first_buffered is not None:
                        for topic, partition in list(self._buffers):
                            await self._send(topic, partition)
                        self._first_buffered = None
                    # Forget delivered messages; failures stay for flush() to report.
                    self._in_flight = [f for f in self._in_flight
                                       if not f.done() or f.exception() is not None]
            except Exception as exc:  # the events stay buffered; flush() will raise
                log.warning("background flush failed: %s", exc)

    async def close(self) -> None:
        """Flush, then disconnect. Safe to call twice."""
        if self._producer is None:
            return
        if self._flusher is not None:
            # Cancel it while holding the lock: it is then asleep or waiting for the lock,
            # never half-way through a send.
            async with self._lock:
                self._flusher.cancel()
            try:
                await self._flusher
            except asyncio.CancelledError:
                pass
            self._flusher = None
        try:
            await self.flush()
        finally:
            await self._producer.stop()
            self._producer = None


class SyncPublisher:
    """:class:`Publisher` for synchronous code; runs its own event loop thread.

    >>> with SyncPublisher("kafka://localhost:9092") as pub:      # doctest: +SKIP
    ...     pub.log_prediction("p-1", model="houses", prediction=412.5)
    """

    def __init__(self, kafka_url: str | None = None, *, timeout: float = 30.0,
                 **options: Any) -> None:
        self.timeout = timeout
        self._loop = LoopThread("driftline-publisher")
        self._publisher = self._call(self._make(kafka_url, options))

    async def _make(self, kafka_url: str | None, options: dict[str, Any]) -> Publisher:
        pub = Publisher(kafka_url, **options)
        await pub.start()
        return pub

    def _call(self, coro) -> Any:
        try:
            return self._loop.run(coro, self.timeout)
        except TimeoutError:
            raise PublishError(f"Kafka did not answer within {self.timeout}s") from None

    def log_prediction(self, prediction_id: str, **fields: Any) -> None:
        self._call(self._publisher.log_prediction(prediction_id, **fields))

    def log_label(self, prediction_id: str, **fields: Any) -> None:
        self._call(self._publisher.log_label(prediction_id, **fields))

    def flush(self) -> None:
        self._call(self._publisher.flush())

    def close(self) -> None:
        if self._loop.closed:
            return
        try:
            self._call(self._publisher.close())
        finally:
            self._loop.close()

    def __enter__(self) -> "SyncPublisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
