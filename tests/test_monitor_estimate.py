"""Issue #17 in the pure monitor: estimated performance before labels (DLE, CBPE),
multivariate drift, attribution and segments; the README's measured examples."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from simulate import FEATURES, stream

from driftline.agents.monitor.alerting import AlertKey, alert_id
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.models.wire import ALERT

START = 1_700_000_000.0


def events(X: np.ndarray, y_hat: np.ndarray, y: np.ndarray, *, segments=None,
           label_delay: int = 0, model: str = "m"):
    """Predictions and their pairs; a label arrives ``label_delay`` predictions later."""
    predictions, pairs = [], []
    for i in range(len(y)):
        ts = START + i * 0.01
        features = dict(zip(FEATURES[:X.shape[1]], X[i].tolist()))
        p = {"prediction_id": f"{model}-{i}", "model": model, "version": 1,
             "prediction": float(y_hat[i]), "features": features, "ts": ts}
        if segments is not None:
            p["segment"] = segments[i]
        predictions.append(p)
        pairs.append({**p, "label": float(y[i]), "error": float(y_hat[i] - y[i]),
                      "label_ts": ts + label_delay * 0.01})
    return predictions, pairs


def run(monitor: Monitor, predictions, pairs, *, batch: int = 250, label_delay: int = 0):
    """Predictions as they are made, each pair ``label_delay`` predictions later; returns
    (predictions seen when raised, alert). Every alert must be a valid alert event."""
    out = []
    n = len(predictions)
    for i in range(0, n + label_delay, batch):
        for alert in monitor.process_predictions(predictions[i:i + batch]) if i < n else []:
            out.append((i + batch, alert))
        j = i - label_delay
        if j + batch > 0:
            for alert in monitor.process_pairs(pairs[max(j, 0):j + batch]):
                out.append((i + batch, alert))
    for _, alert in out:
        assert msgspec.to_builtins(ALERT.validate(alert)) == alert
    return out


def firing(alerts, kind, segment=None):
    return [(at, a) for at, a in alerts
            if a["kind"] == kind and a["status"] == "firing" and a["segment"] == segment]


def covariate_shift(n: int, shift_at: int, seed: int):
    """y_hat = 2 x0; the truth's noise is 3x larger where x0 > 1; at ``shift_at`` traffic
    moves there (x0 + 1.5)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10))
    X[shift_at:, 0] += 1.5
    y_hat = 2 * X[:, 0]
    y = y_hat + rng.normal(size=n) * np.where(X[:, 0] > 1, 3.0, 1.0)
    return X, y_hat, y


@pytest.mark.parametrize("seed", [0, 1])
def test_late_labels_estimate_alerts_3000_predictions_before_the_threshold(seed):
    X, y_hat, y = covariate_shift(30_000, 15_000, seed)
    predictions, pairs = events(X, y_hat, y, label_delay=5_000)
    mon = Monitor(MonitorConfig())
    alerts = run(mon, predictions, pairs, label_delay=5_000)
    (est_at, estimated), = firing(alerts, "estimated_degradation")
    (thr_at, threshold), = firing(alerts, "metric_threshold")
    print(f"shift at 15,000 predictions: estimated_degradation after {est_at:,}, "
          f"metric_threshold after {thr_at:,} ({thr_at - est_at:,} earlier)")
    assert 15_000 < est_at < 16_000
    assert thr_at - est_at >= 3_000
    assert estimated["detector"] == "dle"
    assert estimated["metrics"]["estimated_mse"] > 1.5 * estimated["metrics"][
        "estimated_baseline_mse"]
    report = mon.versions[("m", 1)].report()
    # The estimate tracks the realized MSE of the shifted traffic within 25%.
    assert report["estimated_mse"] == pytest.approx(report["rolling_mse"], rel=0.25)


@pytest.mark.parametrize("seed", [0, 1])
def test_stationary_stream_raises_no_estimated_or_multivariate_alert(seed):
    predictions, pairs = stream(40_000, seed=seed)
    cfg = MonitorConfig.from_dict({"defaults": {"multivariate": {"enabled": True}}})
    mon = Monitor(cfg)
    assert run(mon, predictions, pairs, label_delay=2_000) == []
    report = mon.versions[("m", 1)].report()
    assert report["estimated_mse"] == pytest.approx(1.0, rel=0.15)
    assert abs(report["multivariate_z"]) < 4


