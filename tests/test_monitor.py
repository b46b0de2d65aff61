"""The monitor agents in a real worker: the registry baseline, alerts on the topic (kill -9
is in test_reliability_worker.py)."""

from __future__ import annotations

import time

import orjson
import pytest
from kafka_io import create_topics, produce, read_all
from simulate import stream

pytestmark = pytest.mark.integration


def messages(predictions, pairs):
    msgs = [("predictions", p["prediction_id"].encode(), orjson.dumps(p)) for p in predictions]
    msgs += [("labels", p["prediction_id"].encode(),
              orjson.dumps({"prediction_id": p["prediction_id"], "label": p["label"],
                            "ts": p["label_ts"]})) for p in pairs]
    return msgs


def latest_metrics(settings, model="m", version=1):
    records = [orjson.loads(r.value) for r in read_all(settings, "metrics")]
    mine = [m for m in records if (m["model"], m["version"]) == (model, version)]
    return mine[-1] if mine else None


def wait_for_metrics(settings, n, timeout=150.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = latest_metrics(settings)
        if m and m["n_scored"] >= n and m["n_predictions"] >= n:
            return m
        time.sleep(1.0)
    return latest_metrics(settings)


def test_baseline_comes_from_the_registry_when_the_version_has_one(settings, worker_factory,
                                                                   stack):
    from driftline import LinearModel, ModelRegistry

    settings = settings.replace(metrics_interval=0.5)
    registry = ModelRegistry.from_url(stack.redis_url, prefix=settings.registry_prefix)
    registry.register("m", LinearModel([2.0], 0.0), metrics={"mse": 0.75})
    registry.close()
    create_topics(settings)
    predictions, pairs = stream(500, seed=22)
    produce(settings, messages(predictions, pairs))
    worker_factory(settings)
    final = wait_for_metrics(settings, 500, timeout=90)
    assert final["baseline_mse"] == 0.75  # not the MSE of its first pairs (~1.0)


def test_an_old_versions_alerts_resolve_as_superseded_in_a_real_worker(settings, worker_factory,
                                                                        stack, tmp_path):
    """v1's alert fires; v2 then serves, and once v1 has had no predictions for
    ``superseded_after`` seconds of event time the alert resolves with reason superseded,
    exactly once (the issue's demo complaint: v1's alerts stayed firing forever)."""
    from kafka_io import wait_for_events

    from driftline import LinearModel, ModelRegistry

    config = tmp_path / "monitor.toml"
    config.write_text("[defaults]\nsuperseded_after = 20.0\n")
    settings = settings.replace(monitor_config=str(config))
    # A registry baseline and a stream drifted from its first pair: the rolling MSE stays
    # ~3x the baseline whatever order the partitions' pairs arrive in, so the alert stays open.
    registry = ModelRegistry.from_url(stack.redis_url, prefix=settings.registry_prefix)
    registry.register("m", LinearModel([2.0], 0.0), metrics={"mse": 1.0})
    # v2 is registered too: where the registry knows a model, only a version it holds
    # can supersede another (issue 30; tests/test_hostile.py has the forged case).
    registry.register("m", LinearModel([2.0], 0.0), metrics={"mse": 1.0})
    registry.close()
    create_topics(settings)
    predictions, pairs = stream(4_000, seed=31, drift_at=0)
    produce(settings, messages(predictions, pairs))
    worker_factory(settings)
    fired = wait_for_events(settings, "alerts", 1, timeout=120)
    assert [(a["alert_id"], a["status"]) for a in fired] == [
        ("m.v1.metric_threshold.1.firing", "firing")]
    # v2 takes over 1 s after v1's last prediction, for 30 s of event time (no labels yet).
    v2, _ = stream(3_000, seed=32, version=2, start_ts=predictions[-1]["ts"] + 1.0)
    produce(settings, messages(v2, []))
    alerts = wait_for_events(settings, "alerts", 2, timeout=90)
    assert [(a["alert_id"], a["status"], a.get("reason")) for a in alerts] == [
        ("m.v1.metric_threshold.1.firing", "firing", None),
        ("m.v1.metric_threshold.1.resolved", "resolved", "superseded")]
    assert alerts[1]["ts"] >= predictions[-1]["ts"] + 20.0  # event time, not the wall clock
    assert "v2 serves m" in alerts[1]["message"]
