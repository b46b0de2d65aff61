"""The retrain trigger's policy, pure: which alerts become requests, once, and when."""

from __future__ import annotations

import pytest

from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.retrain.policy import RetrainTrigger
from driftline.errors import ConfigError
from driftline.models.wire import ALERT
from driftline.models.wire.events import as_dict


def alert(kind="concept_drift", ts=1000.0, n=5000, version=1, episode=1, status="firing",
          model="m"):
    """An alert as the trigger reads it: shaped as the monitor's (attribution on a
    concept_drift or metric_threshold firing, reason on a resolve), through the wire layer."""
    record = {"alert_id": f"{model}.v{version}.{kind}.{episode}.{status}", "model": model,
              "version": version, "kind": kind, "status": status, "severity": "warning",
              "detector": "adwin", "feature": None, "ts": ts,
              "metrics": {"n_scored": n, "rolling_mse": 3.0, "baseline_mse": 1.0},
              "message": "The error went up."}
    if kind in ("concept_drift", "metric_threshold") and status == "firing":
        record["attribution"] = [{"feature": "x0", "share": 0.9}]
    if status == "resolved":
        record["reason"] = "cleared"
    return as_dict(ALERT.validate(record))


def progress(n, version=1, model="m"):
    return {"model": model, "version": version, "n_scored": n}


def config(**retrain):
    return MonitorConfig.from_dict({"defaults": {"retrain": retrain}})


def test_waits_for_min_pairs_after_the_alert_then_requests_once():
    trig = RetrainTrigger(config(min_pairs=500), clock=lambda: 42.0)
    assert trig.on_alert(alert(n=5000)) == []
    assert trig.on_metrics(progress(5499)) == []
    [request] = trig.on_metrics(progress(5600))
    assert request == {"request_id": "m.v1.concept_drift.1.retrain", "model": "m",
                       "base_version": 1, "alert_id": "m.v1.concept_drift.1.firing",
                       "reason": request["reason"], "ts": 42.0, "since": 1000.0}
    assert "600 pairs scored since" in request["reason"]
    assert trig.on_metrics(progress(9000)) == []
    assert trig.on_alert(alert(n=5000)) == []  # re-delivered: no second request
    assert trig.on_metrics(progress(9500)) == []


def test_a_second_alert_of_the_same_drift_is_within_the_cooldown():
    trig = RetrainTrigger(config(min_pairs=0, cooldown=600.0))
    assert len(trig.on_alert(alert("concept_drift", ts=1000.0))) == 1
    assert trig.on_alert(alert("metric_threshold", ts=1300.0)) == []
    assert "cooldown" in trig.decisions[-1][1]
    assert len(trig.on_alert(alert("metric_threshold", ts=1700.0, episode=2))) == 1


def test_at_most_max_per_hour():
    trig = RetrainTrigger(config(min_pairs=0, cooldown=0.0, max_per_hour=2))
    made = [trig.on_alert(alert(ts=t, episode=i)) for i, t in enumerate((0.0, 100.0, 200.0,
                                                                          3700.0))]
    assert [len(m) for m in made] == [1, 1, 0, 1]


def test_kinds_and_enabled_filter():
    trig = RetrainTrigger(config(min_pairs=0))
    assert trig.on_alert(alert("data_drift")) == []
    assert trig.on_alert(alert("label_starvation")) == []
    assert len(trig.on_alert(alert("metric_threshold"))) == 1
    off = RetrainTrigger(config(min_pairs=0, enabled=False))
    assert off.on_alert(alert()) == []
    data = RetrainTrigger(config(min_pairs=0, kinds=["data_drift"]))
    assert len(data.on_alert(alert("data_drift"))) == 1


def test_resolved_before_enough_pairs_or_superseded_drops_the_request():
    trig = RetrainTrigger(config(min_pairs=500))
    trig.on_alert(alert(n=100))
    trig.on_alert(alert(n=300, status="resolved"))
    assert trig.on_metrics(progress(10_000)) == [] and not trig.pending

    trig = RetrainTrigger(config(min_pairs=500, cooldown=0.0))
    trig.on_alert(alert(n=100))
    assert trig.on_metrics(progress(50, version=2)) == []  # v2 already serves
    assert trig.on_metrics(progress(10_000)) == [] and not trig.pending
    assert "v2 already serves" in trig.decisions[-1][1]


