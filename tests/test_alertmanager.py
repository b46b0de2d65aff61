"""Delivery into a real Alertmanager (Debian's ``prometheus-alertmanager``), which
notifies a webhook receiver of the test: driftline -> Alertmanager -> on-call.

Skipped where the binary is not installed (``apt-get install prometheus-alertmanager``);
CI's fresh machine does not have it, and the API v2 stand-in of
tests/test_delivery_agent.py covers the shape there."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request

import pytest
from kafka_io import agent_sender, as_messages, create_topics
from real_events import HOSTILE_FEATURE, monitor_output
from receivers import Receiver
from test_alert_consumers import CORNERS, delivered, expected_labels, expected_open
from test_delivery import alert, long_episode
from test_delivery_agent import ReceiverThread, deliveries, messages, wait_for

from driftline.agents.delivery.agent import DeliveryAgent
from driftline.agents.delivery.silences import SilenceStore
from driftline.kafka import partition_for
from driftline.models.wire import ALERT, encode
from driftline.ports import free_port

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(BINARY is None, reason="no Alertmanager binary: "
                                 "apt-get install -y prometheus-alertmanager to run this")]

# Written, never parsed by driftline: Alertmanager's own configuration file.
CONFIG = """
route:
  receiver: oncall
  group_by: [alert_id]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: oncall
    webhook_configs:
      - url: {url}
        send_resolved: true
"""


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def run_delivery(settings, batch) -> None:
    """The delivery agent over ``batch`` on the real broker, until every lane is done."""
    async def deliver():
        async with agent_sender(settings) as send:
            store = SilenceStore.from_settings(settings)
            try:
                agent = DeliveryAgent(settings, send, store)
                await agent.process(batch)
                await agent.drain()
                await agent.close()
            finally:
                store.close()

    asyncio.run(deliver())


@pytest.fixture
def alertmanager(tmp_path):
    """(Alertmanager's URL, the webhook Receiver it notifies)."""
    with ReceiverThread(Receiver()) as oncall:
        (tmp_path / "am.yml").write_text(CONFIG.format(url=oncall.url + "/oncall"))
        port = free_port()
        log = open(tmp_path / "am.log", "wb")
        proc = subprocess.Popen([BINARY, f"--config.file={tmp_path / 'am.yml'}",
                                 f"--storage.path={tmp_path / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}",
                                 "--cluster.listen-address="],
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        url = f"http://127.0.0.1:{port}"
        try:
            def ready():
                try:
                    return urllib.request.urlopen(f"{url}/-/ready", timeout=1).status == 200
                except OSError:
                    return False
            assert wait_for(ready, 30), (tmp_path / "am.log").read_text()
            yield url, oncall
        finally:
            proc.terminate()
            proc.wait(10)


def test_alertmanager_receives_groups_notifies_and_resolves(settings, alertmanager):
    url, oncall = alertmanager
    create_topics(settings)
    settings = settings.replace(alertmanager_url=url, dashboard_url="http://dash.example/")
    now = time.time()
    firing = alert("data_drift", feature="rooms", ts=now - 5)
    resolved = alert("data_drift", feature="rooms", status="resolved", ts=now)

    def deliver(record, offset):
        run_delivery(settings, messages(settings, [("alerts", record)], offset))

    deliver(firing, 0)
    [held] = get_json(f"{url}/api/v2/alerts")
    assert held["labels"] == {"alertname": "data_drift", "model": "m", "version": "1",
                              "severity": "critical", "feature": "rooms",
                              "alert_id": "m.v1.data_drift.rooms.1"}
    assert held["annotations"]["summary"] == "Rolling MSE doubled."
    assert held["generatorURL"] == "http://dash.example/?model=m"
    assert held["status"]["state"] == "active"
    assert wait_for(lambda: any(r.json()["status"] == "firing" for r in oncall.received), 30)

    # The episode id makes the resolve the same alert to Alertmanager: it ends it.
    deliver(resolved, 1)
    assert wait_for(lambda: get_json(f"{url}/api/v2/alerts") == [], 30)
    assert wait_for(lambda: any(r.json()["status"] == "resolved" for r in oncall.received), 30)
    [note] = [r.json() for r in oncall.received if r.json()["status"] == "resolved"]
    assert note["alerts"][0]["labels"]["alert_id"] == "m.v1.data_drift.rooms.1"
    assert {d["outcome"] for d in deliveries(settings)} == {"delivered"}


def test_alertmanager_accepts_every_real_and_corner_alert(settings, alertmanager):
    """Issue 29: the real monitor's alerts (attribution, segments, a feature named with
    control characters, a 256-character id) and the corner alerts of every kind with every
    optional field (hostile Unicode, times at the wire's bounds) are all taken by a real
    Alertmanager, each under the labels of tests/test_alert_consumers.py."""
    url, _ = alertmanager
    create_topics(settings)
    settings = settings.replace(alertmanager_url=url, dashboard_url="http://dash.example/")
    raws = monitor_output().alerts + [encode(c) for c in CORNERS]
    batch = []
    for i, raw in enumerate(raws):
        key = ALERT.decode_one(raw).model.encode()
        batch += as_messages([raw], topic=settings.topic("alerts"), key=key,
                             partition=partition_for(key, settings.partitions), first_offset=i)

    run_delivery(settings, batch)
    records = deliveries(settings)
    refused = [r for r in records if r["outcome"] != "delivered"]
    assert refused == [] and len(records) == len(raws)
    held = {a["labels"]["alert_id"]: a["labels"] for a in get_json(f"{url}/api/v2/alerts")}
    real = monitor_output().structs()
    open_now = [delivered(real[i]) for i in expected_open(real).values()]
    assert len(open_now) >= 10  # every episode that did not resolve, under its labels
    for a in open_now:
        assert held[expected_labels(a)["alert_id"]] == expected_labels(a)
    assert any(labels.get("feature") == HOSTILE_FEATURE for labels in held.values())
def test_a_resolve_of_an_alert_with_a_300_char_feature_ends_it_in_alertmanager(settings,
                                                                               alertmanager):
    """Issue 30: the monitor's alert book (alerting.py) hashes ids over 256 chars; the
    firing and its resolve must still be one alert to Alertmanager (same labels)."""
    url, _ = alertmanager
    create_topics(settings)
    settings = settings.replace(alertmanager_url=url)
    firing, resolved = long_episode()
    now = time.time()
    firing["ts"], resolved["ts"] = now - 5, now

    def deliver(record, offset):
        run_delivery(settings, messages(settings, [("alerts", record)], offset))

    deliver(firing, 0)
    [held] = get_json(f"{url}/api/v2/alerts")
    assert held["labels"]["feature"] == "f" * 300 and held["labels"]["severity"] == "critical"
    assert held["labels"]["alert_id"] == firing["alert_id"].removesuffix(".firing")
    deliver(resolved, 1)
    assert wait_for(lambda: get_json(f"{url}/api/v2/alerts") == [], 30), \
        get_json(f"{url}/api/v2/alerts")
    assert {d["outcome"] for d in deliveries(settings)} == {"delivered"}
