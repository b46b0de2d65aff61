"""Issue 9, item 4: the broker goes away and comes back.

A Tansu of this module's own stack is stopped and started again on the same port; the
session stack, which other tests share, is never touched. Tansu keeps everything in
memory, so the broker that comes back is empty: no topics, no records, no committed
offsets. Topics are created again the way a worker does at start (``ensure_topics``);
``partitions=4`` is also what Tansu gives a topic a client asks for before that.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from conftest import namespace
from kafka_io import read_events

from driftline import Publisher, PublishError
from driftline.app import topic_configs, topics_to_create
from driftline.kafka import ensure_topics
from driftline.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


@pytest.fixture
def settings(own_stack) -> Settings:
    return namespace(own_stack)


@pytest.mark.kafka
def test_publisher_buffers_to_its_bound_then_delivers_after_the_broker_is_back(
        own_stack, settings, caplog):
    caplog.set_level(logging.CRITICAL, logger="aiokafka")  # connection refused, many times

    async def scenario():
        async with Publisher(settings=settings, max_batch=50, max_buffered=300,
                             max_block=0.5) as pub:
            for i in range(10):
                await pub.log_prediction(f"before-{i}", model="m", prediction=1.0)
            await pub.flush()
            with own_stack.outage("kafka"):
                accepted = []
                with pytest.raises(PublishError) as refused:
                    for i in range(1000):
                        await pub.log_prediction(f"during-{i}", model="m", prediction=1.0)
                        accepted.append(f"during-{i}")
                assert pub.pending == len(accepted) == 300
                with pytest.raises(PublishError):  # still full: refused again, not dropped
                    await pub.log_label("during-0", label=1.0)
            await ensure_topics(settings, topics_to_create(settings),
                                configs=topic_configs(settings))
            await pub.flush(timeout=60)
            assert pub.pending == 0
            await pub.log_prediction("after-0", model="m", prediction=1.0)
        return accepted, str(refused.value)

    accepted, message = asyncio.run(scenario())
    assert message.startswith(f"300 events are waiting for Kafka at {settings.kafka_url}")
    assert "max_buffered=300" in message and "Check that Kafka is reachable" in message
    assert "stay buffered and are sent when Kafka is back" in message
    on_topic = [e["prediction_id"] for e in read_events(settings, "predictions")]
    # Every event accepted during the outage lands once. Apache Kafka keeps what came
    # before (its log dir survives the restart); Tansu, in memory, lost it.
    kept = [f"before-{i}" for i in range(10)] if own_stack.broker == "apache" else []
    assert sorted(on_topic) == sorted(kept + accepted + ["after-0"])

