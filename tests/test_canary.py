"""The canary, real processes: a bad version promoted by hand with ``driftline models
promote`` is rolled back by the worker, and the serving ModelClient is back on v1."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import orjson
import pytest
from kafka_io import create_topics, read_all

from driftline import LinearModel, ModelClient, ModelRegistry, Publisher
from driftline.simulate import ProductionService, World, bootstrap

pytestmark = pytest.mark.integration

CANARY_PAIRS = 300
RATE = 1_000  # rows/s


def promote_by_hand(settings, version: int) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env.update(settings.as_env())
    done = subprocess.run([sys.executable, "-m", "driftline", "models", "promote", "houses",
                           str(version), "--reason", "by hand"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def caught_up(settings, pairs: int, timeout: float = 60) -> None:
    """Until the monitor has scored ``pairs`` pairs of v1 (its metrics records say so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = await asyncio.to_thread(read_all, settings, "metrics")
        if any(orjson.loads(r.value).get("n_scored", 0) >= pairs for r in records):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"the worker did not score {pairs} pairs in {timeout} s")


@pytest.mark.kafka
def test_a_bad_version_promoted_by_hand_is_rolled_back_by_the_canary(settings,
                                                                     worker_factory):
    settings = settings.replace(metrics_interval=0.5, canary_pairs=CANARY_PAIRS)
    create_topics(settings)
    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    world = World("abrupt", drift_at=None, seed=11)
    assert bootstrap(registry, "houses", world) == 1
    v1 = registry.load("houses")
    bad = LinearModel(-v1.coef, v1.intercept + 1.0, v1.feature_names, mean=v1.mean,
                      scale=v1.scale)  # the sign of every coefficient flipped
    assert registry.register("houses", bad, metrics={"mse": 0.9},
                             meta={"parent_version": 1, "baseline_mse": 0.9}) == 2
    worker = worker_factory(settings)
    client = ModelClient.from_url(settings.redis_url, "houses", prefix=settings.registry_prefix,
                                  poll_interval=0.5)
    try:
        async def serve():
            async with Publisher(settings=settings) as pub:
                service = ProductionService(pub, lambda: client.model, world, model="houses",
                                            label_delay=100, rate=RATE)
                await service.run(3_000, finish=False)
                assert service.stats.by_version == {1: 3_000}
                await pub.flush()
                await caught_up(settings, service.stats.labels)  # the worker's start-up
                print("\n" + promote_by_hand(settings, 2).strip())
                await service.run(20_000, finish=False, until=lambda: client.version == 1)
                await service.run(1_000)  # v1 again, labels flushed
                return service.stats

        stats = asyncio.run(serve())
    finally:
        client.close()
    served_by_v2 = stats.by_version.get(2, 0)
    assert registry.resolve("houses") == 1, f"{stats.by_version}\n{worker.log()}"
    assert served_by_v2 <= CANARY_PAIRS + 500, stats.by_version

    promoted, rollback = registry.history("houses")[-2:]
    assert (promoted["action"], promoted["version"], promoted["reason"]) == (
        "promoted", 2, "by hand")
    assert (rollback["action"], rollback["version"], rollback["previous"],
            rollback["actor"]) == ("rolled_back", 1, 2, "driftline-canary")
    assert f"over {CANARY_PAIRS} pairs" in rollback["reason"]
    assert "v1's shadow MSE on the same pairs" in rollback["reason"]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alerts = [orjson.loads(r.value) for r in read_all(settings, "alerts")]
        regressed = [a for a in alerts if a["kind"] == "promotion_regressed"]
        if regressed:
            break
        time.sleep(0.5)
    assert len(regressed) == 1, alerts
    alert = regressed[0]
    assert (alert["version"], alert["status"], alert["severity"]) == (2, "firing", "critical")
    assert alert["metrics"]["n_scored"] == CANARY_PAIRS
    assert alert["metrics"]["rolling_mse"] > 2 * (1 + settings.rollback_margin) * \
        alert["metrics"]["baseline_mse"]
    events = [orjson.loads(r.value) for r in read_all(settings, "models")]
    rolled = [e for e in events if e["event"] == "rolled_back"]
    assert [(e["version"], e["metrics"]["rolled_back_from"]) for e in rolled] == [(1, 2)]
    assert rolled[0]["metrics"]["canary_mse"] == alert["metrics"]["rolling_mse"]
    metrics = [orjson.loads(r.value) for r in read_all(settings, "metrics")]
    canary = [m["shadow"] for m in metrics if "shadow" in m and m["shadow"]["role"] == "canary"]
    assert canary and canary[-1]["verdict"] == "rollback" and canary[-1]["previous"] == 1
    print(f"v2 served {served_by_v2} predictions before the client was back on v1 "
          f"(canary {CANARY_PAIRS} pairs, labels 100 rows late, {RATE}/s); canary MSE "
          f"{alert['metrics']['rolling_mse']:.3f} vs v1's shadow "
          f"{alert['metrics']['baseline_mse']:.3f}")
    registry.close()
