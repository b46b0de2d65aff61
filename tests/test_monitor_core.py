"""The pure monitor: metrics equal River's, drift found, stationary streams stay quiet."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from river import metrics as river_metrics
from river import utils as river_utils
from simulate import FEATURES, stream

from driftline.agents.monitor.classes import binary_report
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.agents.monitor.metrics import RollingErrors
from driftline.models.wire import ALERT
from driftline.models.wire.events import as_dict


def run(monitor: Monitor, predictions, pairs, batch: int = 500):
    """Feed predictions then their pairs batch by batch, the way the agent sees them.
    Every alert must be a valid DESIGN.md alert event."""
    alerts = []
    for i in range(0, max(len(predictions), len(pairs)), batch):
        alerts += [(i, a) for a in monitor.process_predictions(predictions[i:i + batch])]
        alerts += [(i, a) for a in monitor.process_pairs(pairs[i:i + batch])]
    for _, alert in alerts:
        assert msgspec.to_builtins(ALERT.validate(alert)) == alert
    return alerts


def test_rolling_mse_equals_rivers_rolling_mse():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=5000), rng.normal(size=5000)
    river = river_utils.Rolling(river_metrics.MSE(), window_size=1000)
    expected = []
    for yi, pi in zip(y.tolist(), p.tolist()):
        river.update(yi, pi)
        expected.append(river.get())
    ours = RollingErrors(1000)
    got = np.concatenate([ours.extend(p[i:i + 333], y[i:i + 333]) for i in range(0, 5000, 333)])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    report = ours.report()
    for name, metric in (("rolling_mae", river_metrics.MAE()), ("rolling_r2", river_metrics.R2()),
                         ("rolling_rmse", river_metrics.RMSE())):
        rolling = river_utils.Rolling(metric, window_size=1000)
        for yi, pi in zip(y.tolist(), p.tolist()):
            rolling.update(yi, pi)
        assert report[name] == pytest.approx(rolling.get(), abs=1e-9), name


@pytest.mark.parametrize("threshold", [0.5, 0.3], ids=lambda t: f"threshold={t}")
def test_binary_metrics_of_the_rolling_window_match_river(threshold):
    """What a binary version reports (classes.binary_report of its rolling window, cut at
    its decision_threshold) equals River's metrics of the same last 1,000 pairs."""
    rng = np.random.default_rng(1)
    y = (rng.random(3000) < 0.3).astype(float)
    proba = np.clip(0.3 + 0.4 * (y - 0.3) + rng.normal(scale=0.2, size=3000), 0, 1)
    ours = RollingErrors(1000)
    ours.extend(proba, y)
    got = binary_report(ours.predictions, ours.labels, threshold)
    last_y, last_p = y[-1000:].astype(bool).tolist(), proba[-1000:].tolist()
    for name, metric in (("rolling_accuracy", river_metrics.Accuracy()),
                         ("rolling_precision", river_metrics.Precision()),
                         ("rolling_recall", river_metrics.Recall()),
                         ("rolling_f1", river_metrics.F1())):
        for yi, pi in zip(last_y, last_p):
            metric.update(yi, pi >= threshold)
        assert got[name] == pytest.approx(metric.get(), abs=1e-12), name
    log_loss = river_metrics.LogLoss()
    for yi, pi in zip(last_y, last_p):
        log_loss.update(yi, pi)
    assert got["rolling_log_loss"] == pytest.approx(log_loss.get(), abs=1e-6)


def test_classification_model_gets_classification_metrics_and_refuses_bad_pairs():
    config = MonitorConfig.from_dict({"models": {"churn": {"task": "classification"}}})
    mon = Monitor(config)
    pairs = [{"prediction_id": str(i), "model": "churn", "version": 1,
              "prediction": 0.9 if i % 2 else 0.2, "label": float(i % 2), "error": 0.0,
              "features": {}, "ts": 0.0, "label_ts": float(i)} for i in range(100)]
    pairs.append({**pairs[0], "label": 3.0})  # not a 0/1 label
    mon.process_pairs(pairs)
    report = mon.versions[("churn", 1)].report()
    assert report["rolling_accuracy"] == 1.0 and report["rolling_f1"] == 1.0
    assert report["n_scored"] == 100 and report["refused_pairs"] == {"label_not_0_or_1": 1}
    assert report["task"] == "binary"  # "classification" is binary's old name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stationary_stream_of_100k_pairs_raises_no_alert(seed):
    predictions, pairs = stream(100_000, seed=seed)
    alerts = run(Monitor(MonitorConfig()), predictions, pairs)
    assert alerts == []


