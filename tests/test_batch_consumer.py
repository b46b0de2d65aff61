"""Batch delivery (driftline.batch_consumer, driftline.inbox): the offset-range acks as a
pure class, and a real worker (tests/batch_probe.py) on the real broker: one handler call
per fetch, a failing handler retried without ending the consumer, commits past transaction
markers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from driftline.inbox import MERGE_BYTES, AckedRanges, Batch, Inbox
from driftline.kafka import ensure_topics
from driftline.settings import Settings

PROBE = Path(__file__).with_name("batch_probe.py")


@pytest.mark.parametrize("acks, committed, expected", [
    ([(0, 10)], None, 10),
    ([(0, 10)], 0, 10),
    ([(5, 10)], 0, None),                     # offsets 0-4 not acknowledged yet
    ([(0, 5), (7, 10)], 0, 5),                # a gap: stops before it
    ([(0, 5), (7, 10), (5, 7)], 0, 10),       # the gap filled, in any order
    ([(0, 10), (3, 6)], 0, 10),               # a batch read twice (after a seek)
    ([(0, 10)], 10, None),                    # nothing new
    ([(8, 12)], 10, 12),                      # overlaps the commit
], ids=["first", "from-committed", "gap-before", "gap-inside", "gap-filled", "twice",
        "nothing-new", "overlap"])
def test_acked_ranges_commit_point(acks, committed, expected):
    ranges = AckedRanges()
    for begin, end in acks:
        ranges.add(begin, end)
    assert ranges.commit_point(committed) == expected


def test_acked_ranges_merge_into_one():
    ranges = AckedRanges()
    for begin in (30, 10, 0, 20):
        ranges.add(begin, begin + 10)
    assert len(ranges) == 1
    assert ranges.commit_point(None) == 40
    assert len(ranges) == 0


def test_batches_queued_behind_a_busy_handler_go_in_one_call():
    """What queued while the handler was busy joins the next call, up to the agent's size,
    with each partition's offset range joined end to end; a stale batch (from before a
    revoke) is never joined to a newer one."""
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)

    async def scenario():
        inbox = Inbox("agent", ["t"], size=5)
        await inbox.put(Batch(["e1", "e2"], {a: (0, 2)}, 0))
        await inbox.put(Batch(["e3"], {a: (2, 3), b: (7, 8)}, 0))
        await inbox.put(Batch(["e4", "e5", "e6"], {a: (3, 6)}, 0))   # over the size
        first = await inbox.get()
        await inbox.done()
        second = await inbox.get()
        await inbox.done()
        inbox.generation = 1
        await inbox.put(Batch(["old"], {a: (6, 7)}, 0))
        await inbox.put(Batch(["new"], {a: (6, 7)}, 1))
        stale = await inbox.get()
        return first, second, stale

    first, second, stale = asyncio.run(scenario())
    assert first.events == ["e1", "e2", "e3"] and first.ranges == {a: (0, 3), b: (7, 8)}
    assert second.events == ["e4", "e5", "e6"] and second.ranges == {a: (3, 6)}
    assert stale.events == ["old"]


def test_a_small_fetch_joins_a_full_inbox_and_a_large_one_waits():
    """An agent busy for a while (the trigger rebuilding on its first metrics record) with
    a trickle of input must not fill its inbox and so stall the drain loop that feeds
    every agent: a fetch joins the last waiting batch while the two stay within the
    agent's size and MERGE_BYTES; one that would not fit waits for a place."""
    a = TopicPartition("t", 0)

    async def scenario():
        inbox = Inbox("agent", ["t"], size=5)
        await inbox.put(Batch(["e1", "e2", "e3"], {a: (0, 3)}, 0, nbytes=30))
        await inbox.put(Batch(["e4"], {a: (3, 4)}, 0, nbytes=MERGE_BYTES - 10))  # too big
        assert len(inbox.pending) == 2  # full
        small = Batch(["e5"], {a: (4, 5)}, 0, nbytes=10)
        await asyncio.wait_for(inbox.wait_room(small), 5)  # at once: it joins the last one
        await inbox.put(small)
        big = Batch(["e6", "e7"], {a: (5, 7)}, 0, nbytes=10)  # 3 + 2 events > size 5
        waiting = asyncio.ensure_future(inbox.wait_room(big))
        for _ in range(10):
            await asyncio.sleep(0)
        blocked = not waiting.done()
        first = await inbox.get()  # a place frees up
        await waiting
        await inbox.put(big)
        return blocked, first, list(inbox.pending)

    blocked, first, pending = asyncio.run(scenario())
    assert blocked
    assert first.events == ["e1", "e2", "e3", "e4", "e5"] and first.ranges == {a: (0, 5)}
    assert [b.events for b in pending] == [["e6", "e7"]] and pending[0].ranges == {a: (5, 7)}
    full = Batch(["e1"], {a: (0, 1)}, 0, nbytes=MERGE_BYTES)
    assert not full.joins(Batch(["e2"], {a: (1, 2)}, 0, nbytes=1), size=5)  # over the bytes
    assert not pending[0].joins(Batch(["e8"], {a: (7, 8)}, 1), size=5)  # another generation
    assert pending[0].joins(Batch(["e8"], {a: (7, 8)}, 0, nbytes=1), size=5)


