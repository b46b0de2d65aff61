"""No record can jam a partition (issue 29): how a batch that fails is retried.

Every agent's batch handler runs under :class:`Guard` (``agents/wiring.py`` wires it):

* **an I/O error** (the broker or Redis unreachable, a timeout: :func:`io_error`) is
  retried with backoff for as long as it lasts, as before: waiting is what helps;
* **any other error** (a bug, a value that cannot be encoded, a record the broker
  refuses) would recur on every retry. The batch is tried ``attempts`` times in all;
  then it is split in halves, each tried on its own, down to the single record that
  fails. That record goes to the dead-letter topic as ``internal_error`` with the
  agent's name and the error, it is counted (:data:`TROUBLES`, Prometheus'
  ``driftline_internal_errors_total``), and the records after it go on. A poison record
  in a batch of n costs about 2·log2(n) extra handler calls.

Before each retry after such an error the agent's state of the batch's partitions is
dropped (``reset``), so the retry rebuilds it from Kafka, as after a kill -9 or a
rebalance: a handler that failed half-way may have changed its state without writing
it, and the rebuild is the path every crash test proves. The records of a batch that
failed half-way may have reached the output already; every agent's output is
idempotent on re-delivery (the join by ``prediction_id``, the monitor by source offset,
alerts and requests by id), as it must be for a crash anyway.

Timers (the join's expiry, the monitor's metrics, delivery's re-sends) run under
:func:`guarded_timer`: an error is logged and counted and the next tick runs, rather
than the error ending the worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions

from driftline.retry import Backoff, retriable

log = logging.getLogger(__name__)

ATTEMPTS = 3  # tries of a batch, and of a single record, before an error counts as its own
Handle = Callable[[Sequence[Any]], Awaitable[None]]
# wait(seconds) -> True when the batch's partitions were taken away meanwhile (stop)
Wait = Callable[[float], Awaitable[bool]]
DeadLetter = Callable[[Any, BaseException], Awaitable[None]]
Reset = Callable[[set[int]], Awaitable[None]]


@dataclass
class Troubles:
    """What went wrong inside this process's agents, for ``/metrics``: one per process,
    as prometheus_client keeps its default registry (an agent is one per process). The
    guard counts the first three; :mod:`driftline.agents.outbox` the dead letters that
    Kafka refused.

    Keys are agent or timer names (``driftline.join``, ``driftline.join.expiry``)."""

    failures: Counter[str] = field(default_factory=Counter)  # handler calls that raised
    io_retries: Counter[str] = field(default_factory=Counter)  # ... and waited on I/O
    internal_errors: Counter[str] = field(default_factory=Counter)  # records dead-lettered
    unsent: Counter[str] = field(default_factory=Counter)  # dead letters Kafka refused


TROUBLES = Troubles()


def io_error(exc: BaseException) -> bool:
    """Whether waiting can help: a Kafka error :func:`~driftline.retry.retriable` says
    so of, Redis unreachable or timing out, a driftline error marked ``retriable``
    (``RegistryUnavailable``), anywhere in the exception's chain of explicit causes
    (``raise ... from``; not the implicit context, or a bug raised while handling an I/O
    error would be waited on forever).

    >>> io_error(ConnectionRefusedError()), io_error(ValueError("bug"))
    (True, False)
    >>> try:
    ...     try:
    ...         raise redis.exceptions.TimeoutError("slow")
    ...     except redis.exceptions.TimeoutError as inner:
    ...         raise RuntimeError("wrapped") from inner
    ... except RuntimeError as outer:
    ...     io_error(outer)
    True
    >>> try:
    ...     try:
    ...         raise ConnectionResetError()
    ...     except ConnectionResetError:
    ...         {}["a bug while handling it"]
    ... except KeyError as bug:
    ...     io_error(bug)
    False
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if (retriable(current)
                or isinstance(current, (redis.exceptions.ConnectionError,
                                        redis.exceptions.TimeoutError))
                or getattr(current, "retriable", False) is True):
            return True
        current = current.__cause__
    return False


async def _sleep(seconds: float) -> bool:
    await asyncio.sleep(seconds)
    return False


class Guard:
    """Runs an agent's handler over a batch until every record is handled or
    dead-lettered (see the module docstring).

    ``dead_letter(event, exc)`` sends one record to the dead-letter topic; ``reset``
    drops the agent's state of the given input partitions (None: a stateless agent)."""

    def __init__(self, name: str, handle: Handle, dead_letter: DeadLetter, *,
                 reset: Reset | None = None, attempts: int = ATTEMPTS,
                 first_delay: float = 0.1, max_delay: float = 5.0) -> None:
        self.name = name
        self.handle = handle
        self.dead_letter = dead_letter
        self.reset = reset
        self.attempts = attempts
        self.first_delay = first_delay
        self.max_delay = max_delay

    async def run(self, events: Sequence[Any], wait: Wait = _sleep) -> bool:
        """True once every event is handled or dead-lettered; False if ``wait`` said
        the partitions were taken away (nothing more is done: the next owner reads
        the batch again)."""
        return await self._run(events, wait, self.attempts)

    async def _run(self, events: Sequence[Any], wait: Wait, attempts: int) -> bool:
        backoff = Backoff(self.first_delay, self.max_delay)
        failures = 0
        while True:
            try:
                await self.handle(events)
                return True
            except Exception as exc:
                if io_error(exc):
                    TROUBLES.io_retries[self.name] += 1
                    delay = backoff.next()
                    log.warning("%s: a batch of %d records waits on I/O (%r); retrying in "
                                "%.1f s", self.name, len(events), exc, delay)
                    if await wait(delay):
                        return False
                    continue
                failures += 1
                TROUBLES.failures[self.name] += 1
                log.error("%s: a batch of %d records failed (%d of %d tries)", self.name,
                          len(events), failures, attempts, exc_info=exc)
                if self.reset is not None:
                    await self.reset({e.message.partition for e in events})
                if failures >= attempts:
                    error = exc
                    break
                if await wait(backoff.next()):
                    return False
        if len(events) == 1:
            [event] = events
            TROUBLES.internal_errors[self.name] += 1
            msg = event.message
            log.error("%s: %s[%s]@%s failed %d times; dead-lettered as internal_error and "
                      "passed over", self.name, msg.topic, msg.partition, msg.offset,
                      failures)
            await self.dead_letter(event, error)
            return True
        middle = len(events) // 2
        for half in (events[:middle], events[middle:]):
            # A half that fails splits again at once; a single record has its own tries.
            if not await self._run(half, wait, self.attempts if len(half) == 1 else 1):
                return False
        return True


def guarded_timer(name: str, tick: Callable[[], Awaitable[None]]
                  ) -> Callable[[], Awaitable[None]]:
    """``tick`` that logs and counts its errors instead of raising them (a Faust timer
    that raises ends the worker; the next tick may well succeed)."""
    async def run() -> None:
        try:
            await tick()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            TROUBLES.failures[name] += 1
            log.error("%s failed; the next tick runs as planned", name, exc_info=exc)

    run.__name__ = run.__qualname__ = getattr(tick, "__name__", name)
    return run
