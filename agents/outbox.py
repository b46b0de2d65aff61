"""Messages a batch must get onto Kafka before its input offsets may be committed.

The agent collects a batch's output here and :meth:`Outbox.flush` sends it,
retrying only the records that failed (so a retry never duplicates one that
already landed), until every record is acknowledged. Dead letters go through
:meth:`Outbox.dead_letter`: built to fit, and never the reason a batch fails (issue 29).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError

from driftline.agents.guard import TROUBLES
from driftline.models.wire.codec import Rejection
from driftline.models.wire.deadletter import dead_letter_key, dead_letter_value
from driftline.retry import Backoff, retriable

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]] | None
# (topic, key, value, partition, headers) -> awaitable of a future of RecordMetadata
SendFn = Callable[[str, bytes | None, bytes | None, int | None, Headers],
                  Awaitable["asyncio.Future[Any]"]]


@dataclass
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    headers: Headers = None
    # A dead letter: if Kafka refuses it for good, it is logged and counted, not raised.
    best_effort: bool = False


class Outbox:
    def __init__(self) -> None:
        self.records: list[Outgoing] = []

    def add(self, topic: str, key: bytes | None, value: bytes | None,
            partition: int | None, headers: Headers = None) -> int:
        """Queue a record; returns its index, to find its offset after :meth:`flush`."""
        self.records.append(Outgoing(topic, key, value, partition, headers))
        return len(self.records) - 1

    def dead_letter(self, topic: str, key: bytes | None, source: str, partition: int | None,
                    offset: int | None, rejection: Rejection, *, limit: int) -> int:
        """Queue the dead letter of ``rejection`` (input ``source[partition]@offset``,
        keyed by its ``key``) on ``topic``, built to fit in ``limit`` bytes."""
        value = dead_letter_value(source, partition, offset, rejection, limit=limit)
        self.records.append(Outgoing(topic, dead_letter_key(key), value, None,
                                     best_effort=True))
        return len(self.records) - 1

    def __len__(self) -> int:
        return len(self.records)

    async def flush(self, send: SendFn, *, max_delay: float = 5.0) -> list[int]:
        """Send everything, wait for every ack; returns the offset of each record.

        Records that failed with a retriable error (broker down, leader moving,
        timeout) are re-sent with exponential backoff, forever: the batch's input is only
        acknowledged once its output is durable, so giving up would lose output. A
        non-retriable error (a record too large, no authorisation) raises at once:
        retrying could not help and would stall the partition silently. A dead letter
        refused that way is logged, counted and passed over instead (offset -1): the dead
        letter must never be what holds its input back.
        """
        offsets: list[int] = [-1] * len(self.records)
        todo = list(range(len(self.records)))
        backoff = Backoff(0.1, max_delay)
        while todo:
            futures = []
            for i in todo:
                r = self.records[i]
                try:
                    futures.append(await send(r.topic, r.key, r.value, r.partition, r.headers))
                except KafkaError as exc:
                    if not retriable(exc) and not r.best_effort:
                        raise
                    futures.append(_failed(exc))
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = []
            for i, result in zip(todo, results):
                if isinstance(result, BaseException):
                    if not retriable(result):
                        if not self.records[i].best_effort:
                            raise result
                        _unsent(self.records[i], result)
                        continue
                    failed.append((i, result))
                else:
                    offsets[i] = result.offset
            todo = [i for i, _ in failed]
            if todo:
                delay = backoff.next()
                log.warning("%d of %d records not acknowledged (%s); retrying in %.1fs",
                            len(todo), len(self.records), failed[0][1], delay)
                await asyncio.sleep(delay)
        self.records.clear()
        return offsets


def _unsent(record: Outgoing, exc: BaseException) -> None:
    TROUBLES.unsent[record.topic] += 1
    log.error("a dead letter of %d bytes (key %d bytes) could not be sent to %s (%r); "
              "passed over", len(record.value or b""), len(record.key or b""), record.topic,
              exc)


def _failed(exc: BaseException) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.set_exception(exc)
    return fut