def classifier(n: int, seed: int, shift_at: int | None = None):
    """P(y = 1) = sigmoid(3 x0), predicted exactly; a shift moves x0 towards 0, where
    the model is unsure."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    if shift_at is not None:
        X[shift_at:, 0] *= 0.1
    p = 1 / (1 + np.exp(-3 * X[:, 0]))
    y = (rng.random(n) < p).astype(float)
    return X, p, y


def test_cbpe_estimates_classification_metrics_and_alerts_on_a_shift_to_uncertainty():
    cfg = MonitorConfig.from_dict({"defaults": {"task": "classification"}})
    X, p, y = classifier(20_000, 3)
    predictions, pairs = events(X, p, y)
    mon = Monitor(cfg)
    assert run(mon, predictions, pairs) == []
    report = mon.versions[("m", 1)].report()
    assert report["estimator"] == "cbpe"
    for name in ("accuracy", "precision", "recall", "f1"):
        assert report[f"estimated_{name}"] == pytest.approx(report[f"rolling_{name}"],
                                                            abs=0.05), name
    assert report["estimated_brier"] == pytest.approx(report["rolling_mse"], abs=0.02)

    X, p, y = classifier(20_000, 4, shift_at=10_000)
    predictions, pairs = events(X, p, y, label_delay=5_000)
    alerts = run(Monitor(cfg), predictions, pairs, label_delay=5_000)
    (at, alert), = firing(alerts, "estimated_degradation")
    assert 10_000 < at < 11_000
    assert alert["detector"] == "cbpe" and "CBPE" in alert["message"]


def test_correlation_flip_fires_multivariate_drift_and_not_psi():
    rng = np.random.default_rng(9)
    n, flip = 20_000, 10_000
    X = rng.normal(size=(n, 10))
    for rho, rows in ((0.8, slice(0, flip)), (-0.8, slice(flip, n))):
        z = rng.normal(size=X[rows].shape[0])
        X[rows, 1] = rho * X[rows, 0] + np.sqrt(1 - rho ** 2) * z  # still N(0, 1)
    predictions, _ = events(X, 2 * X[:, 0], 2 * X[:, 0])
    cfg = MonitorConfig.from_dict({"defaults": {"multivariate": {"enabled": True}}})
    alerts = run(Monitor(cfg), predictions, [])
    assert [(a["kind"], a["status"]) for _, a in alerts] == [("multivariate_drift", "firing")]
    at, alert = alerts[0]
    print(f"correlation flip at {flip:,}: multivariate_drift after {at:,} predictions, "
          f"z = {alert['metrics']['multivariate_z']:.1f}")
    assert flip < at <= flip + 1_000
    assert alert["detector"] == "pca_reconstruction"


def test_a_drift_confined_to_x1_above_half_puts_x1_first_in_the_attribution():
    rng = np.random.default_rng(10)
    n, drift_at = 30_000, 15_000
    X = rng.normal(size=(n, 10))
    y_hat = 2 * X[:, 0]
    y = y_hat + rng.normal(size=n)
    hit = (np.arange(n) >= drift_at) & (X[:, 1] > 0.5)
    y[hit] += 3.0
    predictions, pairs = events(X, y_hat, y)
    alerts = run(Monitor(MonitorConfig()), predictions, pairs)
    fired = firing(alerts, "concept_drift") + firing(alerts, "metric_threshold")
    assert {a["kind"] for _, a in fired} == {"concept_drift", "metric_threshold"}
    for _, alert in fired:
        attribution = alert["attribution"]
        print(alert["kind"], "after", alert["metrics"]["n_scored"], "pairs:", attribution)
        assert attribution[0]["feature"] == "x1"
        assert sum(a["share"] for a in attribution) <= 1
        shares = [a["share"] for a in attribution]
        assert shares == sorted(shares, reverse=True)
        assert "x1" in alert["message"]


def segmented(n: int, drift_at: int, seed: int):
    """10 segments of 10% each; in s3 only, the truth changes at ``drift_at``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10))
    segments = [f"s{k}" for k in rng.integers(0, 10, n)]
    y_hat = 2 * X[:, 0]
    y = y_hat + rng.normal(size=n)
    hit = (np.arange(n) >= drift_at) & (np.array(segments) == "s3")
    y[hit] = 3 * X[hit, 0] + 1 + rng.normal(size=int(hit.sum()))
    return events(X, y_hat, y, segments=segments)


