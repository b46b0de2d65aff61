"""Issue #17 through a live worker: estimated metrics and segments on the metrics topic
(read back by the API), segment alerts on the alerts topic, Prometheus series."""

from __future__ import annotations

import json
import uuid

import orjson
import pytest
from conftest import WorkerProcess
from kafka_io import create_topics, produce
from test_dashboard import BROWSER, browser
from test_monitor_estimate import segmented
from test_web import get, wait_until

from driftline.ports import free_port
from driftline.settings import Settings

pytestmark = pytest.mark.integration


def test_worker_publishes_estimates_and_segments(stack, tmp_path):
    tag = uuid.uuid4().hex[:10]
    config = tmp_path / "monitor.toml"
    config.write_text("[models.seg]\nsegments = true\nmax_segments = 20\n\n"
                      "[models.seg.estimation]\nreference_pairs = 300\n")
    settings = Settings(kafka_url=stack.kafka_url, redis_url=stack.redis_url,
                        topic_prefix=f"e{tag}.", group_id=f"e{tag}", partitions=1,
                        registry_prefix=f"e{tag}:", metrics_interval=0.5,
                        web_port=free_port(), monitor_config=str(config))
    # One partition: the pairs reach the monitor in the order of the stream (with several,
    # the join's partitions interleave in chunks, which mixes a segment's before and after).
    create_topics(settings)
    predictions, pairs = segmented(20_000, 10_000, 21)
    for p in predictions + pairs:
        p["model"] = "seg"
    sent = [("predictions", p["prediction_id"].encode(), orjson.dumps(p)) for p in predictions]
    labels = [("labels", p["prediction_id"].encode(), orjson.dumps(
        {"prediction_id": p["prediction_id"], "label": p["label"], "ts": p["label_ts"]}))
        for p in pairs]
    # The first half with its labels (the estimators fit on the first pairs of each
    # segment), then the second half's predictions before any of their labels.
    produce(settings, sent[:10_000] + labels[:10_000])
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    base = f"http://127.0.0.1:{settings.web_port}"

    def scored(n):
        status, body, _ = get(f"{base}/api/models/seg")
        report = json.loads(body)["metrics"].get("1") if status == 200 else None
        return report is not None and report["n_scored"] >= n

    def done():
        status, body, _ = get(f"{base}/api/models/seg")
        if status != 200:
            return None
        detail = json.loads(body)
        report = detail["metrics"].get("1")
        if not report or report["n_scored"] < 20_000 or len(report.get("segments", {})) < 10:
            return None
        if not any(a["segment"] == "s3" and a["kind"] == "metric_threshold"
                   for a in detail["open_alerts"]):
            return None
        return detail
    try:
        assert wait_until(lambda: scored(10_000), 120), worker.log()
        produce(settings, sent[10_000:])
        produce(settings, labels[10_000:])
        detail = wait_until(done, 120)
        assert detail, worker.log()
        report = detail["metrics"]["1"]
        assert report["segment"] is None and report["estimator"] == "dle"
        assert report["estimated_mse"] == pytest.approx(report["estimated_baseline_mse"],
                                                        rel=0.2)
        segments = report["segments"]
        assert sorted(segments) == [f"s{k}" for k in range(10)]
        assert all(s["segment"] == name for name, s in segments.items())
        assert segments["s3"]["rolling_mse"] > 1.5 * segments["s3"]["baseline_mse"]
        assert segments["s0"]["estimated_mse"] is not None
        status, body, _ = get(f"{base}/api/alerts?model=seg&status=open")
        open_alerts = json.loads(body)["alerts"]
        assert {(a["kind"], a["segment"]) for a in open_alerts} >= {
            ("metric_threshold", "s3")}
        assert not [a for a in open_alerts if a["kind"] == "metric_threshold"
                    and a["segment"] is None]
        s3 = next(a for a in open_alerts if a["kind"] == "metric_threshold")
        assert s3["alert_id"] == "seg.v1.s:s3.metric_threshold.1.firing"
        status, body, _ = get(f"{base}/metrics")
        text = body.decode()
        assert 'driftline_estimated_mse{model="seg",version="1"}' in text
        assert 'driftline_segment_rolling_mse{model="seg",segment="s3",version="1"}' in text
        assert 'driftline_segment_estimated_mse{model="seg",segment="s3",version="1"}' in text
        if BROWSER is not None:  # the dashboard: a row per segment, s3's marked firing
            dom = browser(base + "/", tmp_path, "segments")
            assert dom.count('<tr data-segment="') == 10, dom  # a row per segment
            assert '<tr data-segment="s3" class="firing">' in dom
            assert "metric_threshold [s3]" in dom
    finally:
        worker.stop()
