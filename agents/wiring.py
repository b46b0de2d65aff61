"""What every driftline agent needs from Faust: raw topics, batches, and a producer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust

from driftline import batch_consumer
from driftline.agents.outbox import Headers, SendFn
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
                max_messages: int | None = None) -> None:
    """A Faust agent that hands ``handle`` batches of events (at most ``max_messages``,
    else ``DRIFTLINE_BATCH_SIZE``); a batch is acknowledged (and its offsets may be
    committed) only after ``handle`` has returned. With ``DRIFTLINE_BATCH_DELIVERY`` a
    batch is what one fetch brought for the agent's topics; else Faust's
    ``Stream.take_events`` gathers it message by message."""
    size = min(settings.batch_size, max_messages or settings.batch_size)
    if settings.batch_delivery:
        # Whole fetches, past Faust's per-message path (driftline.batch_consumer): the
        # stream is only iterated to subscribe the topic; its records never reach it.
        inbox = batch_consumer.register(app, name, topic.topics, size)

        async def run(stream: Any) -> None:
            aiter(stream.channel)  # adds the topic to Faust's Conductor: the subscription
            await inbox.serve(batch_consumer.consumer_of(app), handle)
    else:
        async def run(stream: Any) -> None:  # a faust Stream; take_events is not in StreamT
            async for events in stream.take_events(size, settings.batch_wait):
                await handle(events)

    run.__name__ = run.__qualname__ = name.rsplit(".", 1)[-1]
    app.agent(topic, name=name)(run)