def test_models_are_independent():
    trig = RetrainTrigger(config(min_pairs=10))
    trig.on_alert(alert(model="a", n=0))
    trig.on_alert(alert(model="b", n=0))
    assert trig.on_metrics(progress(5, model="a")) == []
    assert [r["model"] for r in trig.on_metrics(progress(20, model="b"))] == ["b"]
    assert [r["model"] for r in trig.on_metrics(progress(20, model="a"))] == ["a"]


def test_a_replay_of_the_same_alerts_decides_the_same():
    alerts = [alert("concept_drift", ts=0.0), alert("metric_threshold", ts=10.0),
              alert("concept_drift", ts=4000.0, episode=2),
              alert("concept_drift", ts=4100.0, episode=2, status="resolved"),
              alert("metric_threshold", ts=8000.0, episode=2)]

    def run():
        trig = RetrainTrigger(config(min_pairs=0, cooldown=60.0), clock=lambda: 1.0)
        return [r for a in alerts for r in trig.on_alert(a)], trig.decisions

    assert run() == run()
    assert [r["request_id"] for r in run()[0]] == [
        "m.v1.concept_drift.1.retrain", "m.v1.concept_drift.2.retrain",
        "m.v1.metric_threshold.2.retrain"]


def test_the_retrain_table_is_checked():
    cfg = MonitorConfig.from_dict({"models": {"m": {"retrain": {"kinds": ["data_drift"],
                                                                "min_pairs": 50}}}})
    assert cfg.for_model("m").retrain.kinds == ("data_drift",)
    assert cfg.for_model("m").retrain.min_pairs == 50
    assert cfg.for_model("other").retrain.min_pairs == 500
    with pytest.raises(ConfigError, match="retrain.kinds: drift not an alert kind"):
        MonitorConfig.from_dict({"defaults": {"retrain": {"kinds": ["drift"]}}})
    with pytest.raises(ConfigError, match="enabled: expected bool"):
        MonitorConfig.from_dict({"defaults": {"retrain": {"enabled": 1}}})
    with pytest.raises(ConfigError, match="unknown key"):
        MonitorConfig.from_dict({"defaults": {"retrain": {"cooldwn": 1}}})


def test_any_alert_the_wire_allows_makes_a_valid_request():
    """Issue 29: a firing alert id of 256 characters gave a request id of 257, which the
    agent's validation refused with an exception (the trigger stopped on it, and on it
    again after every restart); an ``n_scored`` that is not a number (metrics may hold
    nested objects) raised TypeError. The long id becomes a cut id with a digest: unique,
    and the same when the alerts are replayed."""
    from driftline.models.wire import RETRAIN_REQUEST

    trig = RetrainTrigger(config(min_pairs=0, cooldown=0.0, max_per_hour=10))
    long_ids = ["m." + "x" * 247 + ".firing", "m." + "x" * 246 + "y.firing"]
    made = [r for rid in long_ids for r in trig.on_alert({**alert(), "alert_id": rid})]
    assert [len(r["request_id"]) for r in made] == [256, 256]
    assert len({r["request_id"] for r in made}) == 2
    assert [RETRAIN_REQUEST.validate(r).alert_id for r in made] == long_ids
    again = RetrainTrigger(config(min_pairs=0, cooldown=0.0, max_per_hour=10))
    assert [again.on_alert({**alert(), "alert_id": rid})[0]["request_id"]
            for rid in long_ids] == [r["request_id"] for r in made]
    odd = RetrainTrigger(config(min_pairs=10))
    assert odd.on_alert({**alert(), "metrics": {"n_scored": {"a": 1}}}) == []
    assert odd.on_alert({**alert(episode=2, ts=9000.0), "metrics": {"n_scored": None}}) == []
    assert [r["request_id"] for r in odd.on_metrics(progress(10))] == [
        "m.v1.concept_drift.1.retrain", "m.v1.concept_drift.2.retrain"]
