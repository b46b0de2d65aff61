"""The agent's side of batch delivery (``driftline.batch_consumer``): what a fetch becomes
for one agent, where it waits, and how its offsets are acknowledged.

* :class:`Batch`: one fetch's records for one agent, with each partition's offset range;
* :class:`Inbox`: the batches waiting for one agent (:data:`INBOX_DEPTH` deep; a small
  fetch joins the last one waiting, up to the agent's batch size and :data:`MERGE_BYTES`),
  and the agent's loop (:meth:`Inbox.serve`) that runs the handler on each and then
  acknowledges its ranges;
* :class:`AckedRanges`: a partition's acknowledged offset ranges, and where a commit may go.

None of it depends on Faust's consumer: the consumer (``batch_consumer.Consumer``) fills
the inboxes and takes the acknowledgements through the :class:`Acknowledger` protocol.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import faust
from faust.types import TP

from driftline.errors import ConfigError

INBOX_DEPTH = 2  # batches waiting per agent, besides the one in its handler
# A fetch joins the last waiting batch while both together hold at most this many bytes
# of values: a waiting batch is then one fetch or at most this much (a partition's fetch
# is up to 1 MB, Faust's consumer_max_fetch_size), so memory stays bounded as before.
MERGE_BYTES = 1 << 20
# run(events, wait) -> False if the batch was revoked before it was done; wait(seconds)
# -> True once it is revoked
Run = Callable[[Sequence[Any], Callable[[float], Awaitable[bool]]], Awaitable[bool]]


class Acknowledger(Protocol):
    """What takes a handled batch's offset ranges (the batch consumer)."""

    def ack_ranges(self, ranges: dict[TP, tuple[int, int]]) -> None: ...


class AckedRanges:
    """The acknowledged offsets of one partition, as sorted disjoint ``[begin, end)``.

    >>> r = AckedRanges()
    >>> r.add(10, 20); r.add(25, 30)  # 20-24 are not acknowledged yet
    >>> r.commit_point(10), r.commit_point(20)
    (20, None)
    >>> r.add(20, 25); r.commit_point(20)
    30
    """

    def __init__(self) -> None:
        self._begins: list[int] = []
        self._ends: list[int] = []

    def __len__(self) -> int:
        return len(self._begins)

    def add(self, begin: int, end: int) -> None:
        """Acknowledge ``begin`` to ``end - 1``, merging with the ranges it touches."""
        if end <= begin:
            return
        i = bisect.bisect_left(self._ends, begin)  # first range that ends at or after begin
        j = bisect.bisect_right(self._begins, end)  # ranges from i to j-1 touch [begin, end)
        if i < j:
            begin = min(begin, self._begins[i])
            end = max(end, self._ends[j - 1])
        self._begins[i:j] = [begin]
        self._ends[i:j] = [end]

    def commit_point(self, committed: int | None) -> int | None:
        """The next offset to commit after ``committed`` (None: nothing new), consuming
        the ranges it covers; ranges after a gap wait for the gap to be acknowledged."""
        if not self._begins:
            return None
        if committed is not None and self._begins[0] > committed:
            return None
        end = self._ends[0]
        del self._begins[0], self._ends[0]
        return end if committed is None or end > committed else None


class Event:
    """One record as a batch handler gets it: ``event.message`` is the event itself, with
    the attributes driftline's handlers read from a Faust event's message (``topic``,
    ``partition``, ``offset``, ``key``, ``value``, ``headers`` and ``timestamp`` in
    seconds, as Faust gives it; aiokafka's is in milliseconds)."""

    __slots__ = ("topic", "partition", "offset", "key", "value", "headers", "timestamp")

    def __init__(self, record: Any) -> None:
        self.topic = record.topic
        self.partition = record.partition
        self.offset = record.offset
        self.key = record.key
        self.value = record.value
        self.headers = record.headers
        ts = record.timestamp
        self.timestamp = ts / 1000.0 if ts is not None else None

    @property
    def message(self) -> Event:
        return self


class Batch:
    """One fetch's records for one agent, the offset range per partition, and the bytes
    of their values."""

    __slots__ = ("events", "ranges", "generation", "nbytes")

    def __init__(self, events: list[Event], ranges: dict[TP, tuple[int, int]],
                 generation: int, nbytes: int = 0) -> None:
        self.events = events
        self.ranges = ranges
        self.generation = generation
        self.nbytes = nbytes

    def followed_by(self, later: Batch) -> Batch:
        """This batch and the next fetch's as one: a partition's ranges are contiguous
        (each fetch starts where the last ended), so they join end to end."""
        ranges = dict(self.ranges)
        for tp, (begin, end) in later.ranges.items():
            ranges[tp] = (ranges[tp][0], end) if tp in ranges else (begin, end)
        return Batch(self.events + later.events, ranges, self.generation,
                     self.nbytes + later.nbytes)

    def joins(self, later: Batch, size: int, nbytes: int = MERGE_BYTES) -> bool:
        """Whether ``later`` may join this batch: same generation, at most ``size``
        events and ``nbytes`` bytes together."""
        return (later.generation == self.generation
                and len(self.events) + len(later.events) <= size
                and self.nbytes + later.nbytes <= nbytes)


