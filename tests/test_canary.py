"""The canary, real processes: a bad version promoted by hand with ``driftline models
promote`` is rolled back by the worker, and the serving ModelClient is back on v1."""

from __future__ import annotations

import asyncio
import os
import re
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
SHADOW_PAIRS = 300
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
                assert client.version == 1  # the service's ModelClient, on the old champion
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
    canary = [w for m in metrics for w in m.get("shadow", ()) if w["role"] == "canary"]
    assert canary and canary[-1]["verdict"] == "rollback" and canary[-1]["previous"] == 1

    # kill -9 and a new worker: it replays monitor-input, reaches the same verdict on the same
    # pairs, finds the alert on the alerts partition and neither rolls back nor alerts again.
    worker.kill()
    restarted = time.time()
    again = worker_factory(settings, name="again")

    async def more():  # new input: the new worker rebuilds a partition when it needs it
        with ModelClient.from_url(settings.redis_url, "houses",
                                  prefix=settings.registry_prefix) as v1_client:
            async with Publisher(settings=settings) as pub:
                service = ProductionService(pub, lambda: v1_client.model, world,
                                            model="houses", label_delay=100)
                service.position = stats.predictions
                return await service.run(300)

    assert asyncio.run(more()).by_version == {1: 300}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fresh = [orjson.loads(r.value) for r in read_all(settings, "metrics")
                 if r.timestamp / 1000 > restarted]
        if any(m["version"] == 1 and m["n_scored"] == stats.by_version[1] + 300
               for m in fresh):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the new worker did not catch up\n{again.log()}")
    time.sleep(1.0)  # a metrics interval and more: a second rollback would have happened
    assert [h["action"] for h in registry.history("houses")].count("rolled_back") == 1
    assert registry.resolve("houses") == 1
    assert [orjson.loads(r.value)["kind"] for r in read_all(settings, "alerts")].count(
        "promotion_regressed") == 1
    assert [orjson.loads(r.value)["event"] for r in read_all(settings, "models")].count(
        "rolled_back") == 1
    print(f"v2 served {served_by_v2} predictions before the client was back on v1 "
          f"(canary {CANARY_PAIRS} pairs, labels 100 rows late, {RATE}/s); canary MSE "
          f"{alert['metrics']['rolling_mse']:.3f} vs v1's shadow "
          f"{alert['metrics']['baseline_mse']:.3f}\nhistory: {rollback['reason']}")
    registry.close()


