"""driftline against a bare aiokafka consumer, on the embedded broker, in one run.

    .venv/bin/python bench/harness.py [--pairs 200000] [--partitions 8] [--workers 1]
                                      [--shapes single,batched] [--latency-seconds 20]
                                      [--models 1] [--segments 0] [--broker tansu|kafka]
                                      [--latency-rate PAIRS_PER_S] [--latency-out FILE]
                                      [--latency-stages] [--categorical K]

`--broker kafka` runs the same measurements on the embedded Apache Kafka
(driftline.embedded.apache_kafka) instead of Tansu.

For each input shape - single-event messages (any Kafka client) and the Publisher's
batches - it produces N predictions and N labels (10 features, labels shuffled in
among the predictions) into fresh topics, then measures:

(a) a bare aiokafka consumer that only reads and JSON-decodes (orjson, as driftline)
    the same messages;
(b) driftline end to end - `driftline worker` processes (join, monitor with the
    error's change-point test, rolling MSE and PSI on all 10 features, trigger) - from the
    moment their consumer group is ready to the moment the monitor has applied all N pairs and N
    predictions (its metrics records say so; they come every 0.1 s);
(c) label-to-metric latency at a fixed offered rate (half of (b)'s pair rate, or
    --latency-rate) through the Publisher with its defaults (up to 500 events a
    message, linger 50 ms): the time from handing a
    label to the Publisher to the first metrics record that counts its pair
    (resolution 20 ms), p50 and p99, after 200 warm-up pairs (the first batch
    rebuilds every partition, a one-off per assignment);
(d) the worker's peak RSS (VmHWM), and its RSS once a fifth of the events are through
    and at the end (summed over workers): whether memory stays flat with stream length;
(e) the floor of any Faust agent: one that only reads and decodes the same messages
    (bench/faust_floor.py, timed from its first message), the ceiling for a stage that
    stays a Faust agent;
(f) the workers' CPU time (user + system, /proc) over (b), per event: what one event
    costs the worker whatever else shares the cores (the wall-clock rates above move
    ~2x with the machine's other load; this much less).

It prints a table with b / a and b / e. `--shapes '' --latency-rate R` measures (c) alone, at
R pairs/s; `--latency-out FILE` writes each timed pair's send time and latency as JSON;
`--latency-stages` splits (c) into its legs: the Publisher (its linger and produce), the join
(fetch, waiting for the batch before, the batch), the ack the join waits for before writing
monitor-input, and the monitor (fetch, the batch, the metrics interval).
`--smoke` runs 1,000 batched pairs, for CI (the numbers then say nothing; start-up dominates).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from driftline import Publisher
from driftline.app import topic_configs, topics_to_create
from driftline.embedded import EmbeddedStack
from driftline.kafka import (
    ensure_topics,
    opened_reader,
    read_partition,
    reader,
    true_end_offset,
    wait_for_groups,
)
from driftline.models.wire import unbatch
from driftline.models.wire.internal import SCORED, decode_elements
from driftline.settings import Settings

METRICS_INTERVAL = 0.1


def events(n: int, seed: int = 1, models: int = 1,
           segments: int = 0, categorical: int = 0) -> list[tuple[str, dict]]:
    """N predictions and their labels; each label comes after its prediction, shuffled
    among the predictions that follow it (up to ~2,000 events later). With ``models`` > 1
    the predictions go round-robin to models m0, m1, ...; with ``segments`` > 0 they carry
    a ``segment`` s0, s1, ... round-robin; with ``categorical`` = K the last K of the 10
    features are categories (``x9`` of up to ~100 values, fewer below it)."""
    rng = random.Random(seed)
    out: list[tuple[str, dict]] = []
    pending: list[dict] = []
    for i in range(n):
        pid = f"b{i}"
        x = [rng.gauss(0, 1) for _ in range(10)]
        model = "m" if models == 1 else f"m{i % models}"
        features: dict = {f"x{j}": x[j] for j in range(10)}
        for j in range(10 - categorical, 10):
            features[f"x{j}"] = f"v{int(abs(x[j]) * (j + 1) * 4)}"
        prediction = {"prediction_id": pid, "model": model, "version": 1,
                      "prediction": 2 * x[0], "features": features,
                      "ts": 1.7e9 + i / 1000}
        if segments:
            prediction["segment"] = f"s{i % segments}"
        out.append(("predictions", prediction))
        pending.append({"prediction_id": pid, "label": 2 * x[0] + rng.gauss(0, 1),
                        "ts": 1.7e9 + i / 1000 + 1})
        if len(pending) > 1000 or i == n - 1:
            rng.shuffle(pending)
            take = pending if i == n - 1 else pending[:500]
            out.extend(("labels", label) for label in take)
            del pending[:len(take)]
    return out


async def produce_single(settings: Settings, evs) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=20,
                                max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(settings.topic(t), orjson.dumps(e),
                                       key=e["prediction_id"].encode()) for t, e in evs]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_batched(settings: Settings, evs) -> None:
    async with Publisher(settings=settings, max_batch=500, linger=0.05) as pub:
        for t, e in evs:
            e = dict(e)
            pid = e.pop("prediction_id")
            if t == "predictions":
                await pub.log_prediction(pid, **e)
            else:
                await pub.log_label(pid, **e)


async def bare_consumer(settings: Settings) -> float:
    """Events per second read and decoded by a plain consumer (all partitions)."""
    topics = [settings.topic("predictions"), settings.topic("labels")]
    probe = reader(settings)
    await probe.start()
    ends = {}
    for t in topics:
        for p in range(settings.partitions):
            tp = TopicPartition(t, p)
            probe.assign([tp])
            ends[tp] = await true_end_offset(probe, tp)
    await probe.stop()
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=settings.bootstrap_servers,
                                group_id=None, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    total, seen, decoded = sum(ends.values()), 0, 0
    started = time.perf_counter()
    try:
        while seen < total:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                for record in records:
                    value = orjson.loads(record.value)
                    decoded += len(value) if isinstance(value, list) else 1
                seen += len(records)
    finally:
        await consumer.stop()
    return decoded / (time.perf_counter() - started)


class Workers:
    """`driftline worker` processes on ``settings``; peak RSS read from /proc."""

    def __init__(self, settings: Settings, count: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
        env.update(settings.as_env())
        self.procs = [subprocess.Popen([sys.executable, "-m", "driftline", "worker"], env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                      for _ in range(count)]

    def rss_mb(self, field: str = "VmRSS:") -> list[float]:
        out = []
        for proc in self.procs:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            kb = next(int(line.split()[1]) for line in status.splitlines()
                      if line.startswith(field))
            out.append(kb / 1024)
        return out

    def cpu_seconds(self) -> float:
        """User plus system CPU time of every worker so far (from /proc, clock ticks)."""
        total = 0
        for proc in self.procs:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> list[float]:
        return self.rss_mb("VmHWM:")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()


async def monitor_progress(settings: Settings, until: int, deadline: float,
                           on_record=None) -> float:
    """Read the metrics topic until the monitor has applied ``until`` pairs and
    predictions, summed over the models; returns when (perf_counter)."""
    latest: dict[str, tuple[int, int]] = {}
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(settings.topic("metrics"), p)
                         for p in range(settings.partitions)])
        while time.perf_counter() < deadline:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                for record in records:
                    report = orjson.loads(record.value)
                    latest[report["model"]] = (report["n_scored"], report["n_predictions"])
                    scored = sum(s for s, _ in latest.values())
                    predicted = sum(p for _, p in latest.values())
                    if on_record is not None:
                        on_record({**report, "n_scored": scored, "n_predictions": predicted},
                                  record.timestamp / 1000)
                    if scored >= until and predicted >= until:
                        return time.perf_counter()
        raise TimeoutError(f"the monitor did not reach {until} pairs in time")
    finally:
        await consumer.stop()


def settings_for(stack: EmbeddedStack, partitions: int) -> Settings:
    """Fresh topics and group on ``stack``; other settings from ``DRIFTLINE_*`` variables
    (e.g. ``DRIFTLINE_BATCH_WAIT=0.01``), else driftline's defaults."""
    tag = uuid.uuid4().hex[:8]
    return Settings.from_env(kafka_url=stack.kafka_url, redis_url=stack.redis_url,
                    topic_prefix=f"bench{tag}.", group_id=f"bench{tag}", partitions=partitions,
                    metrics_interval=METRICS_INTERVAL, web_port=0, log_level="warning",
                    registry_prefix=f"bench{tag}:")


