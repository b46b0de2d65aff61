"""One lane per receiver: its own queue, its own retries, its own progress.

A :class:`Lane` settles the alerts offered to it one at a time, in the order they were
offered (so per partition in offset order), with ``settle(item)``: push (retried as
:mod:`.receivers` says) or record a fixed outcome, and get the records onto Kafka. A
receiver that is down stalls only its lane; the others go on.

**Progress.** ``mark[q]`` is the next offset of partition ``q`` the lane accepts:
:meth:`Lane.offer` drops what is below it (already offered, or settled before a
restart), so the stream and a recovery may both offer an alert and it is queued once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from driftline.agents.delivery.receivers import Result, Target

log = logging.getLogger(__name__)


@dataclass
class Item:
    """One alert for one target, and where it came from."""

    partition: int
    offset: int
    last: bool                 # the last alert of its message: settling it passes the offset
    alert: dict[str, Any]
    started: float | None      # when its episode fired (a resolve's Alertmanager startsAt)
    settled: Result | None     # silenced or inhibited: recorded, not pushed
    key: bytes | None          # the alerts record's key and topic, for a dead letter
    topic: str
    index: int | None          # its place in a batch record (None: a record of one)


def progress_key(target: Target) -> bytes:
    """The key of ``target``'s progress records: stable while its URL is (a hash: the URL
    may hold a secret), whatever its place in the list."""
    return hashlib.sha256(f"{target.kind} {target.url}".encode()).hexdigest()[:32].encode()


class Lane:
    def __init__(self, target: Target, settle: Callable[[Item], Awaitable[None]], *,
                 capacity: int, retry_delay: float = 1.0) -> None:
        self.target = target
        self.settle = settle
        self.capacity = capacity
        self.retry_delay = retry_delay
        self.queue: deque[Item] = deque()
        self.current: Item | None = None
        self.mark: dict[int, int] = {}   # partition -> next offset accepted
        self.changed = asyncio.Event()   # set whenever the queue shrinks or grows
        self.task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self.queue) + (self.current is not None)

    def offer(self, item: Item) -> bool:
        """Queue ``item`` unless its offset is below the partition's mark."""
        if item.offset < self.mark.get(item.partition, 0):
            return False
        if item.last:
            self.mark[item.partition] = item.offset + 1
        self.queue.append(item)
        self._wake()
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())
        return True

    def raise_mark(self, partition: int, offset: int) -> None:
        self.mark[partition] = max(self.mark.get(partition, 0), offset)

    def drop(self, partition: int) -> int:
        """Forget the queued alerts of ``partition`` (revoked: their next owner recovers
        them from the progress records). One being pushed finishes. Returns how many."""
        kept = deque(i for i in self.queue if i.partition != partition)
        dropped = len(self.queue) - len(kept)
        self.queue = kept
        self.mark.pop(partition, None)
        self._wake()
        return dropped

    async def room(self) -> None:
        """Wait until at most ``capacity`` alerts wait here."""
        while len(self) > self.capacity:
            self.changed.clear()
            await self.changed.wait()

    async def drained(self) -> None:
        """Wait until every offered alert is settled."""
        while len(self):
            self.changed.clear()
            await self.changed.wait()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    def _wake(self) -> None:
        self.changed.set()

    async def _run(self) -> None:
        while self.queue:
            item = self.current = self.queue.popleft()
            try:
                while True:
                    try:
                        await self.settle(item)
                        break
                    except Exception:  # a bug or Kafka refusing for good: never lose it
                        log.exception("delivery lane %s failed settling %s; retrying in "
                                      "%.1fs", self.target.name, item.alert.get("alert_id"),
                                      self.retry_delay)
                        await asyncio.sleep(self.retry_delay)
            finally:
                self.current = None
                self._wake()
