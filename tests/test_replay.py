"""``driftline replay`` gives the alerts the streaming worker publishes for the same input."""

from __future__ import annotations

import time

import orjson
import pytest
from kafka_io import create_topics, produce, read_all

from driftline.agents.monitor.config import MonitorConfig
from driftline.eventfile import read_events
from driftline.replay import Replay
from driftline.simulate import World, event_log

pytestmark = pytest.mark.integration


def test_replay_and_the_streaming_worker_raise_the_same_alerts(settings, worker_factory):
    # One partition, so the worker sees the events in the log's order.
    settings = settings.replace(partitions=1, metrics_interval=0.5)
    world = World("feature-shift", drift_at=4_000, seed=3)
    log = list(event_log(world, 8_000, model="houses"))
    offline = Replay(MonitorConfig()).feed(
        read_events([orjson.dumps(e).decode() for e in log])).finish()

    create_topics(settings)
    worker_factory(settings)
    produce(settings, [("predictions" if "model" in e else "labels",
                        e["prediction_id"].encode(), orjson.dumps(e)) for e in log])
    deadline = time.monotonic() + 120
    final = None
    while time.monotonic() < deadline:
        metrics = [orjson.loads(r.value) for r in read_all(settings, "metrics")]
        final = metrics[-1] if metrics else None
        if final and final["n_scored"] == 8_000 and final["n_predictions"] == 8_000:
            break
        time.sleep(1)
    assert final and final["n_scored"] == 8_000, final
    time.sleep(1.0)
    streamed = [orjson.loads(r.value) for r in read_all(settings, "alerts")]

    def key(a):
        return (a["alert_id"], a["kind"], a["status"], a["version"], a["feature"],
                a["segment"], a["ts"])

    assert sorted(map(key, offline.alerts)) == sorted(map(key, streamed))
    kinds = {a["kind"] for a in streamed}
    assert {"concept_drift", "metric_threshold", "data_drift",
            "estimated_degradation"} <= kinds, kinds
    # Pair-driven alerts carry the same numbers too (PSI alerts also report the rolling
    # MSE of the moment, which depends on how predictions and pairs interleave).
    by_id = {a["alert_id"]: a for a in streamed}
    for alert in offline.alerts:
        if alert["kind"] in ("concept_drift", "metric_threshold"):
            assert by_id[alert["alert_id"]]["metrics"] == pytest.approx(alert["metrics"])
    assert offline.versions["houses v1"]["rolling_mse"] == pytest.approx(final["rolling_mse"])
