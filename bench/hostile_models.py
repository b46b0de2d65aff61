"""A producer that sends a new model name with every prediction (issue 30): what it costs
one worker. Run by hand, not in tests:

    python bench/hostile_models.py --models 100000 --seconds 70

One worker on the embedded Tansu stack, 8 partitions. ``--models`` pairs (a prediction and
its label), each of a model of its own, are published as fast as the Publisher goes; then,
for ``--seconds``, the worker's RSS is sampled every second and the metrics topic's
records counted. At the end: peak and final RSS, metrics records per second (over the
last half of the window, when the input is long through), the size and time of
``GET /metrics`` and the time of ``GET /healthz``.

``--code DIR`` runs the worker from another checkout's tree (a ``git worktree`` of an
older commit): its ``driftline``, ``agents`` and ``models`` are put first on the path, as
``./dev check`` stages them for mypy, so before and after run side by side in one session.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from driftline.app import topic_configs, topics_to_create
from driftline.embedded import EmbeddedStack
from driftline.kafka import ensure_topics
from driftline.ports import free_port
from driftline.publisher import Publisher
from driftline.settings import Settings


def staged(code: Path) -> str:
    """A folder holding ``driftline`` as the package of ``code``'s tree."""
    stage = Path(tempfile.mkdtemp(prefix="driftline-code-"))
    package = stage / "driftline"
    package.mkdir()
    for item in (code / "driftline").iterdir():
        (package / item.name).symlink_to(item)
    (package / "agents").symlink_to(code / "agents")
    (package / "models").symlink_to(code / "models")
    return str(stage)


def rss_mb(pid: int, field: str) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines()
                if line.startswith(field)) / 1024


async def publish(settings: Settings, models: int) -> float:
    started = time.perf_counter()
    async with Publisher(settings=settings) as pub:
        for i in range(models):
            pid = f"h-{i}"
            await pub.log_prediction(pid, model=f"made-up-{i}", version=1, prediction=1.0,
                                     features={"x": float(i % 7)}, ts=1_765_000_000.0 + i)
            await pub.log_label(pid, label=0.5, ts=1_765_000_000.0 + i)
        await pub.flush()
    return time.perf_counter() - started


async def metrics_records(settings: Settings) -> list[tuple[float, int]]:
    """(broker time, value bytes) of every record on the metrics topic so far."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    out = []
    try:
        tps = [TopicPartition(settings.topic("metrics"), p) for p in range(settings.partitions)]
        consumer.assign(tps)
        idle = 0
        while idle < 3:
            batches = await consumer.getmany(timeout_ms=500, max_records=50_000)
            idle = 0 if batches else idle + 1
            for records in batches.values():
                out.extend((r.timestamp / 1000, len(r.value)) for r in records)
    finally:
        await consumer.stop()
    return out


def get(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        size = len(response.read())
    return time.perf_counter() - started, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=70.0)
    parser.add_argument("--code", type=Path, help="run the worker from this checkout")
    args = parser.parse_args()
    with EmbeddedStack() as stack:
        tag = uuid.uuid4().hex[:8]
        web = free_port()
        settings = Settings(kafka_url=stack.kafka_url, redis_url=stack.redis_url,
                            topic_prefix=f"hostile{tag}.", group_id=f"hostile{tag}",
                            registry_prefix=f"hostile{tag}:", partitions=8, web_port=web,
                            log_level="warning")
        asyncio.run(ensure_topics(settings, topics_to_create(settings),
                                  configs=topic_configs(settings)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
        # Only what differs from the defaults: an older checkout refuses settings it lacks.
        env.update({k: v for k, v in settings.as_env().items()
                    if k.removeprefix("DRIFTLINE_").lower() in (
                        "kafka_url", "redis_url", "topic_prefix", "group_id",
                        "registry_prefix", "partitions", "web_port", "log_level")})
        if args.code is not None:
            env["PYTHONPATH"] = staged(args.code.resolve())
        # From a folder of its own: with -m, the working directory comes first on the path.
        folder = tempfile.mkdtemp(prefix="driftline-worker-")
        with open(Path(folder) / "worker.log", "wb") as log:
            worker = subprocess.Popen([sys.executable, "-m", "driftline", "worker"], env=env,
                                      cwd=folder, stdout=log, stderr=subprocess.STDOUT)
        print(f"worker log: {folder}/worker.log", file=sys.stderr)
        try:
            base = f"http://127.0.0.1:{web}"
            for _ in range(120):
                try:
                    get(base + "/healthz")
                    break
                except OSError:
                    time.sleep(0.5)
            time.sleep(3)
            rss_start = rss_mb(worker.pid, "VmRSS:")
            published = asyncio.run(publish(settings, args.models))
            started = time.time()
            samples = []
            while time.time() - started < args.seconds:
                samples.append(rss_mb(worker.pid, "VmRSS:"))
                time.sleep(1.0)
            metrics_s, metrics_bytes = get(base + "/metrics")
            health_s, _ = get(base + "/healthz")
            records = asyncio.run(metrics_records(settings))
            half = started + args.seconds / 2
            late = [size for ts, size in records if ts >= half]
            window = max(1e-9, time.time() - half)
            print(json.dumps({
                "models": args.models, "code": str(args.code or "this tree"),
                "publish_s": round(published, 1),
                "rss_start_mb": round(rss_start), "rss_peak_mb": round(
                    rss_mb(worker.pid, "VmHWM:")), "rss_end_mb": round(samples[-1]),
                "metrics_records_total": len(records),
                "metrics_records_per_s_late": round(len(late) / window, 1),
                "metrics_mb_per_s_late": round(sum(late) / window / 1e6, 3),
                "prometheus_bytes": metrics_bytes, "prometheus_s": round(metrics_s, 3),
                "healthz_s": round(health_s, 3)}))
        finally:
            worker.terminate()
            try:
                worker.wait(40)
            except subprocess.TimeoutExpired:
                worker.kill()


if __name__ == "__main__":
    main()
