"""Categorical drift and the data-quality rules (issue 32): each fires on the change it is
made for, on the feature that changed, and stays quiet on a stationary mixed stream; a
producer's million distinct strings cannot grow a version's memory past the cap.

Streams go through the monitor as the worker feeds it (dict batches of 500, and the same
events as monitor-input columns, which must give the same alerts)."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.agents.monitor.categories import MISMATCH, MISSING, OVERFLOW, Vocabulary
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.models.wire import ALERT, Prediction
from driftline.models.wire.internal import PREDICTIONS, columnar_element, decode_elements

CARDINALITIES = (2, 5, 20, 50, 200)
BATCH = 500


def zipf(k: int) -> np.ndarray:
    p = 1.0 / np.arange(1, k + 1)
    return p / p.sum()


def mixed(n: int, seed: int, change=None, at: int = 0) -> list[dict]:
    """Predictions with 5 numeric features (n0..n4, normal) and 5 categorical ones
    (c0..c4, Zipf over 2 to 200 categories), 2 % of each value null; ``change(i, features,
    rng)`` edits the features of prediction i >= ``at``."""
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(n, 5))
    codes = [rng.choice(k, size=n, p=zipf(k)) for k in CARDINALITIES]
    null = rng.random((n, 10)) < 0.02
    events = []
    for i in range(n):
        features: dict = {f"n{j}": None if null[i, j] else float(numbers[i, j]) for j in range(5)}
        features.update({f"c{j}": None if null[i, 5 + j] else f"v{codes[j][i]}"
                         for j in range(5)})
        if change is not None and i >= at:
            change(i, features, rng)
        events.append({"prediction_id": str(i), "model": "m", "version": 1,
                       "prediction": float(numbers[i, 0]), "features": features,
                       "ts": float(i)})
    return events


def run(events: list[dict], columnar: bool = False, monitor: Monitor | None = None):
    """(position of the batch's last event, alert) for every alert, batches of 500."""
    monitor = monitor or Monitor(MonitorConfig())
    out = []
    for start in range(0, len(events), BATCH):
        batch = events[start:start + BATCH]
        if columnar:
            element = columnar_element(PREDICTIONS, 0, start, "m",
                                       [Prediction(**e) for e in batch])
            [decoded] = decode_elements(b"[" + element + b"]")
            alerts = (monitor.process_prediction_columns(decoded.columns())
                      if decoded.columnar else monitor.process_predictions(decoded.events()))
        else:
            alerts = monitor.process_predictions(batch)
        out += [(start + len(batch), a) for a in alerts]
    for _, alert in out:
        ALERT.validate(alert)  # every alert is a valid wire alert
    return out


def fired(alerts, kind=None, detector=None):
    return [(at, a["feature"], a["detector"]) for at, a in alerts
            if a["status"] == "firing" and (kind is None or a["kind"] == kind)
            and (detector is None or a["detector"] == detector)]


def test_a_stationary_mixed_stream_raises_nothing_and_reports_every_feature():
    monitor = Monitor(MonitorConfig())
    assert run(mixed(40_000, seed=1), monitor=monitor) == []
    report = monitor.versions[("m", 1)].report()
    features = report["features"]
    assert {f: features[f]["type"] for f in ("n0", "c4")} == {"n0": "numeric",
                                                               "c4": "categorical"}
    assert features["c2"]["statistic"] == "chi2" and features["n1"]["statistic"] == "psi"
    for name, entry in features.items():
        assert 0 <= entry["value"] <= entry["limit"], name
        assert 0.005 < entry["missing_share"] < 0.04, name
    assert features["c4"]["categories"] == 200 and not features["c4"]["capped"]
    assert set(report["calibration"]["chi2_limits"]) == {f"c{j}" for j in range(5)}
    assert report["calibration"]["tests"] == 10 + 3 + 1 + 10  # + estimation, + quality


def test_dict_and_columnar_batches_give_the_same_alerts():
    def change(i, features, rng):
        features["c2"] = "v0" if rng.random() < 0.5 else features["c2"]
        features["n3"] = None if rng.random() < 0.3 else features["n3"]
    events = mixed(8_000, seed=2, change=change, at=4_000)
    by_dict, by_columns = run(events), run(events, columnar=True)
    assert by_dict and by_dict == by_columns


def share_down(i, features, rng):
    """v3 of c2 (10 % of its traffic under Zipf(20)... about 9 %) moves to 2 %."""
    if features["c2"] == "v3" and rng.random() < 0.78:
        features["c2"] = "v0"


@pytest.mark.parametrize("columnar", [False, True])
def test_a_category_whose_share_falls_fires_data_drift_on_that_feature(columnar):
    alerts = run(mixed(12_000, seed=3, change=share_down, at=6_000), columnar)
    drift = fired(alerts, "data_drift")
    assert drift and {f for _, f, _ in drift} == {"c2"} and drift[0][2] == "chi2"
    assert 6_000 < drift[0][0] <= 6_000 + 2_500
    assert fired(alerts, "data_quality") == []


def test_a_rising_missing_share_fires_missing_share():
    def more_missing(i, features, rng):
        if rng.random() < 0.18:
            features["n2"] = None
            features["c1"] = None
    alerts = run(mixed(12_000, seed=4, change=more_missing, at=6_000))
    quality = fired(alerts, "data_quality")
    assert {(f, d) for _, f, d in quality} == {("n2", "missing_share"), ("c1", "missing_share")}
    assert all(6_000 < at <= 6_000 + 1_500 for at, _, _ in quality)


def test_a_feature_that_vanishes_is_absent_within_a_check_and_resolves_when_back():
    def vanish(i, features, rng):
        if i < 9_000:
            del features["c0"]
    alerts = run(mixed(12_000, seed=5, change=vanish, at=6_000))
    absent = [(at, a["status"], a["severity"]) for at, a in alerts
              if a["detector"] == "feature_absent"]
    assert absent[0][1:] == ("firing", "critical") and absent[0][0] <= 6_000 + 2 * BATCH
    assert absent[1][1] == "resolved" and 9_000 < absent[1][0] <= 9_000 + 2 * BATCH
    assert len(absent) == 2
    assert fired(alerts, "data_quality", "missing_share") == []  # the absence says it


def test_a_new_category_fires_on_that_feature():
    def new_category(i, features, rng):
        if rng.random() < 0.05:
            features["c3"] = "brand-new"
    alerts = run(mixed(12_000, seed=6, change=new_category, at=6_000))
    found = fired(alerts)
    assert found and {f for _, f, _ in found} == {"c3"}
    assert {d for _, _, d in found} <= {"chi2", "unseen_category"}
    assert found[0][0] <= 6_000 + 1_500


def test_categories_in_a_numeric_feature_are_a_type_mismatch_not_a_refusal():
    def strings(i, features, rng):
        if rng.random() < 0.2:
            features["n4"] = "n/a"
    monitor = Monitor(MonitorConfig())
    alerts = run(mixed(10_000, seed=7, change=strings, at=5_000), monitor=monitor)
    quality = fired(alerts, "data_quality")
    assert ("n4", "type_mismatch") in {(f, d) for _, f, d in quality}
    assert monitor.refused == {}
    assert monitor.versions[("m", 1)].report()["features"]["n4"]["mismatch_share"] > 0.1


def test_a_new_feature_is_reported_once():
    def extra(i, features, rng):
        features["late"] = 1.0
    monitor = Monitor(MonitorConfig())
    alerts = run(mixed(4_000, seed=8, change=extra, at=2_000), monitor=monitor)
    new = [(at, a["feature"]) for at, a in alerts if a["detector"] == "feature_new"]
    assert new == [(2_500, "late")]
    assert monitor.versions[("m", 1)].report()["new_features"] == ["late"]


def test_a_million_distinct_strings_stay_within_the_cap_and_are_not_drift_tested():
    """An id-like column: every value new. The vocabulary stops at max_categories, the
    rest is one overflow; the column is recognised as an identifier and not tested."""
    monitor = Monitor(MonitorConfig.from_dict({"defaults": {"data_drift": {
        "max_categories": 100}}}))
    events = [{"prediction_id": str(i), "model": "m", "version": 1, "prediction": 0.0,
               "features": {"session": f"s-{i}", "x": float(i % 7)}, "ts": float(i)}
              for i in range(1_000_000)]
    alerts = []
    for start in range(0, len(events), 5_000):
        alerts += monitor.process_predictions(events[start:start + 5_000])
    vm = monitor.versions[("m", 1)]
    [vocab] = vm.columns.vocabularies
    assert len(vocab) == 100 and vocab.overflowed
    entry = vm.report()["features"]["session"]
    assert entry["idlike"] is True and entry["value"] == 0.0
    assert entry["categories"] == 100 and entry["capped"] is True
    assert [a for a in alerts if a["feature"] == "session"] == []


def test_the_vocabulary_tells_booleans_strings_numbers_and_nulls_apart():
    vocab = Vocabulary(cap=3)
    codes = vocab.codes([True, "True", 1.0, None, 1, False, "x", "y"]).tolist()
    assert codes == [0, 1, MISMATCH, MISSING, MISMATCH, 2, OVERFLOW, OVERFLOW]
    assert vocab.labels() == ["true", "True", "false"]
    assert vocab.codes(["True", True]).tolist() == [1, 0]  # the fast path, no numbers


def test_null_features_on_a_version_without_features_are_nothing_new():
    monitor = Monitor(MonitorConfig())
    events = [{"prediction_id": str(i), "model": "m", "version": 1, "prediction": 0.0,
               "features": None if i % 2 else {}, "ts": float(i)} for i in range(10)]
    assert monitor.process_predictions(events) == []
    assert monitor.versions[("m", 1)].report()["features"] == {}