class Inbox:
    """The batches waiting for one agent, and whether its handler is busy."""

    def __init__(self, name: str, topics: Iterable[str], size: int) -> None:
        self.name = name
        self.topics = frozenset(topics)
        self.size = size  # most events per handler call
        self.pending: deque[Batch] = deque()
        self.busy = False
        self.generation = 0  # bumped by clear(): what was fetched before is stale
        self._changed: asyncio.Condition | None = None

    @property
    def changed(self) -> asyncio.Condition:
        if self._changed is None:  # made on the running loop
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    def _joins_last(self, batch: Batch) -> bool:
        return bool(self.pending) and self.pending[-1].joins(batch, self.size)

    async def wait_room(self, batch: Batch) -> None:
        """Until ``batch`` fits: a place is free, or it joins the last waiting batch."""
        async with self.changed:
            await self.changed.wait_for(
                lambda: len(self.pending) < INBOX_DEPTH or self._joins_last(batch))

    async def put(self, batch: Batch) -> None:
        if self._joins_last(batch):
            self.pending[-1] = self.pending[-1].followed_by(batch)
        else:
            self.pending.append(batch)
        await self._notify()

    async def get(self) -> Batch:
        """The next batch, with the ones queued behind it while the handler was busy
        (same generation, ``size`` events at most): under load the handler gets fewer,
        larger calls, as Faust's ``take_events`` gave it, and at low rates each fetch
        goes at once."""
        async with self.changed:
            await self.changed.wait_for(lambda: bool(self.pending))
            self.busy = True
            batch = self.pending.popleft()
            while (self.pending and self.pending[0].generation == batch.generation
                   and len(batch.events) + len(self.pending[0].events) <= self.size):
                batch = batch.followed_by(self.pending.popleft())
            self.changed.notify_all()  # room for the next fetch
            return batch

    async def done(self) -> None:
        self.busy = False
        await self._notify()

    def clear(self) -> None:
        """Drop what waits (a revoke); the partitions' next owner reads it again."""
        self.pending.clear()
        self.generation += 1
        asyncio.ensure_future(self._notify())

    async def idle(self) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: not self.busy and not self.pending)

    async def cleared_within(self, generation: int, seconds: float) -> bool:
        """Wait up to ``seconds``; True if the inbox was cleared since ``generation``."""
        async with self.changed:
            try:
                await asyncio.wait_for(
                    self.changed.wait_for(lambda: self.generation != generation), seconds)
            except TimeoutError:
                pass
        return self.generation != generation

    async def serve(self, consumer: Acknowledger, run: Run) -> None:
        """The agent's loop: one ``run(events, wait)`` per ``size`` events of a batch,
        then the batch's offset ranges are acknowledged. ``run`` (the agent's
        :class:`~driftline.agents.guard.Guard`) retries what fails, waiting with
        ``wait(seconds)``, which says whether the batch was revoked meanwhile."""
        while True:
            batch = await self.get()
            try:
                if await self._handle(batch, run):
                    consumer.ack_ranges(batch.ranges)
            finally:
                await self.done()

    async def _handle(self, batch: Batch, run: Run) -> bool:
        events, size = batch.events, self.size

        async def revoked_within(seconds: float) -> bool:
            return await self.cleared_within(batch.generation, seconds)

        for start in range(0, len(events), size):
            chunk = events[start:start + size] if len(events) > size else events
            if not await run(chunk, revoked_within):
                return False  # revoked: not acknowledged, read again by the next owner
        return True


def inboxes(app: Any) -> dict[str, Inbox]:  # a faust.App (AppT from a Consumer)
    """Topic name -> the inbox of the batch agent that reads it (registered on ``app``)."""
    registry: dict[str, Inbox] | None = getattr(app, "_driftline_inboxes", None)
    if registry is None:
        registry = {}
        app._driftline_inboxes = registry
    return registry


def register(app: faust.App, name: str, topics: Iterable[str], size: int) -> Inbox:
    """An inbox for the agent ``name`` reading ``topics`` (each read by no other agent)."""
    registry = inboxes(app)
    inbox = Inbox(name, topics, size)
    for topic in inbox.topics:
        if topic in registry:
            raise ConfigError(f"topic {topic} is read by two batch agents "
                              f"({registry[topic].name}, {name})")
        registry[topic] = inbox
    return inbox
