"""A Faust worker with one batch agent on ``<prefix>probe``, for tests/test_batch_consumer.py.

Each handler call appends one JSON line (topic, partition, offsets) to the file named by
argv[1]; with PROBE_FAIL_FIRST=1 the first call raises after recording itself."""

from __future__ import annotations

import asyncio
import os
import sys

import faust
import orjson

from driftline import batch_consumer
from driftline.agents.wiring import batch_agent, raw_topic
from driftline.app import FAST_GROUP_TIMEOUTS
from driftline.ports import free_port
from driftline.settings import Settings

settings = Settings.from_env()
out = open(sys.argv[1], "ab", buffering=0)  # open for the worker's life
calls = 0
batch_consumer.install()
app = faust.App(settings.group_id, broker=settings.faust_broker,
                broker_consumer=settings.faust_broker.replace("kafka://", "driftline://"),
                store="memory://", autodiscover=False, web_enabled=False,
                web_port=free_port("127.0.0.1"),
                consumer_auto_offset_reset="earliest", topic_allow_declare=False,
                broker_commit_interval=0.5, **FAST_GROUP_TIMEOUTS)


async def handle(events):
    global calls
    calls += 1
    out.write(orjson.dumps({"call": calls, "offsets": [
        [e.message.topic, e.message.partition, e.message.offset] for e in events]}) + b"\n")
    if calls == 1 and os.environ.get("PROBE_FAIL_FIRST"):
        raise RuntimeError("the probe's first batch fails on purpose")
    await asyncio.sleep(0)


batch_agent(app, raw_topic(app, (settings.topic_prefix + "probe")), "probe", settings, handle)

if __name__ == "__main__":
    worker = faust.Worker(app, loglevel="INFO")
    worker.execute_from_commandline()
