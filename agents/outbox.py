"""Messages a batch must get onto Kafka before its input offsets may be committed.

The agent collects a batch's output here and :meth:`Outbox.flush` sends it,
retrying only the records that failed (so a retry never duplicates one that
already landed), until every record is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError

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


class Outbox:
    def __init__(self) -> None:
        self.records: list[Outgoing] = []

    def add(self, topic: str, key: bytes | None, value: bytes | None,
            partition: int | None, headers: Headers = None) -> int:
        """Queue a record; returns its index, to find its offset after :meth:`flush`."""
        self.records.append(Outgoing(topic, key, value, partition, headers))
        return len(self.records) - 1

    def __len__(self) -> int:
        return len(self.records)

    async def flush(self, send: SendFn, *, max_delay: float = 5.0) -> list[int]:
        """Send everything, wait for every ack; returns the offset of each record.

        Records that failed with a retriable error (broker down, leader moving,
        timeout) are re-sent with exponential backoff, forever: the batch's input is only
        acknowledged once its output is durable, so giving up would lose output. A
        non-retriable error (a record too large, no authorisation) raises at once:
        retrying could not help and would stall the partition silently.
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
                    if not retriable(exc):
                        raise
                    futures.append(_failed(exc))
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = []
            for i, result in zip(todo, results):
                if isinstance(result, BaseException):
                    if not retriable(result):
                        raise result
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


def _failed(exc: BaseException) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.set_exception(exc)
    return fut
