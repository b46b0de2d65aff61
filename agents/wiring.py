"""What every driftline agent needs from Faust: raw topics, batches under a guard,
timers that survive their errors, and a producer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust

from driftline import batch_consumer
from driftline.agents.guard import Guard, guarded_timer
from driftline.agents.lifecycle import PartitionStates
from driftline.agents.outbox import Headers, Outbox, SendFn
from driftline.inbox import register
from driftline.models.wire.codec import Rejection
from driftline.settings import Settings


def raw_topic(app: faust.App, *names: str) -> faust.TopicT:
    """Topics read as bytes: driftline decodes and validates JSON itself, per batch."""
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw")


def sender(app: faust.App) -> SendFn:
    """``send(topic, key, value, partition, headers)`` -> awaitable delivery future (for
    Outbox)."""
    async def send(topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   headers: Headers = None) -> asyncio.Future[Any]:
        future = await app.producer.send(topic, key, value, partition, None, headers)
        return future  # type: ignore[return-value]  # an asyncio Future, typed as Awaitable
    return send


# driftline's own arrays are up to ARRAY_BYTES (256 KB): this many make a batch of 16 MB.
ARRAY_BATCH = 64


def batch_agent(app: faust.App, topic: faust.TopicT, name: str, settings: Settings,
                handle: Callable[[Sequence[Any]], Awaitable[None]], *,
                max_messages: int | None = None,
                states: PartitionStates[Any] | None = None) -> Guard:
    """A Faust agent that hands ``handle`` batches of events (at most ``max_messages``,
    else ``DRIFTLINE_BATCH_SIZE``); a batch is acknowledged (and its offsets may be
    committed) only after ``handle`` has returned. With ``DRIFTLINE_BATCH_DELIVERY`` a
    batch is what one fetch brought for the agent's topics; else Faust's
    ``Stream.take_events`` gathers it message by message.

    ``handle`` runs under a :class:`~driftline.agents.guard.Guard` (returned): a record
    that fails every time is dead-lettered as ``internal_error``, and ``states`` (the
    agent's partition states, if it keeps any) are dropped before a retry, to be
    rebuilt from Kafka."""
    size = min(settings.batch_size, max_messages or settings.batch_size)
    guard = Guard(name, handle, dead_letterer(sender(app), settings, name),
                  reset=states.drop if states is not None else None)
    if settings.batch_delivery:
        # Whole fetches, past Faust's per-message path (driftline.batch_consumer): the
        # stream is only iterated to subscribe the topic; its records never reach it.
        inbox = register(app, name, topic.topics, size)

        async def run(stream: Any) -> None:
            aiter(stream.channel)  # adds the topic to Faust's Conductor: the subscription
            await inbox.serve(batch_consumer.consumer_of(app), guard.run)
    else:
        async def run(stream: Any) -> None:  # a faust Stream; take_events is not in StreamT
            async for events in stream.take_events(size, settings.batch_wait):
                await guard.run(events)

    run.__name__ = run.__qualname__ = name.rsplit(".", 1)[-1]
    app.agent(topic, name=name)(run)
    return guard


def dead_letterer(send: SendFn, settings: Settings, name: str
                  ) -> Callable[[Any, BaseException], Awaitable[None]]:
    """``dead_letter(event, exc)``: the record an agent could not process, on the
    dead-letter topic as ``internal_error``, with the agent's name and the error."""

    async def dead_letter(event: Any, exc: BaseException) -> None:
        msg = event.message
        out = Outbox()
        out.dead_letter(settings.topic("deadletter"), msg.key, msg.topic, msg.partition,
                        msg.offset, Rejection("internal_error", f"{name}: {exc!r}",
                                              msg.value or b""),
                        limit=settings.max_message_bytes)
        await out.flush(send)

    return dead_letter


def timer(app: faust.App, interval: float, name: str
          ) -> Callable[[Callable[[], Awaitable[None]]], Callable[[], Awaitable[None]]]:
    """``@app.timer(interval, name=name)`` whose errors are logged and counted, and the
    next tick runs (a Faust timer that raises ends the worker)."""
    def register(tick: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        guarded = guarded_timer(name, tick)
        app.timer(interval, name=name)(guarded)
        return guarded
    return register