def test_abrupt_drift_raises_one_concept_drift_alert_quickly():
    predictions, pairs = stream(30_000, seed=5, drift_at=15_000)
    mon = Monitor(MonitorConfig())
    alerts = run(mon, predictions, pairs)
    concept = [a for _, a in alerts if a["kind"] == "concept_drift"]
    assert [a["status"] for a in concept] == ["firing"]
    delay = concept[0]["metrics"]["n_scored"] - 15_000
    print(f"abrupt drift detected after {delay} pairs")
    assert 0 < delay < 200
    assert msgspec.to_builtins(ALERT.validate(concept[0])) == concept[0]
    assert concept[0]["attribution"][0]["feature"] == "x0"  # the truth changed along x0
    kinds = sorted(a["kind"] for _, a in alerts)
    assert kinds == ["concept_drift", "metric_threshold"]  # once each, no repeats


def test_gradual_drift_is_detected():
    predictions, pairs = stream(30_000, seed=6, drift_at=10_000, kind="gradual")
    alerts = run(Monitor(MonitorConfig()), predictions, pairs)
    firing = {a["kind"]: a["metrics"]["n_scored"] for _, a in alerts if a["status"] == "firing"}
    print(f"gradual drift (ramp over 5,000 pairs from 10,000): {firing}")
    assert 10_000 < firing["concept_drift"] < 15_000
    assert 10_000 < firing["metric_threshold"] < 16_000


def test_feature_shift_names_that_feature_only():
    predictions, pairs = stream(20_000, seed=7, drift_at=10_000, kind="feature-shift",
                                shift_feature="x3")
    alerts = run(Monitor(MonitorConfig()), predictions, [])  # no labels needed
    # The shift also moves values past the reference's range: a data-quality finding on
    # the same feature, and on no other.
    quality = [(a["feature"], a["detector"]) for _, a in alerts if a["kind"] == "data_quality"]
    assert quality == [("x3", "out_of_range")]
    alerts = [(i, a) for i, a in alerts if a["kind"] != "data_quality"]
    assert [(a["kind"], a["feature"], a["status"]) for _, a in alerts] == [
        ("data_drift", "x3", "firing")]
    first_batch = alerts[0][0]
    assert 10_000 <= first_batch < 11_000
    assert "'x3'" in alerts[0][1]["message"]


def test_prediction_drift_without_labels():
    predictions, _ = stream(20_000, seed=8)
    for p in predictions[10_000:]:
        p["prediction"] += 3.0
    alerts = run(Monitor(MonitorConfig()), predictions, [])
    assert [(a["kind"], a["feature"]) for _, a in alerts] == [("prediction_drift", None)]


def test_threshold_episode_fires_once_then_resolves_once_with_cooldown():
    config = MonitorConfig.from_dict({"defaults": {"cooldown": 1000.0,
                                                   "threshold": {"consecutive": 100}}})
    _, calm = stream(5_000, seed=9)
    _, bad = stream(5_000, seed=10, drift_at=0)
    _, calm2 = stream(5_000, seed=11)
    _, bad2 = stream(3_000, seed=12, drift_at=0)
    pairs = calm + bad + calm2 + bad2
    for i, p in enumerate(pairs):  # one continuous event time
        p["label_ts"] = 1_700_000_000.0 + i * 0.1
    alerts = run(Monitor(config), [], pairs)
    threshold = [(a["status"], a["alert_id"]) for _, a in alerts if a["kind"] == "metric_threshold"]
    assert threshold == [("firing", "m.v1.metric_threshold.1.firing"),
                         ("resolved", "m.v1.metric_threshold.1.resolved")]
    # bad2 starts a few hundred seconds of event time after the resolve, inside the
    # 1000 s cooldown: without the cooldown it would open a second episode.
    resolved = [a for _, a in alerts if a["status"] == "resolved"
                and a["kind"] == "metric_threshold"][0]
    assert resolved["metrics"]["rolling_mse"] <= 1.5 * resolved["metrics"]["baseline_mse"]
    assert "back to" in resolved["message"]


