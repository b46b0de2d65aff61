"""The floor of any Faust agent: one agent that only reads and decodes messages.

    python bench/faust_floor.py KAFKA_URL GROUP EVENTS TOPIC [TOPIC ...]

Run by ``bench/harness.py`` on the same topics as driftline, in the same run: it reads
them with driftline's Faust settings (raw bytes, ``take_events`` batches, the same
fetch wait), ``orjson``-decodes each value, counts events (array elements count one
each) and, once EVENTS are counted, prints the rate from the first message on as JSON
and exits. What a stage that does nothing else costs is the ceiling for driftline's
join, which reads the same messages and then does its work.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time

import faust
import orjson

from driftline.app import FAST_GROUP_TIMEOUTS, _short_fetch_wait
from driftline.settings import Settings


def main() -> None:
    url, group, total, *topics = sys.argv[1:]
    total = int(total)
    settings = Settings()
    _short_fetch_wait()
    app = faust.App(group, broker=url, store="memory://", autodiscover=False,
                    datadir=tempfile.mkdtemp(prefix="faust-floor-"), web_enabled=False,
                    topic_allow_declare=False, consumer_auto_offset_reset="earliest",
                    **FAST_GROUP_TIMEOUTS)
    source = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    state = {"events": 0, "first": None}

    @app.agent(source)
    async def floor(stream):
        async for events in stream.take_events(settings.batch_size, settings.batch_wait):
            if state["first"] is None:
                state["first"] = time.perf_counter()
            for event in events:
                value = orjson.loads(event.message.value)
                state["events"] += len(value) if isinstance(value, list) else 1
            if state["events"] >= total:
                rate = state["events"] / (time.perf_counter() - state["first"])
                print(json.dumps({"events": state["events"], "rate": rate}), flush=True)
                os._exit(0)  # the number is out; no need for a clean shutdown

    worker = faust.Worker(app, loop=asyncio.new_event_loop(), loglevel="WARNING",
                          redirect_stdouts=False, quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
