"""Join throughput on the embedded broker, beside a bare aiokafka consumer, in one run.

    .venv/bin/python bench/join_throughput.py [--pairs 50000] [--partitions 8]

Produces N predictions + N labels (10 features, shuffled together) twice - once as
single-event messages, once as the Publisher's batches - then for each input:
(a) a bare aiokafka consumer reads and json-decodes every message;
(b) one `driftline worker` subprocess joins them; timed from its first scored pair
    to its last (group join and start-up excluded, reported separately).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from driftline import Publisher
from driftline.app import topic_configs, topics_to_create
from driftline.kafka import ensure_topics, reader, true_end_offset
from driftline.settings import Settings
from driftline.stack import EmbeddedStack


def events(n: int, seed: int = 1):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        pid = f"b{i}"
        feats = {f"x{j}": rng.random() for j in range(10)}
        out.append(("predictions", {"prediction_id": pid, "model": "m", "version": 1,
                                    "prediction": rng.random(), "features": feats,
                                    "ts": 1.7e9}))
        out.append(("labels", {"prediction_id": pid, "label": rng.random(), "ts": 1.7e9}))
    rng.shuffle(out)
    return out


async def produce_single(settings: Settings, evs) -> None:
    p = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=20,
                         max_batch_size=256 * 1024)
    await p.start()
    futs = [await p.send(settings.topic(t), json.dumps(e).encode(),
                         key=e["prediction_id"].encode()) for t, e in evs]
    await asyncio.gather(*futs)
    await p.stop()


async def produce_batched(settings: Settings, evs) -> None:
    async with Publisher(settings=settings, max_batch=500, linger=0.05) as pub:
        for t, e in evs:
            if t == "predictions":
                await pub.log_prediction(e["prediction_id"], model=e["model"],
                                         version=e["version"], prediction=e["prediction"],
                                         features=e["features"], ts=e["ts"])
            else:
                await pub.log_label(e["prediction_id"], label=e["label"], ts=e["ts"])


async def bare_consumer(settings: Settings) -> tuple[float, int]:
    topics = [settings.topic("predictions"), settings.topic("labels")]
    c = AIOKafkaConsumer(*topics, bootstrap_servers=settings.bootstrap_servers,
                         group_id=None, auto_offset_reset="earliest",
                         max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    await c.start()
    r = reader(settings)
    await r.start()
    ends = {}
    for t in topics:
        for p in range(settings.partitions):
            tp = TopicPartition(t, p)
            r.assign([tp])
            ends[tp] = await true_end_offset(r, tp)
    await r.stop()
    total, events_seen = sum(ends.values()), 0
    seen, started = 0, time.perf_counter()
    while seen < total:
        batch = await c.getmany(timeout_ms=1000, max_records=10_000)
        for records in batch.values():
            for rec in records:
                value = json.loads(rec.value)
                events_seen += len(value) if isinstance(value, list) else 1
            seen += len(records)
    elapsed = time.perf_counter() - started
    await c.stop()
    return elapsed, events_seen


async def scored_count(settings: Settings, consumer) -> int:
    n = 0
    for p in range(settings.partitions):
        tp = TopicPartition(settings.topic("scored"), p)
        consumer.assign([tp])
        n += await true_end_offset(consumer, tp)
    return n


def run_worker(settings: Settings, n: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env.update(settings.as_env())
    env["DRIFTLINE_LOG_LEVEL"] = "warning"
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "driftline", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def watch():
        c = reader(settings)
        await c.start()
        first = None
        while True:
            count = await scored_count(settings, c)
            now = time.perf_counter()
            if count and first is None:
                first = (now, count)
            if count >= n:
                await c.stop()
                return first, now
            await asyncio.sleep(0.05)

    (first_t, first_n), last_t = asyncio.run(watch())
    proc.terminate()
    proc.wait(30)
    return {"startup_s": first_t - started, "steady_s": last_t - first_t,
            "steady_pairs": n - first_n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=50_000)
    ap.add_argument("--partitions", type=int, default=8)
    args = ap.parse_args()
    evs = events(args.pairs)
    rows = []
    with EmbeddedStack() as st:
        for shape, produce in (("single", produce_single), ("batched", produce_batched)):
            tag = uuid.uuid4().hex[:8]
            s = Settings(kafka_url=st.kafka_url, redis_url=st.redis_url,
                         topic_prefix=f"bench{tag}.", group_id=f"bench{tag}",
                         partitions=args.partitions)
            asyncio.run(ensure_topics(s, topics_to_create(s), configs=topic_configs(s)))
            asyncio.run(produce(s, evs))
            bare_s, bare_events = asyncio.run(bare_consumer(s))
            w = run_worker(s, args.pairs)
            bare_rate = bare_events / bare_s
            join_rate = 2 * w["steady_pairs"] / w["steady_s"]
            rows.append((shape, bare_rate, join_rate, join_rate / bare_rate, w["startup_s"]))
    print(f"{args.pairs} pairs ({2 * args.pairs} events), {args.partitions} partitions")
    print(f"{'input':8} {'bare events/s':>14} {'join events/s':>14} {'b/a':>6} {'start-up s':>11}")
    for shape, a, b, ratio, startup in rows:
        print(f"{shape:8} {a:14,.0f} {b:14,.0f} {ratio:6.3f} {startup:11.1f}")


if __name__ == "__main__":
    main()
