"""Hostile producers (issue 30): what one producer controls - its event times and its
version numbers - cannot push the monitor's clocks forward nor close the real
version's alerts."""

from __future__ import annotations

import time
import urllib.request

import pytest
from kafka_io import create_topics, label, prediction, produce, read_events, wait_for_events
from test_superseded import T0, drifted_v1, run, v2

from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.kafka import partition_for
from driftline.ports import free_port


class Registry:
    """What RegistryBaselines answers: v1 of ``m`` registered, any other version not."""

    def __call__(self, model: str, version: int | None) -> float | None:
        return None

    def registered(self, model: str, version: int | None) -> bool | None:
        return version == 1 if model == "m" else None


def test_a_made_up_version_does_not_supersede_the_registered_one():
    """One forged prediction of v99, then any number: v1's drift alerts stay open (the
    registry knows m and has no v99). Without the registry the same input closes them,
    as the input-only rule says for a model the registry does not know."""
    forged = Monitor(MonitorConfig(), Registry())
    last_v1 = drifted_v1(forged)
    predictions, pairs = v2(70_000, last_v1 + 1.0)
    predictions = [{**p, "version": 99} for p in predictions]
    pairs = [{**p, "version": 99} for p in pairs]
    assert run(forged, predictions, pairs) == []
    assert sum(forged.books["m"].is_firing(k) for k in forged.books["m"].episodes) == 2

    unknown = Monitor(MonitorConfig())
    drifted_v1(unknown)
    closed = run(unknown, predictions, pairs)
    assert [a["reason"] for a in closed] == ["superseded", "superseded"]


