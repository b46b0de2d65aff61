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
