"""The whole loop, real processes: drift -> alert -> retrain request -> v2 trained,
registered and promoted -> the service serves v2 -> v2's error is back to normal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import numpy as np
import orjson
import pytest
from kafka_io import create_topics, read_all, read_events

from driftline import ModelClient, ModelRegistry, Publisher
from driftline.simulate import ProductionService, World, bootstrap

pytestmark = pytest.mark.integration

DRIFT_AT = 20_000
RATE = 1_000  # pairs/s: within one worker's capacity here, so it does not lag


def start_trainer(settings, log_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env.update(settings.as_env())
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "driftline", "trainer"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)


def rolling_mse(pairs, window=1000):
    errors = np.array([p["error"] for p in pairs[-window:]])
    return float(np.mean(errors ** 2))


@pytest.mark.kafka
def test_drift_is_retrained_and_promoted_end_to_end(settings, worker_factory, tmp_path):
    settings = settings.replace(metrics_interval=0.5)
    create_topics(settings)
    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    world = World("abrupt", drift_at=DRIFT_AT, seed=5)
    assert bootstrap(registry, "houses", world) == 1
    worker = worker_factory(settings)
    trainer = start_trainer(settings, tmp_path / "trainer.log")
    client = ModelClient.from_url(settings.redis_url, "houses", prefix=settings.registry_prefix,
                                  poll_interval=0.5)
    try:
        async def serve():
            async with Publisher(settings=settings) as pub:
                service = ProductionService(pub, lambda: client.model, world, model="houses",
                                            label_delay=200, rate=RATE)
                await service.run(DRIFT_AT)
                # After the drift, serve until v2 has made 3,000 predictions (or give up).
                await service.run(60_000, until=lambda: service.stats.by_version.get(2, 0)
                                  >= 3_000)
                return service.stats

        stats = asyncio.run(serve())
        assert stats.by_version.get(2, 0) >= 3_000, (
            f"v2 never served: {stats.by_version}\n{worker.log()}\n"
            f"{(tmp_path / 'trainer.log').read_text()[-4000:]}")
        # Wait until every pair is scored.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            scored = read_events(settings, "scored")
            if len(scored) >= stats.labels:
                break
            time.sleep(1)
        assert len(scored) == stats.labels == stats.predictions
    finally:
        client.close()
        trainer.terminate()
        assert trainer.wait(30) in (0, -15, 128 + 15), (tmp_path / "trainer.log").read_text()

    alerts = [orjson.loads(r.value) for r in read_all(settings, "alerts")]
    requests = [orjson.loads(r.value) for r in read_all(settings, "retrain")]
    events = [orjson.loads(r.value) for r in read_all(settings, "models")]
    firing_v1 = [a for a in alerts if a["version"] == 1 and a["status"] == "firing"
                 and a["kind"] in ("concept_drift", "metric_threshold")]
    assert any(a["kind"] == "concept_drift" for a in firing_v1), alerts
    assert len(requests) == 1, requests
    request = requests[0]
    assert request["base_version"] == 1 and request["alert_id"] == firing_v1[0]["alert_id"]

    v2 = registry.get("houses", 2)
    meta = v2.meta
    assert v2.status == "active" and registry.resolve("houses") == 2
    assert meta["parent_version"] == 1 and meta["request_id"] == request["request_id"]
    assert meta["alert_id"] == request["alert_id"] and meta["decision"] == "promote"
    assert meta["data"]["pairs"] >= 500 and meta["data"]["since"] == request["since"]
    assert meta["holdout"]["challenger_mse"] < meta["holdout"]["champion_mse"]
    assert meta["training_seconds"] > 0 and meta["metrics"]["train_rows"] > 0
    assert [(e["event"], e["version"]) for e in events] == [("registered", 2), ("promoted", 2)]
    assert events[0]["request_id"] == request["request_id"]
    assert len(registry.versions("houses")) == 2  # no version registered twice

    # Attribution: pairs keep the version that predicted them; v1 made every pre-drift one.
    by_version = {1: [], 2: []}
    index = {p["prediction_id"]: p for p in scored}
    ordered = [index[f"houses-5-{i}"] for i in range(stats.predictions)]
    for pair in ordered:
        by_version[pair["version"]].append(pair)
    assert all(p["version"] == 1 for p in ordered[:DRIFT_AT])
    before = rolling_mse(ordered[:DRIFT_AT])
    during = rolling_mse(by_version[1])          # v1's last 1,000 pairs: after the drift
    after = rolling_mse(by_version[2])           # v2's last 1,000 pairs
    assert after <= 1.5 * before, (before, during, after)
    assert during > 2 * before

    # The monitor opened a fresh window and baseline for v2 (its holdout MSE).
    metrics = [orjson.loads(r.value) for r in read_all(settings, "metrics")]
    v2_report = [m for m in metrics if (m["model"], m["version"]) == ("houses", 2)][-1]
    assert v2_report["baseline_mse"] == pytest.approx(meta["baseline_mse"])
    assert v2_report["n_scored"] == len(by_version[2])

    alert = firing_v1[0]
    published = next(r.timestamp / 1000 for r in read_all(settings, "alerts")
                     if orjson.loads(r.value)["alert_id"] == alert["alert_id"])
    promoted_at = [h for h in registry.history("houses") if h["action"] == "promoted"][-1]
    # In time, from the first post-drift label to the pair that raised the alert (the
    # alert's n_scored counts pairs in the order they arrived from the partitions).
    delay = alert["ts"] - stats.drift_ts
    print(f"\ndetection delay: {alert['metrics']['n_scored'] - DRIFT_AT} pairs by the "
          f"alert's count, {delay:.1f} s after the first post-drift label ({alert['kind']}); "
          f"request: {request['reason'].split(':')[0]}; alert to promotion: "
          f"{promoted_at['time'] - alert['ts']:.1f} s from the alert's event time, "
          f"{promoted_at['time'] - published:.1f} s from its publication; MSE before "
          f"{before:.3f}, during {during:.3f}, after {after:.3f}")
    registry.close()
