"""The dashboard's screenshots in the docs, and its timings and answer sizes, re-runnable:

    .venv/bin/python docs/screenshots.py            # 10 models x 50 features x 24 h
    .venv/bin/python docs/screenshots.py --large    # and 100 models x 1,000 features

Starts the embedded stack and a worker, publishes a scenario through Kafka (predictions
and labels: the worker joins, scores and monitors them as in production), then:

* writes ``docs/img/dashboard-*.png`` with headless Chromium (``chromium --headless
  --screenshot``): the monitor view, a segment picked, the models view;
* measures, in Chromium driven over its DevTools protocol (real time, not the virtual
  time of ``--virtual-time-budget``), the first render and a refresh: from the page's
  first request to its DOM built, as the page records them (``data-render-ms``,
  ``data-refresh-ms`` on ``<body>``);
* measures each API answer the views ask for: bytes and milliseconds.

``--large``: 100 registered models, each with 1,000 features, as metrics records written
straight to the metrics topic (what the monitor publishes; running a monitor over that
many features is the benchmarks' business, not the dashboard's), 12 records per model over
24 h of event time. It prints a Markdown table of every number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer

from driftline import LinearModel, ModelRegistry
from driftline.app import topic_configs, topics_to_create
from driftline.embedded import EmbeddedStack
from driftline.kafka import ensure_topics
from driftline.ports import free_port
from driftline.settings import Settings

IMG = Path(__file__).resolve().parent / "img"
START = 1_767_225_600.0  # 2026-01-01 00:00 UTC: event time of the first prediction
HOURS, EVERY = 24, 30.0  # 24 h of event time, a prediction every 30 s per model
LABEL_DELAY = 600.0
SEGMENTS = ("eu", "us", "apac")


def produce(settings: Settings, messages: list[tuple[str, bytes, bytes]]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers,
                                    acks="all", max_request_size=8 * 1024 * 1024,
                                    compression_type="gzip")
        await producer.start()
        try:
            sent = [await producer.send(settings.topic(t), v, key=k) for t, k, v in messages]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
    asyncio.run(run())


def get(url: str) -> tuple[bytes, float]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read()
    return body, (time.perf_counter() - started) * 1000


def wait(check, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("timed out waiting for the worker (see its log)")


# --- the scenario -----------------------------------------------------------------------

def small_scenario(settings: Settings, base: str, models: int = 10, features: int = 50) -> None:
    """Each model predicts 2*x0; the truth's noise grows with |x1|. From hour 16, x1 moves
    two standard deviations in the even models (the estimate rises before the labels, then
    the labels agree); from hour 12 the truth of model-03 changes (only labels can tell).
    Published an hour of event time at a time, each hour counted before the next."""
    names = [f"x{j}" for j in range(features)]
    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    model = LinearModel([2.0] + [0.0] * (features - 1), 0.0, names)
    for m in range(models):
        registry.promote(f"model-{m:02d}", registry.register(f"model-{m:02d}", model,
                                                              metrics={"mse": 1.0}))
    # a model with a past: v2 promoted and rolled back, v3 in shadow, v4 rejected
    v2, v3, v4 = (registry.register("model-00", model, metrics={"mse": 1.0}) for _ in range(3))
    registry.promote("model-00", v2)
    registry.rollback("model-00", reason="canary regressed by 14 %")
    registry.set_alias("model-00", "challenger", v3)
    registry.reject("model-00", v4, reason="lost on the holdout")
    registry.close()
    rng = np.random.default_rng(7)
    per_hour = int(3600 / EVERY)
    for hour in range(HOURS):
        messages = []
        for m in range(models):
            X = rng.normal(size=(per_hour, features))
            if m % 2 == 0 and hour >= 16:
                X[:, 1] += 2.0
            y_hat = 2 * X[:, 0]
            y = y_hat + rng.normal(size=per_hour) * (0.5 + 0.5 * np.abs(X[:, 1]))
            if m == 3 and hour >= 12:
                y += X[:, 0] + 1
            for i in range(per_hour):
                ts = START + (hour * per_hour + i) * EVERY
                pid = f"model-{m:02d}-{hour}-{i}"
                messages.append(("predictions", pid.encode(), orjson.dumps({
                    "prediction_id": pid, "model": f"model-{m:02d}", "version": 1,
                    "prediction": float(y_hat[i]), "ts": ts, "segment": SEGMENTS[i % 3],
                    "features": dict(zip(names, X[i].round(4).tolist()))})))
                messages.append(("labels", pid.encode(), orjson.dumps({
                    "prediction_id": pid, "label": float(y[i]), "ts": ts + LABEL_DELAY})))
        produce(settings, messages)
        wanted = (hour + 1) * per_hour

        def counted(wanted: int = wanted) -> bool:
            listed = json.loads(get(f"{base}/api/models")[0])["models"]
            scored = [json.loads(get(f"{base}/api/models/{m['model']}")[0])["metrics"]
                      .get("1", {}).get("n_scored", 0) for m in listed]
            return len(scored) == models and min(scored) >= wanted
        wait(counted)
        print(f"hour {hour + 1}/{HOURS} published and scored", file=sys.stderr)


def large_scenario(settings: Settings, models: int = 100, features: int = 1_000,
                   records: int = 12) -> None:
    """Metrics records as the monitor publishes them, 1,000 features each."""
    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    names = [f"f{j:04d}" for j in range(features)]
    model = LinearModel([0.0] * features, 0.0, names)
    for m in range(models):
        registry.promote(f"big-{m:03d}", registry.register(f"big-{m:03d}", model,
                                                            metrics={"mse": 1.0}))
    registry.close()
    rng = np.random.default_rng(11)
    for r in range(records):
        at = START + (r + 1) * HOURS * 3600 / records
        batch = []
        for m in range(models):
            psi = rng.gamma(1.0, 0.03, size=features) * (1 + 4 * (r >= records * 2 // 3))
            report = {
                "model": f"big-{m:03d}", "version": 1, "segment": None, "task": "regression",
                "rolling_mse": 1.0 + 0.05 * r, "baseline_mse": 1.0, "n_scored": 1000 * (r + 1),
                "n_predictions": 1000 * (r + 1), "n_expired": 0, "threshold_factor": 1.5,
                "estimated_mse": 1.0 + 0.06 * r, "estimated_baseline_mse": 1.0,
                "label_ts_first": START, "label_ts_max": at,
                "psi": {n: round(float(v), 4) for n, v in zip(names, psi)},
                "feature_types": dict.fromkeys(names, "numeric"),
                "features": {n: {"type": "numeric", "statistic": "psi",
                                 "value": round(float(v), 4), "limit": 0.25,
                                 "missing_share": 0.0, "mismatch_share": 0.0,
                                 "out_of_range_count": 0} for n, v in zip(names, psi)}}
            batch.append(("metrics", f"big-{m:03d}".encode(), orjson.dumps(report)))
        produce(settings, batch)
    print(f"{models * records} metrics records of {features} features written",
          file=sys.stderr)


# --- measuring ----------------------------------------------------------------------------

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def screenshot(url: str, name: str, height: int) -> Path:
    IMG.mkdir(exist_ok=True)
    out = IMG / f"{name}.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={profile}",
                        f"--window-size=1400,{height}", "--hide-scrollbars",
                        "--virtual-time-budget=8000", f"--screenshot={out}", url],
                       capture_output=True, timeout=120, check=True)
    return out


def page_timings(url: str, refreshes: int = 3) -> tuple[int, list[int]]:
    """(first render ms, refresh ms) of the page at ``url``, in real time, read from the
    page's ``<body data-render-ms data-refresh-ms>`` over the DevTools protocol."""
    import aiohttp

    port = free_port()
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen([BROWSER, *FLAGS, f"--user-data-dir={profile}",
                                 f"--remote-debugging-port={port}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait(lambda: get(f"http://127.0.0.1:{port}/json/version")[0], 30)
            target = next(t for t in json.loads(get(f"http://127.0.0.1:{port}/json/list")[0])
                          if t["type"] == "page")

            async def drive() -> tuple[int, list[int]]:
                async with aiohttp.ClientSession() as session, session.ws_connect(
                        target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    ids = iter(range(1, 10**6))

                    async def call(method: str, **params) -> dict:
                        n = next(ids)
                        await ws.send_json({"id": n, "method": method, "params": params})
                        while True:
                            msg = await ws.receive_json()
                            if msg.get("id") == n:
                                return msg.get("result", {})

                    async def body(attr: str) -> str | None:
                        r = await call("Runtime.evaluate", returnByValue=True,
                                       expression=f"document.body && document.body.dataset.{attr}")
                        return r.get("result", {}).get("value")

                    await call("Page.navigate", url=url)
                    first = None
                    while first is None:
                        await asyncio.sleep(0.05)
                        first = await body("renderMs")
                    seen: list[int] = []
                    last = None
                    while len(seen) < refreshes:  # a refresh every 2 s
                        await asyncio.sleep(0.25)
                        stamp = await body("refreshMs"), await call(
                            "Runtime.evaluate", returnByValue=True,
                            expression="document.getElementById('status').textContent")
                        value = stamp[1].get("result", {}).get("value")
                        if value != last and last is not None and stamp[0] is not None:
                            seen.append(int(stamp[0]))
                        last = value
                    return int(first), seen
            return asyncio.run(drive())
        finally:
            proc.terminate()
            proc.wait(10)


def api_sizes(base: str, model: str) -> list[tuple[str, int, float]]:
    """(path, bytes, ms) of each answer a refresh of the views asks for."""
    paths = ["/api/models?limit=10", "/api/models?limit=20",
             f"/api/models/{model}?features=25", f"/api/models/{model}",
             f"/api/models/{model}/performance", f"/api/models/{model}/lifecycle?limit=100",
             "/api/deliveries?limit=1000", "/api/alerts?limit=100"]
    out = []
    for path in paths:
        get(base + path)  # once to warm, then measured
        body, ms = get(base + path)
        out.append((path, len(body), ms))
    return out


def measure(base: str, label: str, model: str, shots: bool) -> list[str]:
    rows = []
    for view, url in (("monitor", f"{base}/"), ("models", f"{base}/#view=models")):
        first, refreshes = page_timings(url)
        rows.append(f"| {label} | {view} view: first render / refresh | {first} ms / "
                    f"{', '.join(str(r) for r in refreshes)} ms |")
    for path, size, ms in api_sizes(base, model):
        rows.append(f"| {label} | `GET {path}` | {size:,} bytes, {ms:.0f} ms |")
    if shots:
        for name, url, height in (("dashboard-monitor", f"{base}/", 2000),
                                  ("dashboard-segment", f"{base}/#segment=eu&range=6h", 1300),
                                  ("dashboard-models", f"{base}/#view=models", 1300)):
            print(f"wrote {screenshot(url, name, height)}", file=sys.stderr)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true",
                        help="also measure 100 models x 1,000 features")
    parser.add_argument("--no-screenshots", action="store_true",
                        help="measure only; leave docs/img as it is")
    args = parser.parse_args()
    if BROWSER is None:
        raise SystemExit("no Chromium: apt-get install chromium")
    rows = ["| case | what | measured |", "|---|---|---|"]
    cases = [("10 models × 50 features × 24 h", small_scenario, "model-00")]
    if args.large:
        cases.append(("100 models × 1,000 features", large_scenario, "big-000"))
    with EmbeddedStack() as stack, tempfile.TemporaryDirectory() as tmp:
        for n, (label, scenario, model) in enumerate(cases):
            config = Path(tmp) / "monitor.toml"
            config.write_text("[defaults]\nsegments = true\n")
            settings = Settings(kafka_url=stack.kafka_url, redis_url=stack.redis_url,
                                topic_prefix=f"shots{n}.", group_id=f"shots{n}",
                                registry_prefix=f"shots{n}:", partitions=4,
                                metrics_interval=0.5, web_port=free_port(),
                                monitor_config=str(config))
            asyncio.run(ensure_topics(settings, topics_to_create(settings),
                                      configs=topic_configs(settings)))
            env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
            env.update(settings.as_env())
            log = open(Path(tmp) / f"worker-{n}.log", "wb")
            worker = subprocess.Popen([sys.executable, "-m", "driftline", "worker"], env=env,
                                      stdout=log, stderr=subprocess.STDOUT)
            base = f"http://127.0.0.1:{settings.web_port}"
            try:
                wait(lambda base=base: get(f"{base}/healthz")[0], 60)
                if scenario is large_scenario:
                    scenario(settings)
                    wait(lambda base=base: len(json.loads(get(f"{base}/api/models")[0])[
                        "models"]) == 100
                         and json.loads(get(f"{base}/api/models/big-099")[0])["metrics"]
                         .get("1", {}).get("n_scored") == 12_000)
                else:
                    scenario(settings, base)
                    time.sleep(2)  # the last records and alerts read back
                rows += measure(base, label, model, shots=n == 0 and not args.no_screenshots)
            finally:
                worker.terminate()
                worker.wait(30)
                log.close()
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