def test_label_starvation():
    _, pairs = stream(300, seed=13)
    expired = [{**p, "expired_ts": p["ts"] + 86400} for p in stream(400, seed=14)[0]]
    mon = Monitor(MonitorConfig())
    alerts = mon.process_pairs(pairs) + mon.process_expired(expired)
    assert all(as_dict(ALERT.validate(a)) == {"segment": None, **a} for a in alerts)
    assert [(a["kind"], a["status"]) for a in alerts] == [("label_starvation", "firing")]
    assert "expired without a label" in alerts[0]["message"]
    assert alerts[0]["metrics"]["expired_share"] > 0.5


def test_batch_boundaries_do_not_change_results():
    predictions, pairs = stream(20_000, seed=15, drift_at=12_000)
    results = []
    for batch in (1_000, 137, 4_999):
        mon = Monitor(MonitorConfig())
        alerts = run(mon, predictions, pairs, batch=batch)
        results.append(([a["alert_id"] for _, a in alerts], mon.versions[("m", 1)].report()))
    (ids0, rep0), *others = results
    for ids, rep in others:
        assert sorted(ids) == sorted(ids0)
        assert rep["rolling_mse"] == pytest.approx(rep0["rolling_mse"], abs=1e-9)
        assert rep["psi"] == pytest.approx(rep0["psi"], abs=1e-12)


def test_versions_are_monitored_separately():
    _, v1 = stream(3_000, seed=16, version=1)
    _, v2 = stream(3_000, seed=17, version=2, drift_at=0)
    mon = Monitor(MonitorConfig())
    mon.process_pairs([p for pair in zip(v1, v2) for p in pair])  # interleaved
    r1, r2 = mon.versions[("m", 1)].report(), mon.versions[("m", 2)].report()
    assert r1["n_scored"] == r2["n_scored"] == 3_000
    assert r1["rolling_mse"] < 1.5 < r2["rolling_mse"]
    assert math.isclose(r1["baseline_mse"], np.mean([p["error"] ** 2 for p in v1[:1000]]))


def test_features_missing_from_some_events_are_ignored_not_fatal():
    predictions, _ = stream(3_000, seed=18)
    for p in predictions[1::7]:  # the first event names the columns
        del p["features"]["x5"]
    mon = Monitor(MonitorConfig())
    run(mon, predictions, [])
    assert set(mon.versions[("m", 1)].report()["psi"]) == set(FEATURES) | {"prediction"}


def test_adwin_mean_before_a_cut_is_tracked_exactly():
    """ErrorDrift derives ADWIN's pre-cut mean from running sums; check it against River,
    with a fall's cut keeping River's window (its flag cleared, so it does not start
    afresh)."""
    from river import drift

    from driftline.agents.monitor.config import ConceptDriftConfig
    from driftline.agents.monitor.drift import ErrorDrift

    rng = np.random.default_rng(3)
    errors = np.concatenate([rng.normal(1, 0.3, 4000), rng.normal(3, 0.3, 4000),
                             rng.normal(0.5, 0.3, 4000), rng.normal(4, 0.3, 4000)]) ** 2
    river = drift.ADWIN(delta=2e-5)
    expected = []
    for i, e in enumerate(errors.tolist()):
        before = river.estimation
        river.update(e)
        if river.drift_detected and river.estimation > before:
            expected.append((i, before, river.estimation))
        elif river.drift_detected:
            river._drift_detected = False
    ours = ErrorDrift(ConceptDriftConfig(detector="adwin"))
    got = []
    for start in range(0, len(errors), 777):
        for i, before, after in ours.update_many(errors[start:start + 777]):
            got.append((start + i, before, after))
    assert [g[0] for g in got] == [e[0] for e in expected] and len(got) >= 2
    for g, e in zip(got, expected):
        assert g[1] == pytest.approx(e[1], rel=1e-9) and g[2] == pytest.approx(e[2], rel=1e-9)