def throughput(stack: EmbeddedStack, shape: str, n: int, partitions: int,
               workers: int, profile: str | None = None, models: int = 1,
               segments: int = 0, categorical: int = 0) -> dict:
    settings = settings_for(stack, partitions)
    asyncio.run(ensure_topics(settings, topics_to_create(settings),
                              configs=topic_configs(settings)))
    asyncio.run((produce_single if shape == "single" else produce_batched)(
        settings, events(n, models=models, segments=segments, categorical=categorical)))
    bare = asyncio.run(bare_consumer(settings))
    floor = faust_floor(settings, 2 * n)
    group = Workers(settings, workers)
    spies = []
    try:
        asyncio.run(wait_for_groups(settings, [settings.group_id], timeout=120))
        if profile:
            spy = Path(sys.executable).with_name("py-spy")  # pip install py-spy
            spies = [subprocess.Popen([str(spy) if spy.exists() else "py-spy", "record",
                                       "--pid", str(proc.pid), "--format",
                                       "raw", "--rate", "200", "--output",
                                       str(Path(profile) / f"{shape}-worker{i}.txt")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for i, proc in enumerate(group.procs)]
        started = time.perf_counter()
        cpu_started = group.cpu_seconds()
        # RSS once a fifth of the events are through, and at the end: flat with length?
        fifth: list[float] = []

        def sample(report: dict, _ts: float) -> None:
            if not fifth and report["n_scored"] + report["n_predictions"] >= 2 * n / 5:
                fifth.append(sum(group.rss_mb()))
        done = asyncio.run(monitor_progress(settings, n, started + 1800, on_record=sample))
        cpu = group.cpu_seconds() - cpu_started
        rss = group.peak_rss_mb()
        rss_end = sum(group.rss_mb())
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        group.stop()
    rate = 2 * n / (done - started)
    return {"shape": shape, "bare": bare, "floor": floor, "driftline": rate, "ratio": rate / bare,
            "rss_mb": max(rss), "rss_fifth_mb": fifth[0] if fifth else float("nan"),
            "rss_end_mb": rss_end, "seconds": done - started, "cpu_us": cpu / (2 * n) * 1e6}


def faust_floor(settings: Settings, events: int) -> float:
    """(e): a Faust agent that only reads and decodes the same messages (its own group)."""
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("faust_floor.py")), settings.faust_broker,
         f"{settings.group_id}-floor", str(events), settings.topic("predictions"),
         settings.topic("labels")], capture_output=True, text=True, timeout=1800)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"faust_floor.py printed no result:\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])["rate"]


