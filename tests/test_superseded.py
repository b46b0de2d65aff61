"""Superseded versions: once a newer version serves, an idle old version's alerts resolve."""

from __future__ import annotations

import msgspec
from simulate import stream

from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.models.wire import ALERT

T0 = 1_700_000_000.0


def run(monitor: Monitor, predictions, pairs, batch: int = 500):
    alerts = []
    for i in range(0, max(len(predictions), len(pairs)), batch):
        alerts += monitor.process_predictions(predictions[i:i + batch])
        alerts += monitor.process_pairs(pairs[i:i + batch])
    for alert in alerts:
        assert msgspec.to_builtins(ALERT.validate(alert)) == alert
    return alerts


def drifted_v1(mon: Monitor):
    """v1 drifts at pair 5,000 of 10,000 (100 s of event time): two alerts stay open."""
    predictions, pairs = stream(10_000, seed=3, drift_at=5_000, start_ts=T0)
    alerts = run(mon, predictions, pairs)
    assert sorted((a["kind"], a["status"]) for a in alerts) == [
        ("concept_drift", "firing"), ("metric_threshold", "firing")]
    return predictions[-1]["ts"]


def v2(n: int, start_ts: float, seed: int = 4):
    return stream(n, seed=seed, version=2, start_ts=start_ts)


def test_v1_alerts_resolve_as_superseded_once_v2_serves_and_v1_is_idle_for_600s():
    mon = Monitor(MonitorConfig())
    last_v1 = drifted_v1(mon)
    # v2 serves from 1 s after v1's last prediction, one prediction every 0.01 s: 600 s of
    # event time is 60,000 predictions.
    predictions, pairs = v2(70_000, last_v1 + 1.0)
    before = run(mon, predictions[:59_000], pairs[:59_000])
    assert before == []  # v1 idle for less than 600 s: nothing closes yet
    after = run(mon, predictions[59_000:], pairs[59_000:])
    assert sorted((a["alert_id"], a["status"], a["reason"]) for a in after) == [
        ("m.v1.concept_drift.1.resolved", "resolved", "superseded"),
        ("m.v1.metric_threshold.1.resolved", "resolved", "superseded")]
    closing = after[0]
    assert closing["ts"] >= last_v1 + 600  # event time, the v2 prediction that closed it
    assert closing["detector"] in ("glr", "threshold")
    assert "superseded" in closing["message"] and "v2" in closing["message"]
    assert not any(mon.books["m"].is_firing(k) for k in mon.books["m"].episodes)


def test_late_pairs_of_a_superseded_version_open_nothing_until_it_serves_again():
    mon = Monitor(MonitorConfig())
    drifted_v1(mon)
    predictions, pairs = stream(2_000, seed=3, drift_at=0, start_ts=T0 + 10_000)
    new_v2, _ = v2(100, T0 + 10_000)
    resolved = run(mon, new_v2, [])
    assert [a["reason"] for a in resolved] == ["superseded", "superseded"]
    # Late v1 labels, all drifted (their predictions were made long ago): no new episode.
    late = [{**p, "ts": T0 + 50.0} for p in pairs]
    assert run(mon, [], late) == []
    assert ("m", 1) in mon.books["m"].superseded
    # A rollback: v1 serves predictions again, so it may open episodes again.
    run(mon, predictions[:10], [])
    assert ("m", 1) not in mon.books["m"].superseded


def test_a_version_newer_than_the_serving_one_is_not_superseded():
    """Only versions older than the newest serving one close: after a rollback to v1, v2's
    alerts are not 'superseded' by v1."""
    mon = Monitor(MonitorConfig())
    predictions, pairs = stream(10_000, seed=3, drift_at=5_000, version=2, start_ts=T0)
    assert len(run(mon, predictions, pairs)) == 2
    back, back_pairs = stream(80_000, seed=5, version=1, start_ts=T0 + 101.0)
    assert run(mon, back, back_pairs) == []
    assert mon.books["m"].is_firing(next(iter(mon.books["m"].episodes)))


def test_superseded_after_is_a_setting_and_the_result_is_the_same_on_replay():
    cfg = MonitorConfig.from_dict({"defaults": {"superseded_after": 30.0}})
    runs = []
    for _ in range(2):
        mon = Monitor(cfg)
        last_v1 = drifted_v1(mon)
        predictions, pairs = v2(4_000, last_v1 + 1.0)
        alerts = run(mon, predictions, pairs)
        runs.append([(a["alert_id"], a["ts"]) for a in alerts])
        assert {a["reason"] for a in alerts} == {"superseded"}
        assert min(a["ts"] for a in alerts) < last_v1 + 40  # 30 s, not 600
    assert runs[0] == runs[1]


def test_normal_resolves_say_cleared():
    mon = Monitor(MonitorConfig.from_dict({"defaults": {"cooldown": 0}}))
    predictions, pairs = stream(20_000, seed=9, drift_at=5_000, start_ts=T0)
    for p in pairs[10_000:]:  # the drift ends: the labels agree with the model again
        p["label"], p["error"] = p["prediction"], 0.0
    resolved = [a for a in run(mon, predictions, pairs) if a["status"] == "resolved"]
    assert resolved and {a["reason"] for a in resolved} == {"cleared"}