def test_version_baseline_from_a_lookup_wins_over_config_and_first_pairs():
    config = MonitorConfig.from_dict({"models": {"m": {"baseline_mse": 9.0}}})
    known = {("m", 2): 0.25}
    mon = Monitor(config, baselines=lambda model, version: known.get((model, version)))
    _, v1 = stream(10, seed=19, version=1)
    _, v2 = stream(10, seed=20, version=2)
    mon.process_pairs(v1 + v2)
    assert mon.versions[("m", 2)].baseline_mse == 0.25   # registry metadata
    assert mon.versions[("m", 1)].baseline_mse == 9.0    # config file
    assert Monitor(MonitorConfig()).version("m", 1).baseline_mse is None  # first pairs later


def test_a_small_rise_caught_by_adwin_resolves_once_the_error_is_back():
    """ADWIN may fire while the rolling MSE is still under the threshold; the episode
    must still resolve after `consecutive` good pairs counted from the detection."""
    rng = np.random.default_rng(4)
    sq_err = np.concatenate([rng.normal(size=20_000), 1.6 * rng.normal(size=5_000),
                             rng.normal(size=20_000)])
    pairs = [{"prediction_id": str(i), "model": "m", "version": 1, "prediction": float(e),
              "label": 0.0, "error": float(e), "features": {}, "ts": 0.0,
              "label_ts": float(i)} for i, e in enumerate(sq_err)]
    config = MonitorConfig.from_dict({"defaults": {"threshold": {"factor": 3.0}}})
    alerts = run(Monitor(config), [], pairs)
    concept = [(a["status"], a["metrics"]["n_scored"]) for _, a in alerts
               if a["kind"] == "concept_drift"]
    assert [s for s, _ in concept] == ["firing", "resolved"], concept
    assert 20_000 < concept[0][1] < 25_000 < concept[1][1]
    assert not [a for _, a in alerts if a["kind"] == "metric_threshold"]


def test_overflowing_squared_error_is_rejected_not_nan():
    mon = Monitor(MonitorConfig())
    _, pairs = stream(100, seed=23)
    pairs[50] = {**pairs[50], "prediction": 1e200}
    mon.process_pairs(pairs)
    vm = mon.versions[("m", 1)]
    assert vm.refusals.counts == {"error_not_finite": 1} and vm.rolling.count == 99
    assert math.isfinite(vm.report()["rolling_mse"])


def test_segments_watch_the_versions_features_even_when_their_first_event_lacks_one():
    """A segment's monitor reads the version's columns (its first event's features), so a
    segment whose own first event lacks a feature still watches it for data drift."""
    cfg = MonitorConfig.from_dict({"defaults": {"segments": True}})
    mon = Monitor(cfg)
    events = [{"prediction_id": str(i), "model": "m", "version": 1, "prediction": 0.0,
               "ts": float(i), "segment": "fr" if i % 2 else "de",
               "features": {"a": float(i % 7), "b": float(i % 5)} if i != 1 else {"a": 1.0}}
              for i in range(4_000)]
    mon.process_predictions(events)
    fr = mon.versions[("m", 1)].segments["fr"]
    assert fr.columns is not None and fr.columns.names == ["a", "b"]
    assert set(fr.report()["psi"]) == {"a", "b"}  # both checked in the segment


def test_label_delays_are_kept_per_model_from_the_pairs_columns():
    """The monitor reads each pair's label delay off the batch it builds anyway: per model,
    over its versions, rejected pairs included (their label came), unknown times left out."""
    mon = Monitor(MonitorConfig())
    pairs = [{"prediction_id": str(i), "model": "m", "version": 1 + i % 2, "prediction": 1.0,
              "label": 0.0 if i != 3 else float("inf"), "features": {}, "ts": 100.0,
              "label_ts": 100.0 + (0.5 if i < 4 else 10.0)} for i in range(6)]
    pairs.append({**pairs[0], "prediction_id": "x", "label_ts": None})
    mon.process_pairs(pairs)
    mon.process_pairs([{**pairs[0], "model": "n", "label_ts": 100.0 + 4e5}])
    m, n = mon.label_delays["m"], mon.label_delays["n"]
    assert dict(m.buckets())["1.0"] == 4 and dict(m.buckets())["15.0"] == 6
    assert dict(m.buckets())["+Inf"] == 6 and m.total == 4 * 0.5 + 2 * 10.0
    assert m.newest_label_ts == 110.0 and sum(mon.versions[("m", 2)].refusals.counts.values()) == 1
    assert dict(n.buckets())["+Inf"] == 1 and dict(n.buckets())["86400.0"] == 0