def counted(seen: list[tuple[float, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The metrics records' (time, pairs counted) in time order, the count never going back
    (a record of another partition may come late): the first time each count was reached."""
    times = np.array([ts for ts, _ in seen])
    counts = np.array([c for _, c in seen])
    order = np.argsort(times)
    return times[order], np.maximum.accumulate(counts[order])


def latency(stack: EmbeddedStack, partitions: int, pairs_per_s: float, seconds: float,
            out: str | None = None, stages: bool = False) -> dict:
    """Label-to-metric latency with batched input at a fixed offered rate; ``out``: a JSON
    file of each timed pair's send time (epoch seconds) and latency (seconds); ``stages``:
    also where the time went (:func:`latency_stages`)."""
    # Metrics every 20 ms: the resolution of this measurement.
    settings = settings_for(stack, partitions).replace(metrics_interval=0.02)
    asyncio.run(ensure_topics(settings, topics_to_create(settings),
                              configs=topic_configs(settings)))
    group = Workers(settings, 1)
    n = int(pairs_per_s * seconds)
    warmup = 200  # first pairs rebuild every partition (a one-off per assignment): not timed
    sent: list[float] = []
    seen: list[tuple[float, int]] = []

    async def run() -> None:
        watcher = asyncio.create_task(monitor_progress(
            settings, warmup + n, time.perf_counter() + seconds + 90,
            on_record=lambda r, ts: seen.append((ts, r["n_scored"]))))
        async with Publisher(settings=settings) as pub:  # its defaults: linger 50 ms
            for i in range(warmup):
                await pub.log_prediction(f"w{i}", model="m", version=1, prediction=0.0)
                await pub.log_label(f"w{i}", label=0.0)
            await pub.flush()
            while max((c for _, c in seen), default=0) < warmup:
                await asyncio.sleep(0.05)
            started = time.perf_counter()
            for i in range(n):
                pid = f"l{i}"
                await pub.log_prediction(pid, model="m", version=1, prediction=0.0,
                                         features={f"x{j}": 0.0 for j in range(10)})
                await pub.log_label(pid, label=0.0)
                sent.append(time.time())
                ahead = (i + 1) / pairs_per_s - (time.perf_counter() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await watcher

    try:
        asyncio.run(wait_for_groups(settings, [settings.group_id], timeout=120))
        asyncio.run(run())
    finally:
        group.stop()
    result = {}
    if stages:
        handed = {f"l{i}": t for i, t in enumerate(sent)}
        result["stages"] = asyncio.run(latency_stages(settings, handed, seen))
    times, counts = counted(seen)
    first_record = np.searchsorted(counts, warmup + np.arange(1, n + 1), side="left")
    latencies = times[np.minimum(first_record, len(times) - 1)] - np.array(sent)
    if out:
        Path(out).write_text(json.dumps({"sent": sent, "latency": latencies.tolist()}))
    return {"rate": pairs_per_s, "p50_ms": 1000 * float(np.percentile(latencies, 50)),
            "p99_ms": 1000 * float(np.percentile(latencies, 99)), **result}


async def latency_stages(settings: Settings, handed: dict[str, float],
                         seen: list[tuple[float, int]]) -> dict[str, tuple[float, float]]:
    """p50 and p99 (ms) of each leg of a timed label's way, from the records' CreateTime
    on the topics: the Publisher (handed to it -> its labels record), the join (-> the
    scored record), the ack the join waits for (-> the monitor-input record) and the
    monitor (-> the first metrics record that counts the pair). The monitor counts pairs in
    monitor-input order (one model: one partition), which ranks each pair."""
    records: dict[str, list] = {}
    async with opened_reader(settings) as consumer:
        for name in ("labels", "scored", "monitor_input"):
            records[name] = [r for p in range(settings.partitions) async for batch in
                             read_partition(consumer, settings.topic(name), p) for r in batch]
    labelled = {ev["prediction_id"]: r.timestamp / 1000 for r in records["labels"]
                for ev in unbatch(r.value)}
    scored = {ev["prediction_id"]: r.timestamp / 1000 for r in records["scored"]
              for ev in unbatch(r.value)}
    order: list[tuple[str, float]] = []  # every scored pair, as the monitor counts them
    for r in sorted(records["monitor_input"], key=lambda r: (r.partition, r.offset)):
        for item in decode_elements(r.value):
            if item.k == SCORED:
                ids = item.c.i if item.c is not None else [e["prediction_id"] for e in item.e]
                order.extend((pid, r.timestamp / 1000) for pid in ids)
    times, counts = counted(seen)
    legs: dict[str, list[float]] = {"Publisher": [], "join": [], "scored ack": [],
                                    "monitor": []}
    for rank, (pid, on_input) in enumerate(order, 1):
        if pid not in handed:  # a warm-up pair
            continue
        metric = times[min(int(np.searchsorted(counts, rank)), len(times) - 1)]
        for leg, start, end in (("Publisher", handed[pid], labelled[pid]),
                                ("join", labelled[pid], scored[pid]),
                                ("scored ack", scored[pid], on_input),
                                ("monitor", on_input, metric)):
            legs[leg].append(end - start)
    return {leg: (1000 * float(np.percentile(v, 50)), 1000 * float(np.percentile(v, 99)))
            for leg, v in legs.items()}


def broker_name(broker: str) -> str:
    if broker == "kafka":
        from driftline.embedded.apache_kafka import KAFKA_VERSION

        return f"Apache Kafka {KAFKA_VERSION}"
    return "Tansu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--models", type=int, default=1,
                        help="predictions round-robin over this many models")
    parser.add_argument("--segments", type=int, default=0,
                        help="predictions carry a segment, round-robin over this many (the "
                             "monitor splits by them with segments = true in "
                             "DRIFTLINE_MONITOR_CONFIG)")
    parser.add_argument("--categorical", type=int, default=0, choices=range(11),
                        metavar="K", help="the last K of the 10 features are categories")
    parser.add_argument("--shapes", default="single,batched",
                        help="shapes for (a), (b), (d), (e); '' with --latency-rate: (c) only")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--latency-rate", type=float, metavar="PAIRS_PER_S",
                        help="offered rate for (c); default half of (b)'s pair rate")
    parser.add_argument("--latency-out", metavar="FILE",
                        help="write (c)'s send times and latencies as JSON to FILE")
    parser.add_argument("--latency-stages", action="store_true",
                        help="also print where (c)'s time goes: Publisher, join, the join's "
                             "ack, monitor (from the topics' record times)")
    parser.add_argument("--profile", metavar="DIR",
                        help="record each worker with py-spy (raw collapsed stacks) into DIR")
    parser.add_argument("--smoke", action="store_true", help="a few thousand pairs, for CI")
    parser.add_argument("--broker", choices=["tansu", "kafka"], default="tansu",
                        help="the embedded broker: Tansu or Apache Kafka")
    args = parser.parse_args()
    if args.smoke:
        args.pairs, args.latency_seconds, args.shapes = 1_000, 2.0, "batched"
    shapes = [shape for shape in args.shapes.split(",") if shape]
    if not shapes and not args.latency_rate:
        parser.error("no --shapes: give --latency-rate (there is no (b) to take half of)")
    rows = []
    with EmbeddedStack(kafka="apache" if args.broker == "kafka" else "tansu") as stack:
        for shape in shapes:
            rows.append(throughput(stack, shape, args.pairs, args.partitions, args.workers,
                                   args.profile, args.models, args.segments,
                                   args.categorical))
        batched = next((r for r in rows if r["shape"] == "batched"), rows[-1] if rows else None)
        rate = args.latency_rate or batched["driftline"] / 4  # half of (b), in pairs
        lat = (latency(stack, args.partitions, rate, args.latency_seconds, args.latency_out,
                       args.latency_stages)
               if args.latency_seconds > 0 else None)
    print(f"{args.pairs:,} pairs ({2 * args.pairs:,} events), {args.partitions} partitions, "
          f"{args.workers} worker process(es), {args.models} model(s), {os.cpu_count()} CPUs, "
          f"{broker_name(args.broker)}")
    print(f"{'input':8} {'(a) bare ev/s':>14} {'(e) Faust floor ev/s':>21} "
          f"{'(b) driftline ev/s':>19} {'b/a':>6} {'b/e':>6} {'(d) peak RSS MB':>16} "
          f"{'RSS at 1/5, end':>16} {'(f) worker CPU µs/ev':>20}")
    for r in rows:
        print(f"{r['shape']:8} {r['bare']:14,.0f} {r['floor']:21,.0f} {r['driftline']:19,.0f} "
              f"{r['ratio']:6.3f} {r['driftline'] / r['floor']:6.3f} {r['rss_mb']:16,.0f} "
              f"{r['rss_fifth_mb']:8,.0f} {r['rss_end_mb']:7,.0f} {r['cpu_us']:20.1f}")
    if lat is None:
        return
    print(f"(c) label-to-metric latency at {lat['rate']:,.0f} pairs/s, batched: "
          f"p50 {lat['p50_ms']:,.0f} ms, p99 {lat['p99_ms']:,.0f} ms")
    if "stages" in lat:
        print("(c) by leg, p50 / p99: " + "; ".join(
            f"{leg} {p50:,.0f} / {p99:,.0f} ms" for leg, (p50, p99) in lat["stages"].items()))


if __name__ == "__main__":
    main()
