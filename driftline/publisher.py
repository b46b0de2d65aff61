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
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ._loop import LoopThread
from .errors import ConfigError, PublishError, TopicError
from .kafka import client_options, ensure_topics, partition_for, security_error
from .models.wire import LABEL, PREDICTION, EventKind, array, encode
from .outgoing import Outgoing, Slot
from .retry import retriable
from .settings import Settings

log = logging.getLogger(__name__)


def _prediction_id(encoded: bytes, is_label: bool) -> str:
    """The key of a single-event message: the id of the event the Publisher encoded."""
    return (LABEL if is_label else PREDICTION).decode_one(encoded).prediction_id


class Publisher:
    """Async publisher of prediction and label events.

    Parameters: ``kafka_url`` (default: ``DRIFTLINE_KAFKA_URL``), ``topic_prefix``
    (default: ``DRIFTLINE_TOPIC_PREFIX``), ``linger`` seconds a batch may wait,
    ``max_batch`` events per message (``1`` sends one event per message, keyed by
    its ``prediction_id``, readable by any Kafka consumer). ``create_topics``
    creates missing input topics with ``DRIFTLINE_PARTITIONS`` partitions.

    While Kafka is unreachable, events are kept and sent again when it is back
    (one message in flight per partition, so a partition's events keep their order).
    ``max_buffered`` bounds the events accepted but not yet acknowledged: at the bound a
    ``log_*`` call waits up to ``max_block`` seconds for room, then raises
    :class:`PublishError` (like Kafka's ``buffer.memory`` and ``max.block.ms``).
    :meth:`flush` (and leaving the context) waits up to ``delivery_timeout`` seconds.
    """

    def __init__(self, kafka_url: str | None = None, *, topic_prefix: str | None = None,
                 linger: float = 0.05, max_batch: int = 500, create_topics: bool = True,
                 max_buffered: int = 100_000, max_block: float = 60.0,
                 delivery_timeout: float = 120.0, settings: Settings | None = None) -> None:
        base = settings or Settings.from_env()
        self.settings = base.replace(
            **{k: v for k, v in (("kafka_url", kafka_url), ("topic_prefix", topic_prefix))
               if v is not None})
        if linger < 0:
            raise ValueError("linger must be >= 0 seconds")
        if not 1 <= max_batch <= self.settings.max_batch_events:
            raise ValueError(f"max_batch must be 1 to {self.settings.max_batch_events}")
        if max_buffered < 1 or max_block < 0 or delivery_timeout < 0:
            raise ValueError("max_buffered must be >= 1, max_block and delivery_timeout >= 0")
        self.linger = linger
        self.create_topics = create_topics
        self.max_buffered = max_buffered
        self.max_block = max_block
        self.delivery_timeout = delivery_timeout
        self.max_batch = max_batch
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, int] = {}
        # At most one message per partition handed to the producer and not yet answered:
        # aiokafka would otherwise block a send for its request timeout (40 s) once its
        # own per-partition batch is full and the broker is down, and a message retried
        # after a later one was delivered would land out of order.
        self._in_flight: dict[Slot, tuple[asyncio.Future, list[bytes]]] = {}
        self._pending = 0  # accepted, not yet acknowledged (buffered + in flight)
        self._undeliverable: list[tuple[int, BaseException]] = []  # for flush() to report
        self._last_error: BaseException | None = None
        # A batch is sent before it would pass the broker's message size (and the join's
        # DRIFTLINE_MAX_MESSAGE_BYTES, which would dead-letter it whole).
        self.max_batch_bytes = self.settings.max_message_bytes - 1024
        self._outgoing = Outgoing(max_batch, self.max_batch_bytes)  # not handed to Kafka yet
        self._lock = asyncio.Lock()  # the periodic flusher and flush() take turns
        self._flusher: asyncio.Task | None = None
        self.sent_events = 0  # acknowledged by Kafka

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            # No linger of its own: the Publisher has batched already, and with one
            # message in flight per partition a linger would only delay each round trip.
            **client_options(self.settings), acks="all", linger_ms=0,
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
            # Known now, so that events can be buffered while Kafka is unreachable later.
            for name in ("predictions", "labels"):
                await self._partition_count(self.settings.topic(name))
        except (KafkaError, TopicError, PublishError, ConfigError) as exc:
            await self._producer.stop()
            self._producer = None
            cause = exc if isinstance(exc, ConfigError) else await security_error(self.settings)
            raise PublishError(f"cannot reach Kafka at {self.settings.kafka_url}: "
                               f"{cause or exc}") from exc
        if self.linger > 0:
            self._flusher = asyncio.create_task(self._flush_periodically())

    @property
    def pending(self) -> int:
        """Events accepted but not yet acknowledged by Kafka."""
        return self._pending

    async def log_prediction(self, prediction_id: str, *, model: str,
                             prediction: float | str, version: int | None = None,
                             features: dict[str, float | str | bool | None] | None = None,
                             ts: float | None = None, segment: str | None = None,
                             probabilities: dict[str, float] | None = None) -> None:
        """``prediction``: a regression's value, a binary classifier's P(1), or a
        multiclass one's class, with its ``probabilities`` ({class: p}) when it has them."""
        event: dict[str, Any] = {"prediction_id": prediction_id, "model": model,
                                 "prediction": prediction, "version": version}
        if features is not None:
            event["features"] = features
        if probabilities is not None:
            event["probabilities"] = probabilities
        event["ts"] = time.time() if ts is None else ts
        if segment is not None:
            event["segment"] = segment
        await self._queue("predictions", PREDICTION, event)

    async def log_label(self, prediction_id: str, *, label: float | str, ts: float | None = None,
                        model: str | None = None) -> None:
        event: dict[str, Any] = {"prediction_id": prediction_id, "label": label,
                                 "ts": time.time() if ts is None else ts}
        if model is not None:
            event["model"] = model
        await self._queue("labels", LABEL, event)

    async def _queue(self, name: str, kind: EventKind[Any], event: dict[str, Any]) -> None:
        if self._producer is None:
            raise PublishError("the Publisher is not started: use 'async with Publisher(...)'")
        valid = kind.validate(event)  # SchemaError is a ValueError naming the field
        topic = self.settings.topic(name)
        key = valid.prediction_id.encode()
        partition = partition_for(key, await self._partition_count(topic))
        encoded = encode(valid)
        if len(encoded) > self.max_batch_bytes:
            raise ValueError(f"event is {len(encoded)} bytes encoded; the limit is "
                             f"{self.max_batch_bytes} (DRIFTLINE_MAX_MESSAGE_BYTES)")
        await self._wait_for_room()
        slot = (topic, partition)
        async with self._lock:
            self._reap(slot)
            # A full batch goes out *before* this event joins the buffer: if handing it to
            # the producer fails, the caller gets the error and this event was not kept,
            # so a retry by the caller cannot publish it twice.
            if slot not in self._in_flight and self._outgoing.full(slot, len(encoded)):
                await self._send(slot)
            self._outgoing.add(slot, encoded)
            self._pending += 1

    async def _wait_for_room(self) -> None:
        """Wait up to ``max_block`` seconds while ``max_buffered`` events are pending."""
        if self._pending < self.max_buffered:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_block
        while True:
            async with self._lock:
                try:
                    await self._pump()  # the periodic flusher may be off (linger=0)
                except PublishError as exc:
                    if not exc.retriable:
                        raise
            if self._pending < self.max_buffered:
                return
            if loop.time() >= deadline:
                last = repr(self._last_error) if self._last_error else "none yet"
                raise PublishError(
                    f"{self._pending} events are waiting for Kafka at {self.settings.kafka_url}"
                    f", the most this Publisher holds (max_buffered={self.max_buffered}), and "
                    f"no room came free within {self.max_block:g}s (last error: {last}); "
                    f"this event was refused. Check that Kafka is reachable, then send it "
                    f"again; the events accepted before it stay buffered and are sent when "
                    f"Kafka is back (flush() or close() waits for them)")
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))

    async def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            assert self._producer is not None
            try:
                found = await asyncio.wait_for(self._producer.partitions_for(topic),
                                               self.max_block)
            except (KafkaError, TimeoutError) as exc:
                raise PublishError(f"no partitions of {topic} from Kafka at "
                                   f"{self.settings.kafka_url}: {exc!r}") from exc
            count = self._partitions[topic] = len(found)
        return count

    async def _send(self, slot: Slot) -> None:
        """Hand the oldest message of ``slot`` to the producer. Callers hold ``self._lock``
        and have checked that nothing of ``slot`` is in flight."""
        assert self._producer is not None
        events = self._outgoing.take(slot)
        if not events:
            return
        topic, partition = slot
        if len(events) == 1:
            value = events[0]
            key = _prediction_id(value, topic == self.settings.topic("labels")).encode()
        else:
            value = array(events)
            key = None
        try:
            future = await asyncio.wait_for(
                self._producer.send(topic, value, key=key, partition=partition),
                self.max_block)
        except BaseException as exc:  # KafkaError, timed out, or cancelled: keep the events
            self._outgoing.restore(slot, events)
            if isinstance(exc, (KafkaError, TimeoutError)):
                self._last_error = exc
                error = PublishError(f"could not hand {len(events)} events for {topic} to "
                                     f"Kafka at {self.settings.kafka_url}: {exc!r}")
                error.retriable = retriable(exc, unknown_server_error=True)
                raise error from exc
            raise
        self._in_flight[slot] = (future, events)

    def _reap(self, only: Slot | None = None) -> None:
        """Account for answered messages (of every partition, or ``only`` one's):
        acknowledged, to send again, or undeliverable."""
        slots = list(self._in_flight) if only is None else [only]
        for slot in slots:
            entry = self._in_flight.get(slot)
            if entry is None or not entry[0].done():
                continue
            future, events = self._in_flight.pop(slot)
            exc = asyncio.CancelledError() if future.cancelled() else future.exception()
            if exc is None:
                self.sent_events += len(events)
                self._pending -= len(events)
            elif retriable(exc, unknown_server_error=True):
                self._last_error = exc
                self._outgoing.restore(slot, events)  # sent again, still before newer events
            else:
                self._pending -= len(events)
                self._undeliverable.append((len(events), exc))

    async def _pump(self) -> None:
        """Send the oldest message of every partition with nothing in flight.
        Callers hold ``self._lock``."""
        self._reap()
        for slot in [s for s in self._outgoing if s not in self._in_flight]:
            await self._send(slot)

    async def flush(self, timeout: float | None = None) -> None:
        """Send every buffered event and wait until Kafka has acknowledged all of them.

        Messages Kafka could not take for a reason that may pass (broker down, leader
        moving) are sent again, for up to ``timeout`` seconds (``delivery_timeout`` by
        default); then :class:`PublishError`, and the events stay buffered for a later
        flush. Events Kafka refused for good are reported by the error and dropped."""
        loop = asyncio.get_running_loop()
        timeout = self.delivery_timeout if timeout is None else timeout
        deadline = loop.time() + timeout
        while True:
            async with self._lock:
                try:
                    await self._pump()
                except PublishError as exc:
                    if not exc.retriable:
                        raise
                failed, self._undeliverable = self._undeliverable, []
                waiting = [future for future, _ in self._in_flight.values()]
            if failed:
                raise PublishError(f"{sum(n for n, _ in failed)} events in {len(failed)} "
                                   f"messages were not delivered: {failed[0][1]!r}")
            if not waiting and not self._outgoing:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise PublishError(
                    f"{self._pending} events not delivered to Kafka at "
                    f"{self.settings.kafka_url} within {timeout:g}s (last error: "
                    f"{self._last_error!r}); they stay buffered: flush() again once Kafka "
                    f"is reachable")
            if waiting:
                await asyncio.wait(waiting, timeout=min(remaining, 1.0),
                                   return_when=asyncio.FIRST_COMPLETED)
            else:  # nothing could be handed over: wait a little before trying again
                await asyncio.sleep(min(remaining, 0.1))

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.linger)
            try:
                async with self._lock:
                    await self._pump()
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

    def __enter__(self) -> SyncPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
