"""Silences and delivery outcomes over the worker's HTTP API, and deliveries by outcome
in /metrics, against a live worker."""

from __future__ import annotations

import json
import urllib.request

import orjson
import pytest
from conftest import WorkerProcess
from kafka_io import create_topics, produce
from test_dashboard import BROWSER, browser
from test_delivery import alert
from test_web import get, wait_until

from driftline.ports import free_port

pytestmark = pytest.mark.integration


def send(method: str, url: str, body: object | None = None,
         token: str = "s3cret") -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, data=None if body is None else (
        body if isinstance(body, bytes) else orjson.dumps(body)))
    request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def web(settings, tmp_path):
    settings = settings.replace(web_port=free_port(), api_token="s3cret")
    create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    base = f"http://127.0.0.1:{settings.web_port}"
    try:
        assert wait_until(lambda: get(f"{base}/healthz")[0] == 200), worker.log()
        yield base, settings
    finally:
        worker.stop()


def test_silences_over_the_api_and_deliveries_in_metrics(web):
    base, settings = web
    status, made = send("POST", f"{base}/api/silences", {
        "model": "houses", "kind": "data_drift", "duration": "2h", "reason": "rebuild"})
    assert status == 201, made
    silence = made["silence"]
    assert silence["created_by"] == "api" and silence["ends_at"] - silence["starts_at"] == 7200
    assert send("GET", f"{base}/api/silences") == (200, {"silences": [silence]})
    for bad, why in (({"model": "houses", "duration": "2h"}, "must be strings"),
                     ({"model": "houses", "duration": "soon", "reason": "x"}, "duration"),
                     ({"model": "houses", "kind": "meltdown", "duration": 60, "reason": "x"},
                      "kind 'meltdown'"), (b"not json", "JSON object")):
        status, answer = send("POST", f"{base}/api/silences", bad)
        assert status == 400 and why in answer["error"], (bad, answer)
    assert send("DELETE", f"{base}/api/silences/{silence['id']}") == (
        200, {"ended": silence["id"]})
    assert send("DELETE", f"{base}/api/silences/{silence['id']}")[0] == 404
    assert send("GET", f"{base}/api/silences") == (200, {"silences": []})
    assert send("GET", f"{base}/api/silences", token="wrong")[0] == 401

    records = [{"alert_id": f"m.v1.concept_drift.{n}.firing", "target": "alertmanager",
                "outcome": outcome, "attempts": 1, "status_code": 200, "error": None,
                "ts": 100.0 + n} for n, outcome in enumerate(
                    ("delivered", "delivered", "silenced"))]
    produce(settings, [("alert_deliveries", r["alert_id"].encode(), orjson.dumps(r))
                       for r in records])

    def metrics():
        text = get(f"{base}/metrics", "s3cret")[1].decode()
        return text if 'outcome="silenced"' in text else None
    text = wait_until(metrics, 30)
    assert text is not None
    assert 'driftline_alert_deliveries_total{outcome="delivered",target="alertmanager"} 2.0' \
        in text
    assert 'driftline_alert_deliveries_total{outcome="silenced",target="alertmanager"} 1.0' \
        in text
    status, answer = send("GET", f"{base}/api/deliveries?alert_id=m.v1.concept_drift.2.firing")
    assert status == 200 and [d["outcome"] for d in answer["deliveries"]] == ["silenced"]


@pytest.mark.skipif(BROWSER is None, reason="no Chromium here: .ci/run installs Debian's "
                                            "chromium package; apt-get install chromium")
def test_the_dashboard_shows_how_each_alert_was_delivered(web, tmp_path):
    base, settings = web
    alerts = [alert("concept_drift", model="houses"), alert("data_drift", feature="rooms",
                                                            model="houses")]
    produce(settings, [("alerts", b"houses", orjson.dumps(a)) for a in alerts])
    records = [("alertmanager", "delivered"), ("webhook-1:ops", "delivered"),
               ("alertmanager", "silenced"), ("webhook-1:ops", "silenced")]
    produce(settings, [("alert_deliveries", a["alert_id"].encode(), orjson.dumps(
        {"alert_id": a["alert_id"], "target": target, "outcome": outcome, "attempts": 1,
         "status_code": None, "error": None, "ts": 1.0}))
        for a, (target, outcome) in zip([alerts[0]] * 2 + [alerts[1]] * 2, records)])
    assert wait_until(lambda: len(send("GET", f"{base}/api/deliveries")[1]["deliveries"]) == 4)
    dom = browser(f"{base}/?token=s3cret", tmp_path, "deliveries")
    assert '<span class="delivery" data-outcome="delivered"> · delivered</span>' in dom, \
        dom[-3000:]
    assert '<span class="delivery" data-outcome="silenced"> · silenced</span>' in dom
