"""The trigger agent on real Kafka: a restart (fresh agent, re-delivered input) makes no
second request, and a request still waiting for pairs survives it."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from kafka_io import agent_sender, as_messages, create_topics, produce, read_all
from test_retrain_policy import alert, progress

from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.retrain.trigger import TriggerAgent
from driftline.kafka import partition_for

pytestmark = pytest.mark.integration


def messages(settings, records, first_offset=0):
    """(logical topic, record) -> what Faust hands the agent, on the model's partition."""
    return [m for i, (topic, record) in enumerate(records) for m in as_messages(
        [orjson.dumps(record)], topic=settings.topic(topic), key=b"m",
        partition=partition_for(b"m", settings.partitions), first_offset=first_offset + i)]


def run_agent(settings, batches):
    async def run():
        async with agent_sender(settings) as send:
            agent = TriggerAgent(settings, send, MonitorConfig.from_dict(
                {"defaults": {"retrain": {"min_pairs": 100}}}))
            for batch in batches:
                await agent.process(batch)
            return agent
    return asyncio.run(run())


@pytest.mark.reliability
def test_restart_neither_repeats_nor_loses_a_request(settings):
    create_topics(settings)
    q = partition_for(b"m", settings.partitions)
    first = alert("concept_drift", ts=100.0, n=1000)
    second = alert("concept_drift", ts=9000.0, n=5000, episode=2)
    # The monitor wrote both alerts to the model's partition.
    produce(settings, [("alerts", b"m", orjson.dumps(a)) for a in (first, second)], partition=q)

    # Run 1: the first alert gets its pairs and a request; the second is still waiting.
    run_agent(settings, [messages(settings, [("alerts", first), ("alerts", second),
                                                ("metrics", progress(1200))])])
    assert [orjson.loads(r.value)["request_id"] for r in read_all(settings, "retrain")] == [
        "m.v1.concept_drift.1.retrain"]

    # Run 2 (after a crash): everything since the last commit is delivered again, and the
    # second alert's pairs arrive.
    agent = run_agent(settings, [messages(settings, [("alerts", first), ("alerts", second),
                                                        ("metrics", progress(1200))]),
                                 messages(settings, [("metrics", progress(5100))], 3)])
    requests = [orjson.loads(r.value) for r in read_all(settings, "retrain")]
    assert [r["request_id"] for r in requests] == ["m.v1.concept_drift.1.retrain",
                                                   "m.v1.concept_drift.2.retrain"]
    assert all(r.partition == q for r in read_all(settings, "retrain"))
    assert not agent.parts[q].trigger.pending


def test_a_bad_alert_is_dead_lettered(settings):
    create_topics(settings)
    bad = dict(alert(), kind="meltdown")
    run_agent(settings, [messages(settings, [("alerts", bad), ("metrics", {"junk": 1})])])
    [dead] = [orjson.loads(r.value) for r in read_all(settings, "deadletter")]
    assert dead["error"].startswith("out_of_range: kind") and dead["topic"] == settings.topic(
        "alerts")
    assert read_all(settings, "retrain") == []
