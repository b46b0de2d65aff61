"""One partition lifecycle for the stateful agents (join, monitor, trigger).

Each keeps a state per input partition it owns, and every one of them goes through
the same steps:

* **assignment** - Faust's ``on_partitions_assigned`` names the partitions this worker
  owns now; states of partitions it no longer owns are dropped;
* **rebuild** - on the first batch that needs any partition, every owned partition
  without a state is rebuilt at once (one reader shared by all; no later batch stalls
  for a rebuild of its own) by the agent's ``recover(consumer, partition, out)``; what
  the rebuilds queued on ``out`` (alerts or requests a crash lost) is sent and
  acknowledged before the batch goes on;
* **revoke** - ``on_partitions_revoked``: the states go (``on_drop`` sees each one) and
  are rebuilt from Kafka if the partitions come back.

A state is kept only once its whole rebuild has finished, so a rebuild that fails is
simply tried again by the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import faust

from driftline.agents.outbox import Outbox, SendFn
from driftline.kafka import opened_reader
from driftline.settings import Settings

S = TypeVar("S")
Recover = Callable[[Any, int, Outbox], Awaitable[S]]


class PartitionStates(Generic[S]):
    """The states of the input partitions of ``topics`` this worker owns.

    ``lock``, if given, is held while states are dropped, so that a revoke never lands
    in the middle of a batch that holds it too (the join's)."""

    def __init__(self, settings: Settings, send: SendFn, topics: Iterable[str],
                 recover: Recover[S], *, on_drop: Callable[[int, S], None] | None = None,
                 lock: asyncio.Lock | None = None) -> None:
        self.settings = settings
        self.send = send
        self.topics = frozenset(topics)
        self.recover = recover
        self.on_drop = on_drop
        self.lock = lock
        self.states: dict[int, S] = {}
        self.assigned: set[int] = set()

    def __getitem__(self, partition: int) -> S:
        return self.states[partition]

    def __contains__(self, partition: object) -> bool:
        return partition in self.states

    def __iter__(self) -> Iterator[int]:
        return iter(self.states)

    def __len__(self) -> int:
        return len(self.states)

    def items(self) -> Iterable[tuple[int, S]]:
        return self.states.items()

    def values(self) -> Iterable[S]:
        return self.states.values()

    async def ensure(self, partitions: Iterable[int]) -> None:
        """Rebuild every owned (or named) partition that has no state yet."""
        missing = sorted((set(partitions) | self.assigned) - self.states.keys())
        if not missing:
            return
        out = Outbox()
        rebuilt: dict[int, S] = {}
        async with opened_reader(self.settings) as consumer:
            for partition in missing:
                rebuilt[partition] = await self.recover(consumer, partition, out)
        if len(out):
            await out.flush(self.send)
        # Kept only now: a rebuild whose re-sends failed is done again by the next batch
        # (its alerts or requests would otherwise count as published and never go out).
        self.states.update(rebuilt)

    async def drop(self, partitions: Iterable[int]) -> None:
        """Forget partitions this worker no longer owns; they are rebuilt if they return."""
        async with self.lock if self.lock is not None else contextlib.nullcontext():
            for partition in list(partitions):
                state = self.states.pop(partition, None)
                if state is not None and self.on_drop is not None:
                    self.on_drop(partition, state)

    async def assign(self, partitions: Iterable[int]) -> None:
        """This worker owns ``partitions`` now (of ``topics``); the others' states go."""
        self.assigned = set(partitions)
        await self.drop(set(self.states) - self.assigned)

    def install(self, app: faust.App) -> None:
        """Follow Faust's rebalance callbacks for the partitions of ``topics``."""

        # mode types a receiver as (sender, *args, signal=..., **kwargs); ours take the
        # partitions positionally, as Faust sends them.
        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def on_revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
            await self.drop({tp.partition for tp in revoked if tp.topic in self.topics})

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]
        async def on_assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
            await self.assign({tp.partition for tp in assigned if tp.topic in self.topics})
