"""Issue 9, item 3: Redis goes away in the middle of a retrain and comes back.

A real Valkey of this module's own stack is stopped and started again on the same port
(its append-only file keeps the registry, as a production Redis with appendonly does).
The session stack, which other tests share, is never touched.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time

import numpy as np
import pytest
from conftest import namespace
from kafka_io import create_topics
from test_trainer import pairs_of, put_pairs, request

from driftline import ModelClient, ModelRegistry
from driftline.agents.monitor.baselines import RegistryBaselines
from driftline.agents.retrain.trainer import Trainer
from driftline.models.training import train_ridge
from driftline.settings import Settings
from driftline.simulate import World, bootstrap

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

PROBE = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 2.0]])


@pytest.fixture
def settings(own_stack) -> Settings:
    return namespace(own_stack)


def eventually(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def retry_delays(caplog) -> list[float]:
    return [float(m.group(1)) for r in caplog.records
            if r.name == "driftline.agents.retrain.trainer"
            and (m := re.search(r"Redis is unreachable.*; retrying in ([\d.]+)s", r.getMessage()))]


@pytest.mark.parametrize("outage_at", ["training", "between-register-and-promote"])
def test_a_retrain_survives_a_redis_outage_and_registers_and_promotes_once(
        own_stack, settings, outage_at, caplog):
    """Redis stops while the trainer trains (before it registers), or right after it
    registered the challenger and before it promoted it. The trainer retries with growing
    delays; the serving client keeps v1; once Redis is back there is exactly one new
    version, registered once and promoted once, and the client serves it."""
    caplog.set_level(logging.WARNING)
    create_topics(settings)
    world = World("abrupt", drift_at=0, seed=7)
    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix,
                                      actor="driftline-trainer")
    down = threading.Event()

    def stop_redis_once() -> None:
        if not down.is_set():
            own_stack.redis.stop()
            down.set()

    def train(X, y, names):
        if outage_at == "training":
            stop_redis_once()
        return train_ridge(X, y, names)

    def model_event(event: dict) -> None:
        if outage_at == "between-register-and-promote" and event["event"] == "registered" \
                and event["version"] == 2:
            stop_redis_once()

    registry.on_event = model_event
    assert bootstrap(registry, "houses", world) == 1
    v1 = registry.load("houses")
    put_pairs(settings, pairs_of(world, 0, 1500, champion=v1))
    client = ModelClient.from_url(settings.redis_url, "houses", prefix=settings.registry_prefix,
                                  poll_interval=0.2)
    trainer = Trainer(settings, registry, train, max_delay=1.0)

    async def outage_then_recovery():
        handled = asyncio.create_task(trainer.handle(request(since=0.0)))
        assert await asyncio.to_thread(down.wait, 60), "the outage never started"
        while len(retry_delays(caplog)) < 3:  # failing, and backing off, while Redis is down
            assert not handled.done(), handled
            await asyncio.sleep(0.05)
        await asyncio.to_thread(eventually, lambda: not client.redis_ok, 10,
                                "the client noticing the outage")
        assert client.version == 1
        np.testing.assert_array_equal(client.predict(PROBE), v1.predict(PROBE))
        await asyncio.to_thread(own_stack.redis.start)
        return await handled

    try:
        outcome = asyncio.run(outage_then_recovery())
        delays = retry_delays(caplog)
        assert delays[:3] == [0.5, 1.0, 1.0]  # doubled, then capped at max_delay
        assert outcome.version == 2 and outcome.promoted
        assert outcome.trained is (outage_at == "training")  # else finished by the retry
        assert [v.version for v in registry.versions("houses")] == [1, 2]
        assert registry.get("houses", 2).status == "active"
        assert registry.resolve("houses") == 2
        history = [(h["action"], h["version"], h["previous"]) for h in registry.history("houses")]
        assert history == [("registered", 1, None), ("promoted", 1, None),
                           ("registered", 2, None), ("promoted", 2, 1)]
        v2 = registry.load("houses")
        eventually(lambda: client.version == 2, 15, "the client serving v2")
        np.testing.assert_array_equal(client.predict(PROBE), v2.predict(PROBE))
        assert client.redis_ok and client.swaps == 1  # v1 -> v2, nothing in between
    finally:
        client.close()
        registry.close()
        if not own_stack.redis.alive():
            own_stack.redis.start()


def test_monitor_baselines_fall_back_while_redis_is_down(own_stack, settings, caplog):
    """The monitor asks the registry for a version's baseline MSE; with Redis down it
    gets no answer quickly (the version's first pairs become its baseline) instead of
    blocking or raising, asks nothing more for DOWN_FOR seconds (issue 30: one timeout per
    new version held the loop), and asks Redis again once that has passed."""
    from driftline.redis_client import redis_client

    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    from driftline import LinearModel

    for mse in (1.5, 2.5):
        registry.register("m", LinearModel([1.0], 0.0), meta={"baseline_mse": mse})
    registry.close()
    clock = [0.0]
    baselines = RegistryBaselines(settings, clock=lambda: clock[0])
    assert baselines("m", 1) == 1.5
    with own_stack.outage("redis"):
        assert baselines("m", 2) is None
        started = time.monotonic()
        assert baselines("m", 3) is None  # backing off: not asked, no wait
        assert time.monotonic() - started < 0.05
    assert "registry unreachable" in caplog.text
    assert "m v2 comes from its first pairs" in caplog.text
    client = redis_client(settings.redis_url)
    deadline = time.monotonic() + 30
    while True:  # back, and done loading its append-only file
        try:
            client.ping()
            break
        except Exception:
            assert time.monotonic() < deadline, "Redis did not come back"
            time.sleep(0.2)
    client.close()
    clock[0] = RegistryBaselines.DOWN_FOR + 1
    assert baselines("m", 2) == 2.5  # asked again once the back-off is over
    assert baselines("m", 3) is None  # no such version: none, and no error
    fresh = RegistryBaselines(settings)
    assert fresh("m", 2) == 2.5  # the data survived the restart (append-only file)
