"""Feature values as production sends them (DESIGN.md since 2026-12-07): categories
(strings, booleans) and nulls travel the whole path - the join, the scored pair,
monitor-input's columns, the monitor, replay and the trainer's read-back - without one
event being refused for them, and numeric monitoring goes on beside them."""

from __future__ import annotations

import random
import time

import numpy as np
import orjson
import pytest
from kafka_io import create_topics, produce, read_all

from driftline.agents.monitor.columns import Columns
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.retrain.prepare import prepare
from driftline.eventfile import read_events
from driftline.models.training import rows_to_arrays
from driftline.models.wire import Prediction, array
from driftline.models.wire.features import numeric
from driftline.models.wire.internal import PREDICTIONS, columnar_element, decode_elements
from driftline.replay import Replay
from driftline.simulate import World, event_log

COUNTRIES = ["DE", "FR", "NL", "PL", "ES", "IT"]


def mixed_log(events: int, seed: int = 5) -> list[dict]:
    """The feature-shift world's log with a country, a flag, and one numeric feature null
    in 2 % of the predictions."""
    rng = random.Random(seed)
    world = World("feature-shift", drift_at=events // 2, seed=3)
    log = list(event_log(world, events, model="houses"))
    for event in log:
        if "features" in event:
            features = event["features"]
            features["country"] = rng.choice(COUNTRIES)
            features["vip"] = rng.random() < 0.1
            if rng.random() < 0.02:
                features[sorted(features)[0]] = None
    return log


def test_columns_of_categories_and_nulls_give_back_the_events_as_sent():
    events = [Prediction(str(k), "m", 0.5, 1, {"x": float(k) if k % 3 else None,
                                               "shop": "ab"[k % 2], "vip": k > 5}, 7.0)
              for k in range(12)]
    element = decode_elements(b"[" + columnar_element(PREDICTIONS, 0, 9, "m", events) + b"]")[0]
    assert element.v == 4 and element.c is not None and element.c.fc == ["shop", "vip"]
    assert [e["features"] for e in element.events()] == [e.features for e in events]
    cols = element.columns()
    assert cols.names == ["x"] and np.isnan(cols.rows[0, 0])
    assert cols.categories["vip"].tolist() == [k > 5 for k in range(12)]
    # "True" the string and True the boolean are two categories, 1.0 a number: format 1
    events[0].features["vip"] = "True"
    mixed = decode_elements(b"[" + columnar_element(PREDICTIONS, 0, 9, "m", events) + b"]")[0]
    assert mixed.c.cv[1] == ["True", False, True]
    events[0].features["vip"] = 1.0
    assert columnar_element(PREDICTIONS, 0, 9, "m", events) is None


def test_the_monitor_keeps_categories_out_of_its_numeric_columns():
    first = {"age": 41.0, "country": "DE", "vip": True, "income": None}
    columns = Columns(numeric(first))
    assert columns.names == ["age", "income"]
    rows = columns.rows([first, {"age": "old", "income": 3.0, "country": "FR"},
                         {"age": True, "income": 1}])
    # a category where the version has numbers is no number (NaN), True is not 1.0
    assert np.isnan(rows[0, 1]) and np.isnan(rows[1, 0]) and np.isnan(rows[2, 0])
    assert rows[1, 1] == 3.0 and rows[2, 1] == 1.0


def test_the_trainer_encodes_categorical_features_and_nulls_instead_of_dropping_them():
    """Issue 34: categories one-hot (with _other), a null imputed with an indicator; no
    row dropped. (Before, the categorical features were left out and the null row
    dropped: rows_to_arrays, still what a numbers-only window gets.)"""
    pairs = [{"features": {"a": 1.0, "country": "DE", "vip": False, "b": None}, "label": 1.0},
             {"features": {"a": 2.0, "country": "FR", "vip": True, "b": 4.0}, "label": 2.0}]
    data = prepare(pairs, None, "regression", holdout_fraction=0.5)
    assert data.names == ["a", "b", "country", "vip"] and data.dropped == 0
    assert data.columns == ["a", "b", "b=_missing", "country=DE", "country=_other",
                            "vip=<false>", "vip=_other"]
    assert data.X[0].tolist() == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]  # b: no number to fill with
    X, y, dropped = rows_to_arrays(pairs, ["a", "b"])
    assert X.tolist() == [[2.0, 4.0]] and dropped == 1  # numbers only: the null row goes


