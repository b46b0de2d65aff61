"""ModelClient: sees promotions fast, swaps atomically, survives a Redis restart."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import numpy as np
import pytest

from driftline import LinearModel, ModelClient, ModelRegistry

pytestmark = pytest.mark.integration


def wait_until(predicate, timeout: float) -> float:
    """Seconds it took for ``predicate`` to hold; fails after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout}s")
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
def registry(stack):
    reg = ModelRegistry.from_url(stack.redis_url, prefix=f"c{uuid.uuid4().hex[:8]}:")
    yield reg
    reg.close()


def test_promotion_is_noticed_within_a_second(registry):
    registry.promote("m", registry.register("m", LinearModel([1.0], 0.0)))
    with ModelClient(registry, "m", poll_interval=60) as client:  # pub/sub only
        assert client.version == 1 and client.predict([2.0]) == 2.0
        time.sleep(0.3)  # subscribed
        v2 = registry.register("m", LinearModel([3.0], 0.0))
        registry.promote("m", v2)
        took = wait_until(lambda: client.version == 2, timeout=1.0)
        assert client.predict([2.0]) == 6.0
        print(f"promotion seen after {took * 1000:.0f} ms")
        registry.rollback("m")
        wait_until(lambda: client.version == 1, timeout=1.0)


def test_periodic_check_catches_a_missed_message(registry):
    registry.promote("m", registry.register("m", LinearModel([1.0], 0.0)))
    with ModelClient(registry, "m", poll_interval=0.3) as client:
        v2 = registry.register("m", LinearModel([3.0], 0.0))
        registry.redis.hset(f"{registry.prefix}m:aliases", "champion", v2)  # no PUBLISH
        wait_until(lambda: client.version == 2, timeout=2.0)


def test_predict_from_many_threads_during_swaps_sees_whole_models(registry):
    a, b = LinearModel([1.0, 1.0], 0.0), LinearModel([10.0, 10.0], 5.0)
    va, vb = registry.register("m", a), registry.register("m", b)
    registry.promote("m", va)
    X = np.ones((50, 2))
    allowed = (a.predict(X), b.predict(X))
    bad = []
    with ModelClient(registry, "m", poll_interval=0.05) as client:
        stop = threading.Event()

        def serve():
            while not stop.is_set():
                y = client.predict(X)
                if not any(np.array_equal(y, ok) for ok in allowed):
                    bad.append(y)

        threads = [threading.Thread(target=serve) for _ in range(4)]
        for t in threads:
            t.start()
        for i in range(20):
            registry.promote("m", vb if i % 2 == 0 else va)
            time.sleep(0.02)
        stop.set()
        for t in threads:
            t.join()
        assert client.swaps > 0
    assert bad == []


@pytest.mark.reliability
def test_keeps_serving_through_a_redis_restart(tmp_path, caplog):
    from driftline.embedded import Service
    from driftline.embedded.stack import _valkey_binary
    from driftline.ports import free_port

    port = free_port()
    argv = [_valkey_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path)]
    server = Service("valkey", argv, port, log_path=tmp_path / "valkey.log")
    server.start()
    registry = ModelRegistry.from_url(f"redis://127.0.0.1:{port}/0")
    registry.promote("m", registry.register("m", LinearModel([2.0], 0.0)))
    caplog.set_level(logging.WARNING, logger="driftline.model_client")
    client = ModelClient(registry, "m", poll_interval=0.2)
    try:
        server.stop()
        wait_until(lambda: not client.redis_ok, timeout=5)
        assert client.predict([1.0]) == 2.0  # the last good model, from memory
        assert "Redis unreachable" in caplog.text and "serving v1 from memory" in caplog.text
        server = Service("valkey", argv, port, log_path=tmp_path / "valkey.log")
        server.start()
        wait_until(lambda: client.redis_ok, timeout=10)
        registry.promote("m", registry.register("m", LinearModel([5.0], 0.0)))
        wait_until(lambda: client.version == 2, timeout=2)
        assert client.predict([1.0]) == 5.0
        assert caplog.text.count("Redis unreachable") == 1  # once per outage, not per retry
    finally:
        client.close()
        registry.close()
        server.stop()