def _settings(stack) -> Settings:
    tag = uuid.uuid4().hex[:10]
    return Settings(kafka_url=stack.kafka_url, redis_url=stack.redis_url, partitions=1,
                    topic_prefix=f"b{tag}.", group_id=f"g{tag}", web_port=0,
                    batch_delivery=True)


def _start(settings: Settings, tmp_path: Path, **env: str) -> tuple[subprocess.Popen, Path]:
    calls = tmp_path / "calls.jsonl"
    full = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    full.update(settings.as_env(), **env)
    log = open(tmp_path / "probe.log", "wb")  # the child's until it ends
    with log:  # the child has its own copy
        proc = subprocess.Popen([sys.executable, str(PROBE), str(calls), "worker"], env=full,
                                stdout=log, stderr=subprocess.STDOUT,
                                cwd=tmp_path)  # Faust's data dir, {group}-data, lands here
    return proc, calls


def _calls(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] \
        if path.exists() else []


def _wait_committed(settings: Settings, end: int, timeout: float = 90.0) -> int:
    """Wait until the group's committed offset of the probe partition reaches ``end``.

    One consumer asks again and again: a new consumer per poll, stopped while aiokafka was
    still connecting to the group coordinator, left a socket behind on Apache Kafka."""
    async def run() -> int:
        c = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                             group_id=settings.group_id, enable_auto_commit=False)
        await c.start()
        try:
            deadline = time.monotonic() + timeout
            tp = TopicPartition(settings.topic_prefix + "probe", 0)
            while (committed := await c.committed(tp) or 0) < end:
                if time.monotonic() > deadline:
                    raise AssertionError(f"gave up waiting for offset {end} committed "
                                         f"({committed} is)")
                await asyncio.sleep(0.3)
            return committed
        finally:
            await c.stop()
    return asyncio.run(run())


def _wait(until, what: str, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while not (value := until()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.3)
    return value


def _stop(proc: subprocess.Popen, tmp_path: Path) -> None:
    assert proc.poll() is None, (tmp_path / "probe.log").read_text()  # still running
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


async def _produce(settings: Settings, n: int, *, transactions: int = 0) -> int:
    """``n`` records into partition 0 (in ``transactions`` committed transactions, each
    leaving a marker offset, if > 0); returns the offset after the last record."""
    kwargs = {"transactional_id": f"t-{settings.group_id}"} if transactions else {}
    p = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", **kwargs)
    await p.start()
    try:
        last = -1
        per = n // max(transactions, 1)
        for start in range(0, n, per):
            if transactions:
                await p.begin_transaction()
            futures = [await p.send((settings.topic_prefix + "probe"), b"%d" % i, partition=0)
                       for i in range(start, min(start + per, n))]
            if transactions:
                await p.commit_transaction()
            last = (await futures[-1]).offset
        return last + 1
    finally:
        await p.stop()


def _offsets(calls: list[dict]) -> list[int]:
    return sorted({o for c in calls for _, _, o in c["offsets"]})


@pytest.mark.integration
def test_one_call_per_fetch_and_a_failing_handler_is_retried(stack, tmp_path):
    settings = _settings(stack)
    asyncio.run(ensure_topics(settings, [(settings.topic_prefix + "probe")]))
    end = asyncio.run(_produce(settings, 2_000))  # waiting before the worker starts
    proc, path = _start(settings, tmp_path, PROBE_FAIL_FIRST="1")
    try:
        calls = _wait(lambda: len(_offsets(c := _calls(path))) == 2_000 and c,
                      "every record handled")
        # The first call failed; the second got the very same records again.
        assert calls[1]["offsets"] == calls[0]["offsets"]
        # Whole fetches, not messages: far fewer calls than records, each call in order.
        assert len(calls) < 2_000 // 50, [len(c["offsets"]) for c in calls]
        for c in calls:
            offsets = [o for _, _, o in c["offsets"]]
            assert offsets == sorted(offsets)
        # The consumer lived on and committed the whole partition.
        assert _wait_committed(settings, end) == end
    finally:
        _stop(proc, tmp_path)


@pytest.mark.integration
@pytest.mark.kafka_only
def test_commits_pass_transaction_markers(stack, tmp_path):
    """Each committed transaction leaves a marker offset no record has: the ranges
    around them are acknowledged whole, so the commit reaches the last record."""
    settings = _settings(stack)
    asyncio.run(ensure_topics(settings, [(settings.topic_prefix + "probe")]))
    end = asyncio.run(_produce(settings, 300, transactions=6))
    proc, path = _start(settings, tmp_path)
    try:
        _wait(lambda: len(_offsets(_calls(path))) == 300, "every record handled")
        offsets = _offsets(_calls(path))
        assert offsets[-1] + 1 - offsets[0] > 300  # there were gaps (the markers)
        assert _wait_committed(settings, end) >= end
    finally:
        _stop(proc, tmp_path)