def test_a_drift_in_one_segment_of_ten_alerts_on_it_while_the_model_stays_under_threshold():
    predictions, pairs = segmented(60_000, 30_000, 11)
    cfg = MonitorConfig.from_dict({"defaults": {"segments": True}})
    mon = Monitor(cfg)
    alerts = run(mon, predictions, pairs)
    assert {a["segment"] for _, a in alerts} == {"s3", None}
    (at, threshold), = firing(alerts, "metric_threshold", "s3")
    (seg_drift_at, _), = firing(alerts, "concept_drift", "s3")
    print(f"drift in s3 at 30,000: s3 concept_drift after {seg_drift_at:,}, s3 "
          f"metric_threshold after {at:,}; model-wide: "
          f"{[(at, a['kind'], a['status']) for at, a in alerts if a['segment'] is None]}")
    assert 30_000 < seg_drift_at < at < 35_000
    # The error test on the whole model sees the small rise too, later; the model-wide metric
    # threshold does not fire.
    assert all(a["kind"] == "concept_drift" for _, a in alerts if a["segment"] is None)
    assert all(at > seg_drift_at for at, a in alerts if a["segment"] is None)
    assert threshold["alert_id"] == "m.v1.s:s3.metric_threshold.1.firing"
    assert "segment 's3'" in threshold["message"]
    report = mon.versions[("m", 1)].report()
    assert report["segment"] is None
    # Model-wide: ~1.2x the baseline, under the 1.5x limit, so no model-wide alert.
    assert report["rolling_mse"] < 1.5 * report["baseline_mse"]
    seg = report["segments"]
    assert sorted(seg) == [f"s{k}" for k in range(10)]
    assert seg["s3"]["segment"] == "s3"
    assert seg["s3"]["rolling_mse"] > 1.5 * seg["s3"]["baseline_mse"]
    assert sum(s["n_predictions"] for s in seg.values()) == report["n_predictions"]
    assert seg["s3"]["estimated_mse"] is not None


def test_segments_beyond_the_cap_are_pooled_as_other():
    predictions, pairs = segmented(3_000, 10**9, 12)
    cfg = MonitorConfig.from_dict({"defaults": {"segments": True, "max_segments": 4}})
    mon = Monitor(cfg)
    run(mon, predictions, pairs)
    vm = mon.versions[("m", 1)]
    first = list(dict.fromkeys(p["segment"] for p in predictions))[:4]
    assert list(vm.segments) == first + ["_other"]
    assert vm.segments["_other"].n_predictions == sum(
        p["segment"] not in first for p in predictions)


def test_segments_are_off_by_default_and_old_alert_ids_keep_their_shape():
    predictions, pairs = segmented(2_000, 10**9, 13)
    mon = Monitor(MonitorConfig())
    run(mon, predictions, pairs)
    assert mon.versions[("m", 1)].segments == {}
    assert "segments" not in mon.versions[("m", 1)].report()
    assert alert_id(AlertKey("m", 1, "data_drift", "x0"), 2, "firing") == \
        "m.v1.data_drift.x0.2.firing"
    assert alert_id(AlertKey("m", 1, "data_drift", "x0", "de"), 2, "firing") == \
        "m.v1.s:de.data_drift.x0.2.firing"


def interleave(predictions, pairs, label_delay: int, block: int = 40):
    """One input order: blocks of ``block`` predictions, each followed by the pairs of
    the predictions ``label_delay`` before them."""
    seq = []
    for i in range(0, len(predictions), block):
        seq += [("p", p) for p in predictions[i:i + block]]
        j = i - label_delay
        seq += [("s", pair) for pair in pairs[max(j, 0):max(j + block, 0)]]
    return seq + [("s", pair) for pair in pairs[len(predictions) - label_delay:]]


def feed(monitor: Monitor, seq, batch: int):
    """The same input order cut into batches of ``batch``, each run of one kind at once
    (what the monitor agent does with a monitor-input message)."""
    out = []
    for i in range(0, len(seq), batch):
        chunk = seq[i:i + batch]
        j = 0
        while j < len(chunk):
            kind = chunk[j][0]
            k = j
            while k < len(chunk) and chunk[k][0] == kind:
                k += 1
            group = [e for _, e in chunk[j:k]]
            out += (monitor.process_predictions(group) if kind == "p"
                    else monitor.process_pairs(group))
            j = k
    return out


def test_batch_boundaries_do_not_change_the_new_detectors():
    predictions, pairs = segmented(30_000, 15_000, 14)
    X, y_hat, y = covariate_shift(30_000, 15_000, 15)
    shifted, shifted_pairs = events(X, y_hat, y, model="n")
    seq = interleave(predictions, pairs, 2_000) + interleave(shifted, shifted_pairs, 2_000)
    cfg = MonitorConfig.from_dict({"defaults": {"segments": True,
                                                "multivariate": {"enabled": True}}})
    results = []
    for batch in (1_000, 137, 4_999):
        mon = Monitor(cfg)
        alerts = feed(mon, seq, batch)
        results.append((sorted((a["alert_id"], str(a.get("attribution"))) for a in alerts),
                        mon.versions[("m", 1)].report(), mon.versions[("n", 1)].report()))
    (alerts0, rep0, est0), *others = results
    assert {a for a, _ in alerts0} >= {"n.v1.estimated_degradation.1.firing",
                                       "m.v1.s:s3.metric_threshold.1.firing"}
    for alerts, rep, est in others:
        assert alerts == alerts0
        assert est["estimated_mse"] == pytest.approx(est0["estimated_mse"], rel=1e-9)
        assert rep["segments"]["s3"]["rolling_mse"] == pytest.approx(
            rep0["segments"]["s3"]["rolling_mse"], rel=1e-9)
        assert rep["multivariate_z"] == pytest.approx(rep0["multivariate_z"], rel=1e-9)


