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
from kafka_io import agent_sender, create_topics
from receivers import Receiver
from test_delivery import alert, long_episode
from test_delivery_agent import ReceiverThread, deliveries, messages, wait_for

from driftline.agents.delivery.agent import DeliveryAgent
from driftline.agents.delivery.silences import SilenceStore
from driftline.stack import free_port

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

    async def deliver(record, offset):
        async with agent_sender(settings) as send:
            store = SilenceStore.from_settings(settings)
            try:
                agent = DeliveryAgent(settings, send, store)
                await agent.process(messages(settings, [("alerts", record)], offset))
                await agent.drain()
                await agent.close()
            finally:
                store.close()

    asyncio.run(deliver(firing, 0))
    [held] = get_json(f"{url}/api/v2/alerts")
    assert held["labels"] == {"alertname": "data_drift", "model": "m", "version": "1",
                              "severity": "critical", "feature": "rooms",
                              "alert_id": "m.v1.data_drift.rooms.1"}
    assert held["annotations"]["summary"] == "Rolling MSE doubled."
    assert held["generatorURL"] == "http://dash.example/?model=m"
    assert held["status"]["state"] == "active"
    assert wait_for(lambda: any(r.json()["status"] == "firing" for r in oncall.received), 30)

    # The episode id makes the resolve the same alert to Alertmanager: it ends it.
    asyncio.run(deliver(resolved, 1))
    assert wait_for(lambda: get_json(f"{url}/api/v2/alerts") == [], 30)
    assert wait_for(lambda: any(r.json()["status"] == "resolved" for r in oncall.received), 30)
    [note] = [r.json() for r in oncall.received if r.json()["status"] == "resolved"]
    assert note["alerts"][0]["labels"]["alert_id"] == "m.v1.data_drift.rooms.1"
    assert {d["outcome"] for d in deliveries(settings)} == {"delivered"}


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

    async def deliver(record, offset):
        async with agent_sender(settings) as send:
            store = SilenceStore.from_settings(settings)
            try:
                agent = DeliveryAgent(settings, send, store)
                await agent.process(messages(settings, [("alerts", record)], offset))
                await agent.drain()
                await agent.close()
            finally:
                store.close()

    asyncio.run(deliver(firing, 0))
    [held] = get_json(f"{url}/api/v2/alerts")
    assert held["labels"]["feature"] == "f" * 300 and held["labels"]["severity"] == "critical"
    assert held["labels"]["alert_id"] == firing["alert_id"].removesuffix(".firing")
    asyncio.run(deliver(resolved, 1))
    assert wait_for(lambda: get_json(f"{url}/api/v2/alerts") == [], 30), \
        get_json(f"{url}/api/v2/alerts")
    assert {d["outcome"] for d in deliveries(settings)} == {"delivered"}