def set_challenger_by_hand(settings, version: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env.update(settings.as_env())
    done = subprocess.run([sys.executable, "-m", "driftline", "models", "promote", "houses",
                           str(version), "--alias", "challenger"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_challengers_are_shadow_scored_then_rejected_or_promoted(settings, worker_factory):
    from driftline.models.training import train_ridge
    from driftline.ports import free_port

    settings = settings.replace(metrics_interval=0.5, shadow_pairs=SHADOW_PAIRS,
                                canary_pairs=CANARY_PAIRS, web_port=free_port())
    create_topics(settings)
    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    world = World("abrupt", drift_at=0, seed=12)  # v1 (trained before the drift) is off
    assert bootstrap(registry, "houses", world) == 1
    v1 = registry.load("houses")
    worse = LinearModel(v1.coef * 0.5, v1.intercept, v1.feature_names, mean=v1.mean,
                        scale=v1.scale)
    X, y = World("abrupt", drift_at=0, seed=99).rows(0, 5_000)
    better = train_ridge(X, y, world.names).model
    assert registry.register("houses", worse, metrics={"mse": 1.0}) == 2
    assert registry.register("houses", better, metrics={"mse": 1.0}) == 3
    worker = worker_factory(settings)
    client = ModelClient.from_url(settings.redis_url, "houses", prefix=settings.registry_prefix,
                                  poll_interval=0.5)

    def status(version):
        return registry.get("houses", version).status

    try:
        async def serve():
            async with Publisher(settings=settings) as pub:
                service = ProductionService(pub, lambda: client.model, world, model="houses",
                                            label_delay=100, rate=RATE)
                await service.run(1_000, finish=False)
                await pub.flush()
                await caught_up(settings, service.stats.labels)
                set_challenger_by_hand(settings, 2)
                await service.run(20_000, finish=False, until=lambda: status(2) == "rejected")
                set_challenger_by_hand(settings, 3)
                await service.run(20_000, finish=False, until=lambda: client.version == 3)
                # v3's canary against v1's shadow score: it passes
                await service.run(CANARY_PAIRS + 1_000)
                return service.stats

        stats = asyncio.run(serve())
    finally:
        client.close()
    assert status(2) == "rejected" and registry.resolve("houses") == 3, (
        f"{stats.by_version}\n{worker.log()}")
    assert stats.by_version.get(2) is None  # a challenger never serves
    assert "challenger" not in registry.aliases("houses")
    rows = [(h["action"], h["version"], h["alias"], h["actor"])
            for h in registry.history("houses") if h["action"] != "canary_passed"][4:]
    assert rows == [("promoted", 2, "challenger", registry.actor),  # the CLI's promote
                    ("rejected", 2, "challenger", "driftline-shadow"),
                    ("promoted", 3, "challenger", registry.actor),
                    ("promoted", 3, "champion", "driftline-shadow"),
                    ("alias_deleted", 3, "challenger", "driftline-shadow")]
    history = [h for h in registry.history("houses") if h["action"] != "canary_passed"]
    assert f"over {SHADOW_PAIRS} live pairs is not 2% below" in history[-4]["reason"]
    assert f"over {SHADOW_PAIRS} live pairs beats the live" in history[-2]["reason"]
    events = [orjson.loads(r.value) for r in read_all(settings, "models")]
    assert [(e["event"], e["version"]) for e in events] == [
        ("shadowing", 2), ("rejected", 2), ("shadowing", 3), ("promoted", 3)]
    assert events[1]["metrics"]["shadow_mse"] >= 0.98 * events[1]["metrics"]["live_mse"]
    metrics = [w for r in read_all(settings, "metrics")
               for w in orjson.loads(r.value).get("shadow", ())]
    shadows = {(m["version"], m["verdict"]) for m in metrics if m["role"] == "challenger"}
    assert {(2, "reject"), (3, "promote")} <= shadows
    canary = [m for m in metrics if m["role"] == "canary" and m["version"] == 3]
    assert canary[-1]["verdict"] == "passed" and canary[-1]["previous"] == 1
    passed = [h for h in registry.history("houses") if h["action"] == "canary_passed"]
    assert [(h["version"], h["actor"]) for h in passed] == [(3, "driftline-canary")]
    assert "v3's live MSE" in passed[0]["reason"] and "within 10% of v1's" in passed[0]["reason"]
    assert not [r for r in read_all(settings, "alerts")
                if orjson.loads(r.value)["kind"] == "promotion_regressed"]
    # Where a user looks: the API and Prometheus of the worker.
    import json
    import urllib.request

    def api(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}{path}",
                                    timeout=10) as response:
            return response.read()

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        detail = json.loads(api("/api/models/houses"))
        watched = {(w["role"], w["version"]): w for w in detail["shadow"]}
        if watched.get(("canary", 3), {}).get("verdict") == "passed":
            break
        time.sleep(0.5)
    assert watched[("challenger", 3)]["verdict"] == "promote", detail["shadow"]
    assert watched[("canary", 3)]["verdict"] == "passed" and watched[("canary", 3)]["n"] == \
        CANARY_PAIRS
    v3 = next(v for v in detail["versions"] if v["version"] == 3)
    assert v3["explanation"] is None  # registered by hand, without training rows
    text = api("/metrics").decode()
    assert ('driftline_shadow_mse{metric="mse",model="houses",role="canary",version="3"}'
            in text)
    assert 'driftline_rollbacks_total{model="houses"} 0.0' in text
    print(f"\nshadow over {SHADOW_PAIRS} pairs: v2 {events[1]['metrics']['shadow_mse']:.3f} "
          f"vs live {events[1]['metrics']['live_mse']:.3f} (rejected); v3 "
          f"{canary[-1]['rolling_mse']:.3f} in its canary vs v1's shadow "
          f"{canary[-1]['reference_mse']:.3f} (passed)")
    registry.close()


def test_the_closed_loop_with_promotion_shadow(settings, worker_factory):
    """Drift -> retrain -> the trainer's winner becomes the challenger, not the champion ->
    shadow-scored on live pairs -> promoted by the monitor -> its canary passes."""
    settings = settings.replace(metrics_interval=0.5, promotion="shadow",
                                shadow_pairs=SHADOW_PAIRS, canary_pairs=CANARY_PAIRS)
    create_topics(settings)
    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    world = World("abrupt", drift_at=20_000, seed=5)  # test_closed_loop.py's world
    bootstrap(registry, "houses", world)
    worker_factory(settings)
    trainer = worker_factory(settings.replace(web_port=0), name="trainer", command="trainer")
    client = ModelClient.from_url(settings.redis_url, "houses", prefix=settings.registry_prefix,
                                  poll_interval=0.5)
    try:
        async def serve():
            async with Publisher(settings=settings) as pub:
                service = ProductionService(pub, lambda: client.model, world, model="houses",
                                            label_delay=100, rate=RATE)
                await service.run(20_000, finish=False)
                await service.run(40_000, finish=False,
                                  until=lambda: service.stats.by_version.get(2, 0) >= 1_000)
                await service.run(200)
                return service.stats

        stats = asyncio.run(serve())
    finally:
        client.close()
    assert stats.by_version.get(2, 0) >= 1_000, f"{stats.by_version}\n{trainer.log()}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        events = [orjson.loads(r.value) for r in read_all(settings, "models")]
        metrics = [w for r in read_all(settings, "metrics")
                   for w in orjson.loads(r.value).get("shadow", ())]
        if any(w["role"] == "canary" and w["verdict"] for w in metrics):
            break
        time.sleep(0.5)
    assert [(e["event"], e["version"]) for e in events] == [
        ("registered", 2), ("shadowing", 2), ("promoted", 2)]
    assert registry.get("houses", 2).meta["decision"] == "shadow"
    promoted = [h for h in registry.history("houses") if h["action"] == "promoted"][-1]
    assert promoted["actor"] == "driftline-shadow" and promoted["version"] == 2
    # The shadow verdict's numbers are in the promotion's history entry: a metrics record
    # carries the challenger with its verdict only if one was published between the verdict
    # and the promotion (often, not always: they may fall in one metrics interval).
    found = re.fullmatch(r"shadow: MSE (\S+) over (\S+) live pairs beats the live (\S+) by "
                         r"more than \d+%", promoted["reason"])
    assert found, promoted["reason"]
    shadow_mse, pairs, live_mse = float(found[1]), int(found[2].replace(",", "")), float(found[3])
    assert pairs == SHADOW_PAIRS and shadow_mse < live_mse
    canary = [w for w in metrics if w["role"] == "canary" and w["verdict"]][-1]
    assert (canary["version"], canary["previous"], canary["verdict"]) == (2, 1, "passed")
    print(f"\nshadow mode: v2 shadow MSE {shadow_mse:.3f} vs live "
          f"{live_mse:.3f} over {SHADOW_PAIRS} pairs, then its canary "
          f"{canary['rolling_mse']:.3f} vs v1's {canary['reference_mse']:.3f}")
    registry.close()


def test_a_rollback_verdict_for_a_champion_that_moved_on_changes_nothing(settings):
    from driftline.agents.monitor.safeloop import Actions, alert_for
    from driftline.agents.monitor.shadow import Verdict

    create_topics(settings)
    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    for k in (1, 2, 3):
        registry.register("houses", LinearModel([float(k)], 0.0, ["x"]))
        registry.promote("houses", k)
    actions = Actions(settings)

    def verdict(version):
        return Verdict("rollback", "houses", version, version - 1,
                       {"canary_mse": 4.0, "reference_mse": 1.0, "pairs": 300, "margin": 0.1},
                       f"canary: v{version} is worse", 1.0)

    try:
        assert asyncio.run(actions.carry_out(verdict(2))) == "kept"  # v3 serves now
        assert registry.resolve("houses") == 3
        assert "was not rolled back (the champion had changed" in alert_for(
            verdict(2), False)["message"]
        assert asyncio.run(actions.carry_out(verdict(3))) == "done"
        assert registry.resolve("houses") == 2
        last = registry.history("houses")[-1]
        assert (last["action"], last["actor"], last["reason"]) == (
            "rolled_back", "driftline-canary", "canary: v3 is worse")
    finally:
        actions.close()
        registry.close()
    events = [orjson.loads(r.value) for r in read_all(settings, "models")]
    assert [(e["event"], e["version"], e["metrics"].get("canary_mse")) for e in events] == [
        ("rolled_back", 2, 4.0)]