@pytest.mark.integration
def test_categories_and_nulls_stream_through_the_worker_as_replay_says(settings,
                                                                        worker_factory):
    settings = settings.replace(partitions=1, metrics_interval=0.5)
    log = mixed_log(6_000)
    offline = Replay(MonitorConfig()).feed(
        read_events([orjson.dumps(e).decode() for e in log])).finish()

    create_topics(settings)
    worker_factory(settings)
    # Predictions in arrays of 50 (columnar elements), labels one by one.
    predictions = [e for e in log if "model" in e]
    labels = [e for e in log if "model" not in e]
    produce(settings, [("predictions", None, array([orjson.dumps(e) for e in
                                                     predictions[i:i + 50]]))
                       for i in range(0, len(predictions), 50)]
            + [("labels", e["prediction_id"].encode(), orjson.dumps(e)) for e in labels])
    deadline = time.monotonic() + 120
    final = None
    while time.monotonic() < deadline:
        metrics = [orjson.loads(r.value) for r in read_all(settings, "metrics")]
        final = metrics[-1] if metrics else None
        if final and final["n_scored"] == 6_000 and final["n_predictions"] == 6_000:
            break
        time.sleep(1)
    assert final and final["n_scored"] == 6_000, final
    time.sleep(1.0)
    assert read_all(settings, "deadletter") == []

    streamed = [orjson.loads(r.value) for r in read_all(settings, "alerts")]

    def key(a):
        return (a["alert_id"], a["kind"], a["status"], a["feature"], a["ts"])

    assert sorted(map(key, offline.alerts)) == sorted(map(key, streamed))
    assert any(a["kind"] == "data_drift" for a in streamed)
    # The scored pairs carry the features as they came, categories and nulls included.
    sent = {e["prediction_id"]: e["features"] for e in predictions}
    scored = [orjson.loads(r.value) for r in read_all(settings, "scored")]
    pairs = [p for value in scored for p in (value if isinstance(value, list) else [value])]
    assert len(pairs) == 6_000
    assert all(p["features"] == sent[p["prediction_id"]] for p in pairs)
    assert any(None in p["features"].values() for p in pairs)
    # monitor-input held them as columns of format 4
    formats = {element.v for r in read_all(settings, "monitor_input")
               for element in decode_elements(r.value)}
    assert 4 in formats, formats
    # the metrics record says which features are numeric and which categorical
    assert final["feature_types"]["country"] == "categorical"
    assert final["feature_types"]["vip"] == "categorical"
    assert {t for name, t in final["feature_types"].items()
            if name not in ("country", "vip")} == {"numeric"}


def test_a_csv_cell_that_is_not_a_number_is_a_category():
    rows = list(read_events(["prediction_id,model,prediction,country,age,vip",
                             "p1,m,1.5,DE,41,true", "p2,m,2.5,,,", "p3,m,1,FR,nan,false",
                             "p4,m,1," + "x" * 257 + ",3,"], fmt="csv"))
    assert rows[0].event["features"] == {"country": "DE", "age": 41.0, "vip": "true"}
    assert rows[1].event["features"] == {}  # empty cells: missing features
    assert rows[2].error == ("wrong_type: line 4: feature 'age' must be a finite number or a "
                             "category, got 'nan'")
    assert rows[3].error.startswith("out_of_range: line 5: features.country: a category must "
                                    "be 1 to 256 characters")