@pytest.mark.integration
def test_a_far_future_event_time_is_clamped_to_the_workers_clock(settings, worker_factory):
    """ts = 99,999,999,999 (the wire allows up to 1e11) becomes the worker's clock on the
    scored pair, and is counted in Prometheus."""
    web = free_port()
    s = settings.replace(web_port=web)
    create_topics(s)
    worker = worker_factory(s)
    far = 99_999_999_999.0
    p = partition_for(b"f-1", s.partitions)
    q = partition_for(b"f-2", s.partitions)
    produce(s, [("predictions", b"f-1", prediction("f-1", ts=far))], partition=p)
    produce(s, [("labels", b"f-1", label("f-1", ts=T0))], partition=p)
    produce(s, [("predictions", b"f-2", prediction("f-2", ts=T0))], partition=q)
    produce(s, [("labels", b"f-2", label("f-2", ts=far))], partition=q)
    before = time.time()
    pairs = {e["prediction_id"]: e for e in wait_for_events(s, "scored", 2, timeout=60)}
    assert set(pairs) == {"f-1", "f-2"}, worker.log()
    assert before - 120 <= pairs["f-1"]["ts"] <= time.time() + 1
    assert pairs["f-2"]["ts"] == T0 and before - 120 <= pairs["f-2"]["label_ts"] <= time.time()
    with urllib.request.urlopen(f"http://127.0.0.1:{web}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert 'driftline_timestamps_clamped_total{kind="prediction"} 1.0' in text
    assert 'driftline_timestamps_clamped_total{kind="label"} 1.0' in text
    assert len(read_events(s, "scored")) == 2


@pytest.mark.integration
def test_registry_lookups_say_what_is_registered_and_back_off_while_redis_is_down(settings):
    import numpy as np

    from driftline import LinearModel, ModelRegistry
    from driftline.agents.monitor.baselines import RegistryBaselines

    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    registry.register("m", LinearModel(np.array([1.0]), 0.0, ["x"]), metrics={"mse": 2.5})
    registry.close()
    facts = RegistryBaselines(settings)
    assert (facts("m", 1), facts.registered("m", 1)) == (2.5, True)
    assert (facts("m", 99), facts.registered("m", 99)) == (None, False)
    assert facts.registered("other", 1) is None and facts.registered("m", None) is None
    facts.MAX_CACHED = 5  # made-up names do not grow the cache past its bound
    for k in range(20):
        assert facts.registered(f"made-up-{k}", 1) is None
    assert len(facts._cache) <= 5 and facts.registered("m", 1) is True

    # A Redis that accepts connections and never answers: each lookup waits its 1 s.
    import socket

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    clock = [0.0]
    down = RegistryBaselines(
        settings.replace(redis_url=f"redis://127.0.0.1:{hung.getsockname()[1]}/0"),
        clock=lambda: clock[0])
    try:
        started = time.monotonic()
        for version in range(1, 11):  # 10 new versions met while Redis is down
            assert down("m", version) is None
        waited = time.monotonic() - started
        assert 0.9 < waited < 3.0  # one lookup's timeout (and its retry), not ten
        clock[0] = RegistryBaselines.DOWN_FOR + 1  # later: it asks again (and waits again)
        started = time.monotonic()
        assert down.registered("m", 1) is None
        assert time.monotonic() - started > 0.9 and down._down_until > clock[0]
    finally:
        hung.close()


def _pairs(model: str, version: int, n: int, t0: float = T0) -> list[dict]:
    return [{"prediction_id": f"{model}-{version}-{i}", "model": model, "version": version,
             "prediction": 1.0, "label": 0.5, "error": 0.5, "features": {"x": float(i)},
             "ts": t0 + i, "label_ts": t0 + i} for i in range(n)]


def _config(**limits) -> MonitorConfig:
    return MonitorConfig.from_dict({"limits": limits})


def test_models_past_the_cap_are_refused_and_counted():
    mon = Monitor(_config(max_models=3))
    for k in range(5):
        mon.process_pairs(_pairs(f"m{k}", 1, 10))
    assert sorted(mon.by_model) == ["m0", "m1", "m2"]
    assert mon.refused == {"too_many_models": 20}
    mon.process_pairs(_pairs("m1", 1, 10))  # a known model goes on
    assert mon.versions[("m1", 1)].rolling.count == 20


def test_a_new_version_past_the_cap_drops_the_idlest_quiet_one():
    mon = Monitor(_config(max_versions=2))
    mon.process_pairs(_pairs("m", 1, 10))
    mon.process_pairs(_pairs("m", 2, 10))
    mon.process_pairs(_pairs("m", 1, 10))  # v1 fed last: v2 is the idlest
    mon.process_pairs(_pairs("m", 3, 10))
    assert sorted(v for _, v in mon.versions) == [1, 3] and mon.evicted == 1
    assert [vm.version for vm in mon.by_model["m"]] == [1, 3]


def test_a_version_with_an_open_alert_is_never_dropped():
    mon = Monitor(_config(max_versions=1))
    drifted_v1(mon)  # v1 has two open episodes
    mon.process_pairs(_pairs("m", 2, 10, t0=T0 + 500))
    assert list(mon.versions) == [("m", 1)]
    assert mon.refused == {"too_many_versions": 10}


def test_registered_only_monitors_what_the_registry_holds():
    mon = Monitor(_config(registered_only=True), Registry())
    mon.process_pairs(_pairs("m", 1, 10) + _pairs("m", 99, 5) + _pairs("other", 1, 7))
    assert list(mon.versions) == [("m", 1)] and mon.refused == {"unregistered": 12}


def test_limits_are_checked_when_the_config_is_read():
    from driftline.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[limits\]"):
        MonitorConfig.from_dict({"limits": {"max_models": 0}})
    with pytest.raises(ConfigError, match=r"\[limits\]"):
        MonitorConfig.from_dict({"limits": {"max_modelz": 5}})


@pytest.mark.integration
def test_waiting_predictions_past_the_cap_expire_early_and_are_counted(settings,
                                                                       worker_factory):
    web = free_port()
    s = settings.replace(web_port=web, join_max_pending=5, partitions=1)
    create_topics(s)
    worker_factory(s)
    produce(s, [("predictions", f"w-{i}".encode(), prediction(f"w-{i}", ts=T0 + i))
                for i in range(12)])
    expired = wait_for_events(s, "expired", 7, timeout=60)
    assert sorted(e["prediction_id"] for e in expired) == sorted(f"w-{i}" for i in range(7))
    with urllib.request.urlopen(f"http://127.0.0.1:{web}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert 'driftline_join_shed_total{kind="prediction"} 7.0' in text
