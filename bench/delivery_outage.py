"""Alert delivery through a receiver outage: nothing lost, how fast it catches up.

    .venv/bin/python bench/delivery_outage.py [--alerts 200] [--down 60] [--max-delay 30]

Starts the embedded stack, a webhook receiver (aiohttp, in this process) and
``driftline delivery`` as a real process. Phase 1 (receiver up): ``--alerts`` alerts
are produced and the time from each produce to its arrival is measured. Phase 2: the
receiver is stopped, ``--alerts`` more are produced, it stays down ``--down`` seconds,
comes back, and the script measures how long until the last one arrives. Prints one
JSON object: delivered, lost, duplicates, latency percentiles, catch-up time.

    .venv/bin/python bench/delivery_outage.py --dead-webhook [--alerts 200]

Instead: the receiver is Alertmanager (the same aiohttp server answering
``/api/v2/alerts``) beside a webhook that is down the whole run; prints how long each
alert took to reach Alertmanager (issue 30: one dead receiver used to stop them all).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer

from driftline.app import topic_configs, topics_to_create
from driftline.embedded import EmbeddedStack
from driftline.kafka import ensure_topics
from driftline.ports import free_port
from driftline.settings import Settings


class Hook:
    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: dict[str, float] = {}
        self.count = 0
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.count += 1
        # Alertmanager's API v2: a list, the episode id as a label (the id without .firing)
        for a in body if isinstance(body, list) else [body]:
            alert_id = a["alert_id"] if "alert_id" in a else a["labels"]["alert_id"] + ".firing"
            self.arrived.setdefault(alert_id, time.time())
        return web.Response()

    def up(self) -> None:
        async def start():
            app = web.Application()
            app.router.add_post("/{tail:.*}", self._handle)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def down(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
            self.runner = None


def alert(n: int) -> dict:
    return {"alert_id": f"m{n % 50}.v1.concept_drift.{n}.firing", "model": f"m{n % 50}",
            "version": 1, "kind": "concept_drift", "status": "firing", "severity": "critical",
            "detector": "adwin", "feature": None, "segment": None, "ts": 1.7e9 + n,
            "metrics": {"rolling_mse": 2.0, "baseline_mse": 1.0, "n_scored": 1000},
            "message": "Rolling MSE doubled."}


async def produce(settings: Settings, alerts: list[dict], pace: float) -> dict[str, float]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    sent = {}
    try:
        for a in alerts:
            await (await producer.send(settings.topic("alerts"), orjson.dumps(a),
                                       key=a["model"].encode()))
            sent[a["alert_id"]] = time.time()
            await asyncio.sleep(pace)
    finally:
        await producer.stop()
    return sent


def wait(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--alerts", type=int, default=200)
    ap.add_argument("--down", type=float, default=60.0)
    ap.add_argument("--max-delay", type=float, default=30.0)
    ap.add_argument("--dead-webhook", action="store_true")
    args = ap.parse_args()
    with EmbeddedStack() as stack:
        hook = Hook()
        hook.up()
        tag = uuid.uuid4().hex[:8]
        receivers = ({"alertmanager_url": f"http://127.0.0.1:{hook.port}",
                      "alert_webhooks": f"http://127.0.0.1:{free_port()}/"} if args.dead_webhook
                     else {"alert_webhooks": f"http://127.0.0.1:{hook.port}/"})
        settings = Settings(kafka_url=stack.kafka_url, redis_url=stack.redis_url,
                            topic_prefix=f"b{tag}.", group_id=f"b{tag}", partitions=4,
                            alert_retry_max_delay=args.max_delay, log_level="warning",
                            **receivers)
        asyncio.run(ensure_topics(settings, topics_to_create(settings),
                                  configs=topic_configs(settings)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
        env.update(settings.as_env())
        log = Path(tempfile.mkdtemp(prefix="driftline-bench-")) / "delivery.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "driftline", "delivery"], env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            # Warm-up: the group has joined once the first alert arrives.
            asyncio.run(produce(settings, [alert(-1)], 0))
            assert wait(lambda: hook.arrived, 90), log.read_text()
            first = [alert(n) for n in range(args.alerts)]
            sent = asyncio.run(produce(settings, first, 0.01))
            assert wait(lambda: all(a in hook.arrived for a in sent), 120)
            latency = sorted((hook.arrived[a] - t) * 1000 for a, t in sent.items())
            if args.dead_webhook:
                print(orjson.dumps({
                    "alerts": args.alerts, "to": "alertmanager, beside a webhook down all along",
                    "delivered": sum(a in hook.arrived for a in sent),
                    "latency_ms_p50": round(statistics.median(latency), 1),
                    "latency_ms_p99": round(latency[int(0.99 * (len(latency) - 1))], 1),
                    "latency_ms_max": round(latency[-1], 1)},
                    option=orjson.OPT_INDENT_2).decode())
                return
            hook.down()
            second = [alert(n) for n in range(args.alerts, 2 * args.alerts)]
            down_at = time.time()
            sent2 = asyncio.run(produce(settings, second, 0.0))
            time.sleep(max(0.0, args.down - (time.time() - down_at)))
            up_at = time.time()
            hook.up()
            wait(lambda: all(a in hook.arrived for a in sent2), 300)
            ids = set(sent) | set(sent2)
            lost = sorted(ids - set(hook.arrived))
            caught_up = max(hook.arrived[a] for a in sent2 if a in hook.arrived) - up_at
        finally:
            proc.terminate()
            proc.wait(30)
            hook.down()
    print(orjson.dumps({
        "alerts": 2 * args.alerts, "delivered": len(ids) - len(lost), "lost": len(lost),
        "requests": hook.count - 1, "receiver_down_s": round(up_at - down_at, 1),
        "latency_ms_p50": round(statistics.median(latency), 1),
        "latency_ms_p99": round(latency[int(0.99 * (len(latency) - 1))], 1),
        "catch_up_after_return_s": round(caught_up, 2),
        "max_retry_delay_s": args.max_delay}, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
