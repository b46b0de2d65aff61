"""The monitor agents in a real worker: alerts on the topic, and kill -9 changes nothing."""

from __future__ import annotations

import time

import orjson
import pytest

from driftline.agents.monitor_config import MonitorConfig
from driftline.agents.monitor_core import Monitor
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


@pytest.mark.reliability
def test_kill_9_twice_gives_the_uninterrupted_results(settings, worker_factory):
    # One partition: the order of pairs is then fixed by the input, so the offline
    # run over the same order is the uninterrupted run.
    settings = settings.replace(partitions=1, metrics_interval=0.5)
    create_topics(settings)
    n = 30_000
    predictions, pairs = stream(n, seed=21, drift_at=15_000)
    msgs = messages(predictions, pairs)
    first = msgs[: len(msgs) // 3]
    worker = worker_factory(settings, "w0")
    at_kill = []

    def kill_when(ready, name):
        nonlocal worker
        deadline = time.monotonic() + 90
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.2)
        worker.kill()
        m = latest_metrics(settings)
        at_kill.append(m["n_predictions"] + m["n_scored"] if m else 0)
        worker = worker_factory(settings, name)

    def progressed(events):
        m = latest_metrics(settings)
        return m is not None and m["n_predictions"] + m["n_scored"] >= events

    produce(settings, first)
    kill_when(lambda: progressed(n / 3), "w1")  # mid-stream, before any alert
    # ... and again once alerts are out, so the restart replays them: the labels of the
    # pairs after 17,000 are held back until then, so the kill is mid-stream too.
    cut = n + 17_000
    produce(settings, msgs[len(first):cut])
    kill_when(lambda: len(read_all(settings, "alerts")) >= 1, "w2")
    produce(settings, msgs[cut:])
    assert all(0 < c < 2 * n for c in at_kill), at_kill
    assert len(read_all(settings, "alerts")) >= 1
    final = wait_for_metrics(settings, n)
    assert final is not None and final["n_scored"] == n and final["n_predictions"] == n, final
    assert "monitor partition 0 recovered" in worker.log()

    scored = [orjson.loads(r.value) for r in read_all(settings, "scored")]
    offline = Monitor(MonitorConfig())
    expected = offline.process_predictions(predictions) + offline.process_pairs(scored)
    report = offline.versions[("m", 1)].report()
    assert final["rolling_mse"] == pytest.approx(report["rolling_mse"], abs=1e-9)
    assert final["baseline_mse"] == pytest.approx(report["baseline_mse"], abs=1e-9)
    assert final["drift_detections"] == report["drift_detections"]

    published = [orjson.loads(r.value)["alert_id"] for r in read_all(settings, "alerts")]
    assert len(published) == len(set(published)), "an alert was published twice"
    assert sorted(published) == sorted(a["alert_id"] for a in expected)
    assert {"m.v1.concept_drift.1.firing", "m.v1.metric_threshold.1.firing"} <= set(published)
    assert worker.stop() == 0


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