def test_replay_gives_the_segment_and_estimate_results(tmp_path):
    from driftline.eventfile import read_events
    from driftline.replay import Replay, write_report

    predictions, pairs = segmented(40_000, 20_000, 16)
    log = []
    for i, p in enumerate(predictions):  # each label 200 predictions late
        log.append(p)
        if i >= 200:
            pair = pairs[i - 200]
            log.append({"prediction_id": pair["prediction_id"], "label": pair["label"],
                        "ts": p["ts"]})
    log += [{"prediction_id": q["prediction_id"], "label": q["label"], "ts": q["ts"] + 10}
            for q in pairs[-200:]]
    cfg = MonitorConfig.from_dict({"defaults": {"segments": True}})
    result = Replay(cfg).feed(read_events([msgspec.json.encode(e).decode()
                                           for e in log])).finish()
    ids = [a["alert_id"] for a in result.alerts]
    assert "m.v1.s:s3.metric_threshold.1.firing" in ids
    assert not [i for i in ids if ".metric_threshold." in i and ".s:" not in i]
    summary = result.versions["m v1"]
    assert sorted(summary["segments"]) == [f"s{k}" for k in range(10)]
    assert summary["estimated_mse"] == pytest.approx(summary["estimated_baseline_mse"], rel=0.2)
    paths = write_report(result, tmp_path)
    written = msgspec.json.decode(paths["summary"].read_bytes())
    assert written["versions"]["m v1"]["segments"]["s3"]["segment"] == "s3"


def test_the_estimate_does_not_depend_on_how_predictions_and_pairs_interleave():
    # In the worker pairs take one hop more than predictions, and a backfill may deliver
    # every prediction before any pair: the predictions that came before the estimator was
    # fitted wait for it.
    X, y_hat, y = covariate_shift(20_000, 10_000, 17)
    predictions, pairs = events(X, y_hat, y)
    results = []
    for seq in (interleave(predictions, pairs, 300),
                [("p", p) for p in predictions] + [("s", q) for q in pairs]):
        mon = Monitor(MonitorConfig())
        alerts = [a for a in feed(mon, seq, 500) if a["kind"] == "estimated_degradation"]
        results.append(([(a["alert_id"], a["ts"], a["metrics"]["estimated_mse"])
                         for a in alerts], mon.versions[("m", 1)].report()["estimated_mse"]))
    assert results[0][0] and results[0][0][0][0] == "m.v1.estimated_degradation.1.firing"
    [(id0, ts0, mse0)], [(id1, ts1, mse1)] = results[0][0], results[1][0]
    assert (id1, ts1) == (id0, ts0) and mse1 == pytest.approx(mse0, rel=1e-12)
    assert results[1][1] == pytest.approx(results[0][1], rel=1e-12)


def test_segments_estimators_stacked_give_each_estimators_own_expected_errors():
    """The version-wide monitor computes its segments' DLE estimates in one pass over the
    batch (estimation.Stacked): each segment's values equal its own estimator's, for any
    subset of the segments (not contiguous), with missing and extreme values."""
    from driftline.agents.monitor.estimation import Estimation, Stacked

    rng = np.random.default_rng(3)
    estimations = []
    for k in range(5):
        X = rng.normal(size=(500, 4)) * (1 + k)
        p = X[:, 0] + k
        estimations.append(Estimation(100, False).fit(X, p, p + rng.normal(size=500) * (1 + k)))
    rows = rng.normal(size=(60, 4)) * 3
    rows[5, 2] = np.nan
    rows[17, 0] = 1e6  # clipped at Z_CLIP
    predictions = rng.normal(size=60)
    stacked = Stacked()
    bounds = [(0, 7), (7, 30), (30, 31), (31, 50), (50, 60)]
    for chosen in ([0, 1, 2, 3, 4], [1, 3, 4], [4, 0], [0, 1, 2, 3, 4]):
        got = stacked.expected([estimations[k] for k in chosen], rows, predictions,
                               [bounds[k] for k in chosen])
        for k, values in zip(chosen, got):
            start, end = bounds[k]
            want = estimations[k].expected(rows[start:end], predictions[start:end])
            assert values == pytest.approx(want, rel=1e-12, abs=1e-12)
            assert np.isfinite(values).all()
