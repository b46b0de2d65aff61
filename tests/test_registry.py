"""The Redis model registry against a real Valkey server."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid

import orjson
import pytest
import redis

from driftline import ArtifactError, LinearModel, ModelRegistry, RegistryError

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(stack):
    reg = ModelRegistry.from_url(stack.redis_url, prefix=f"t{uuid.uuid4().hex[:8]}:",
                                 actor="tester")
    yield reg
    reg.close()


def model(k: float = 1.0) -> LinearModel:
    return LinearModel([k, 2 * k], 0.5, ["a", "b"])


def test_register_numbers_versions_and_load_round_trips(registry):
    v1 = registry.register("houses", model(1), metrics={"mse": 2.0},
                           meta={"parent_version": None, "request_id": "r1"})
    v2 = registry.register("houses", model(2))
    assert (v1, v2) == (1, 2)
    assert registry.register("other", model(3)) == 1
    loaded = registry.load("houses", version=1)
    assert loaded == model(1) and loaded.version == 1
    assert loaded.meta == {"metrics": {"mse": 2.0}, "parent_version": None, "request_id": "r1",
                           "kind": "linear", "task": "regression"}
    assert registry.models() == ["houses", "other"]
    infos = registry.versions("houses")
    assert [(i.version, i.status, i.aliases) for i in infos] == [(1, "active", ()),
                                                                  (2, "active", ())]
    assert len(infos[0].checksum) == 64


def test_promote_rollback_and_history(registry):
    for k in (1, 2, 3):
        registry.register("m", model(k))
    with pytest.raises(RegistryError, match="no alias 'champion'"):
        registry.load("m")
    assert registry.promote("m", 1, reason="first") is None
    assert registry.promote("m", 2) == 1
    assert registry.promote("m", 3, reason="better") == 2
    assert registry.load("m").version == 3
    assert registry.rollback("m", reason="v3 is bad") == 2
    assert registry.load("m") == model(2)
    assert registry.rollback("m") == 1
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback("m")
    actions = [(h["action"], h["version"], h["alias"], h["previous"], h["reason"])
               for h in registry.history("m")]
    assert actions == [
        ("registered", 1, "", None, ""), ("registered", 2, "", None, ""),
        ("registered", 3, "", None, ""), ("promoted", 1, "champion", None, "first"),
        ("promoted", 2, "champion", 1, ""), ("promoted", 3, "champion", 2, "better"),
        ("rolled_back", 2, "champion", 3, "v3 is bad"), ("rolled_back", 1, "champion", 2, "")]
    assert {h["actor"] for h in registry.history("m")} == {"tester"}


def test_aliases_archive_and_rejected_versions(registry):
    registry.register("m", model(1))
    registry.register("m", model(2), rejected="holdout MSE 3.1 not below champion's 2.0")
    registry.promote("m", 1)
    registry.set_alias("m", "shadow", 2)
    assert registry.aliases("m") == {"champion": 1, "shadow": 2}
    assert registry.get("m", 2).status == "rejected"
    assert "3.1" in registry.get("m", 2).meta["rejected_reason"]
    with pytest.raises(RegistryError, match="alias 'shadow' points at it"):
        registry.archive("m", 2)
    registry.delete_alias("m", "shadow")
    registry.archive("m", 2, reason="lost")
    assert registry.get("m", 2).status == "archived"
    with pytest.raises(RegistryError, match="archived"):
        registry.promote("m", 2)
    with pytest.raises(RegistryError, match="no such version"):
        registry.promote("m", 9)
    with pytest.raises(RegistryError, match="must match"):
        registry.register("bad name", model())


@pytest.mark.reliability
def test_tampered_artifact_is_refused(registry):
    registry.register("m", model(1))
    key = f"{registry.prefix}m:v:1"
    artifact = registry.redis.hget(key, "artifact")
    forged = LinearModel([100.0, 100.0], 0.0, ["a", "b"]).to_bytes()
    assert forged != artifact
    registry.redis.hset(key, "artifact", forged)
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        registry.load("m", version=1)


REGISTER_ONE = """
import sys
from driftline import LinearModel, ModelRegistry
reg = ModelRegistry.from_url(sys.argv[1], prefix=sys.argv[2])
print(reg.register("race", LinearModel([1.0], 0.0)))
"""


def test_eight_processes_registering_at_once_get_versions_1_to_8(registry, stack):
    procs = [subprocess.Popen([sys.executable, "-c", REGISTER_ONE, stack.redis_url,
                               registry.prefix], stdout=subprocess.PIPE, text=True)
             for _ in range(8)]
    versions = sorted(int(p.communicate(timeout=60)[0]) for p in procs)
    assert versions == list(range(1, 9))
    assert [v.version for v in registry.versions("race")] == list(range(1, 9))


def test_concurrent_promotes_keep_alias_and_history_consistent(registry):
    for k in range(1, 6):
        registry.register("m", model(k))
    errors = []

    def promote_many(seed: int) -> None:
        try:
            for i in range(60):
                registry.promote("m", (seed + i) % 5 + 1)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=promote_many, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    promotions = [h for h in registry.history("m") if h["action"] == "promoted"]
    # Every promotion's "previous" is the version the one before it set: no lost update.
    for before, after in zip(promotions, promotions[1:]):
        assert after["previous"] == before["version"]
    assert registry.resolve("m") == promotions[-1]["version"]
    # The rollback list holds exactly the earlier targets, newest first.
    stack_ = [int(v) for v in registry.redis.lrange(f"{registry.prefix}m:prev:champion", 0, -1)]
    assert stack_ == [p["previous"] for p in reversed(promotions[1:])]


def test_model_events_on_the_models_topic(stack, settings):
    from kafka_io import create_topics, read_all

    from driftline.model_events import KafkaModelEvents

    create_topics(settings)
    reg = ModelRegistry.from_url(stack.redis_url, prefix=f"e{uuid.uuid4().hex[:8]}:",
                                 on_event=KafkaModelEvents(settings.kafka_url,
                                                           topic_prefix=settings.topic_prefix))
    try:
        v1 = reg.register("m", model(1), metrics={"mse": 1.0})
        v2 = reg.register("m", model(2), metrics={"mse": 0.5},
                          meta={"parent_version": 1, "request_id": "req-7"})
        reg.promote("m", v1)
        reg.promote("m", v2)
        reg.rollback("m")
        reg.register("m", model(3), rejected="worse")
    finally:
        reg.close()
    events = [orjson.loads(r.value) for r in read_all(settings, "models")]
    assert [(e["event"], e["version"]) for e in events] == [
        ("registered", 1), ("registered", 2), ("promoted", 1), ("promoted", 2),
        ("rolled_back", 1), ("rejected", 3)]
    assert events[3]["parent_version"] == 1 and events[3]["request_id"] == "req-7"
    assert events[3]["metrics"] == {"mse": 0.5}


@pytest.mark.reliability
def test_password_protected_redis(tmp_path):
    from driftline.embedded import Service
    from driftline.embedded.stack import _valkey_binary
    from driftline.ports import free_port

    port = free_port()
    server = Service("valkey", [_valkey_binary(), "--port", str(port), "--bind", "127.0.0.1",
                                "--requirepass", "s3cret", "--save", "", "--dir", str(tmp_path)],
                     port, log_path=tmp_path / "valkey.log")
    server.start()
    try:
        reg = ModelRegistry.from_url(f"redis://:s3cret@127.0.0.1:{port}/0")
        assert reg.register("m", model()) == 1
        reg.close()
        anonymous = ModelRegistry.from_url(f"redis://127.0.0.1:{port}/0")
        with pytest.raises(RegistryError):
            anonymous.register("m", model())
        anonymous.close()
    finally:
        server.stop()


@pytest.mark.reliability
def test_rediss_url_uses_tls():
    reg = ModelRegistry.from_url("rediss://:pw@redis.example:6380/2")
    pool = reg.redis.connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.connection_kwargs["password"] == "pw" and pool.connection_kwargs["db"] == 2
    reg.close()


def test_register_is_idempotent_per_request_id(registry):
    events = []
    registry.on_event = events.append
    first = registry.register("houses", model(1), metrics={"mse": 1.0}, request_id="req-1")
    again = registry.register("houses", model(2), metrics={"mse": 9.0}, request_id="req-1",
                              rejected="lost")
    other = registry.register("houses", model(3), request_id="req-2")
    assert (first, again, other) == (1, 1, 2)
    assert registry.version_for_request("houses", "req-1") == 1
    assert registry.version_for_request("houses", "req-3") is None
    assert registry.load("houses", version=1) == model(1)
    assert registry.get("houses", 1).meta["request_id"] == "req-1"
    assert [e["event"] for e in events] == ["registered", "registered"]
    assert [h["action"] for h in registry.history("houses")] == ["registered", "registered"]


def test_one_registry_that_knows_no_kafka_and_takes_a_sink():
    import driftline
    from driftline.models import registry as core
    from driftline.settings import Settings

    assert driftline.ModelRegistry is core.ModelRegistry
    with pytest.raises(TypeError):  # Kafka is a sink (KafkaModelEvents), not a URL here
        core.ModelRegistry.from_url("redis://127.0.0.1:1/0", kafka_url="kafka://k:9092")
    with pytest.raises(TypeError):  # on_event has no default: events are chosen, not lost
        core.ModelRegistry.from_settings(Settings())
    sink: list = []
    reg = core.ModelRegistry.from_settings(Settings(), on_event=sink.append)
    assert reg.on_event == sink.append
    reg.close()
    off = driftline.ModelRegistry.from_settings(Settings(), on_event=None)
    assert off.on_event is None and isinstance(off, core.ModelRegistry)
    off.close()
    with pytest.raises(TypeError):
        driftline.ModelRegistry.from_url("redis://127.0.0.1:1/0", kafka_url="kafka://k:9092",
                                         on_event=sink.append)


def test_a_sink_is_closed_with_the_registry_and_when_the_registry_cannot_be_built():
    from driftline.models import registry as core
    from driftline.settings import Settings

    class Sink(list):
        closed = 0

        def close(self) -> None:
            self.closed += 1

    sink = Sink()
    reg = core.ModelRegistry.from_url("redis://127.0.0.1:1/0", on_event=sink)
    assert sink.closed == 0
    reg.close()
    assert sink.closed == 1
    refused = Sink()
    with pytest.raises(TypeError):
        core.ModelRegistry.from_url("redis://127.0.0.1:1/0", on_event=refused, no_such=1)
    assert refused.closed == 1
    refused = Sink()
    with pytest.raises(TypeError):
        core.ModelRegistry.from_settings(Settings(), on_event=refused, no_such=1)
    assert refused.closed == 1


def test_challenger_alias_reject_and_a_rollback_only_of_the_expected_version(registry):
    events: list[dict] = []
    registry.on_event = events.append
    for k in (1, 2, 3):
        registry.register("m", model(k))
    registry.promote("m", 1)
    registry.set_alias("m", "challenger", 2, reason="holdout winner")
    assert registry.reject("m", 2, reason="shadow: MSE 2 not below 1",
                           metrics={"shadow_mse": 2.0, "live_mse": 1.0}) is True
    assert registry.reject("m", 2, reason="again") is False  # recorded once
    assert registry.get("m", 2).status == "rejected" and "challenger" not in registry.aliases("m")
    registry.promote("m", 3)
    with pytest.raises(RegistryError, match="moved to v3 meanwhile; not rolled back"):
        registry.rollback("m", expect=2)
    assert registry.resolve("m") == 3
    assert registry.rollback("m", expect=3, reason="canary: 5.0 vs 1.0",
                             metrics={"canary_mse": 5.0}) == 1
    assert [(e["event"], e["version"]) for e in events][3:] == [
        ("promoted", 1), ("shadowing", 2), ("rejected", 2), ("promoted", 3),
        ("rolled_back", 1)]
    assert events[5]["metrics"] == {"shadow_mse": 2.0, "live_mse": 1.0}
    assert events[-1]["metrics"] == {"canary_mse": 5.0}
    rows = [(h["action"], h["version"], h["alias"], h["actor"], h["reason"])
            for h in registry.history("m")][4:]
    assert rows == [("alias_set", 2, "challenger", "tester", "holdout winner"),
                    ("rejected", 2, "challenger", "tester", "shadow: MSE 2 not below 1"),
                    ("promoted", 3, "champion", "tester", ""),
                    ("rolled_back", 1, "champion", "tester", "canary: 5.0 vs 1.0")]
