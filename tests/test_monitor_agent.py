"""The monitor agent's publishing, without a broker: what leaves for the alerts topic."""

from __future__ import annotations

import orjson

from driftline.agents.monitor.agent import MonitorAgent, PartitionMonitor
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.outbox import Outbox
from driftline.models.wire import ALERT
from driftline.settings import Settings


def alert(**change):
    return {"alert_id": "m.v1.concept_drift.1.firing", "model": "m", "version": 1,
            "kind": "concept_drift", "status": "firing", "severity": "critical",
            "detector": "adwin", "feature": None, "ts": 1.7e9,
            "metrics": {"rolling_mse": 2.0, "baseline_mse": 1.0, "n_scored": 10},
            "message": "drift", **change}


def test_alerts_are_validated_once_and_a_bad_one_is_dead_lettered_not_raised():
    settings = Settings(topic_prefix="t.")
    config = MonitorConfig.load(None)
    agent = MonitorAgent(settings, None, config)
    part = PartitionMonitor(config)
    out = Outbox()
    agent._publish(out, 3, part, [alert(), alert(),  # the same id twice: published once
                                  alert(alert_id="bad", kind="vibes")])
    [good, dead] = out.records
    assert (good.topic, good.partition, good.key) == ("t.alerts", 3, b"m")
    assert ALERT.decode(good.value)[0][0].alert_id == "m.v1.concept_drift.1.firing"
    # What the monitor wrote, as it wrote it: counts stay integers through validation.
    written = orjson.loads(good.value)
    assert written == {**alert(), "segment": None}
    assert type(written["metrics"]["n_scored"]) is int
    assert dead.topic == "t.deadletter"
    record = orjson.loads(dead.value)
    assert record["topic"] == "t.alerts" and record["error"].startswith(
        "internal_error: alert does not match the schema: kind: must be one of")
    assert orjson.loads(record["raw"])["alert_id"] == "bad"
