"""Event schemas and wire decoding: pure, no services."""

from __future__ import annotations

import msgspec
import orjson
import pytest

from driftline.agents.join.state import make_scored
from driftline.errors import SchemaError
from driftline.models.wire import (
    ALERT,
    LABEL,
    MODEL_EVENT,
    PREDICTION,
    RETRAIN_REQUEST,
    SCORED_PAIR,
    Label,
    Prediction,
    decode,
    encode,
)
from driftline.models.wire.events import as_dict

GOOD_PREDICTION = {"prediction_id": "p-1", "model": "houses.v2_a-b", "version": 3,
                   "prediction": 412.5, "features": {"rooms": 4, "area": 88.0}, "ts": 1.7e9}


def test_prediction_is_normalised():
    out = PREDICTION.validate(GOOD_PREDICTION)
    assert as_dict(out) == {**GOOD_PREDICTION, "features": {"rooms": 4.0, "area": 88.0}}
    assert isinstance(out.features["rooms"], float)
    # The same event decoded from bytes, on the fast path and as one element of a batch.
    raw = orjson.dumps(GOOD_PREDICTION)
    assert PREDICTION.decode(raw) == ([out], [])
    assert PREDICTION.decode(b"[" + raw + b"," + raw + b"]") == ([out, out], [])
    assert orjson.loads(encode(out)) == {**GOOD_PREDICTION, "features": {"rooms": 4.0,
                                                                          "area": 88.0}}


def test_segment_is_optional_and_checked():
    seg = PREDICTION.validate({**GOOD_PREDICTION, "segment": "de"})
    assert seg.segment == "de" and orjson.loads(encode(seg))["segment"] == "de"
    assert "segment" not in orjson.loads(encode(PREDICTION.validate(GOOD_PREDICTION)))
    for bad, kind in (("", "out_of_range"), ("x" * 129, "out_of_range"), (3, "wrong_type")):
        with pytest.raises(SchemaError) as err:
            PREDICTION.validate({**GOOD_PREDICTION, "segment": bad})
        assert (err.value.kind, err.value.path) == (kind, "segment")


def test_null_features_read_as_none_and_bad_names_are_refused():
    assert PREDICTION.validate({**GOOD_PREDICTION, "features": None}).features is None
    for names, kind in (({"": 1.0}, "bad_feature"), ({"x" * 257: 1.0}, "bad_feature")):
        good, bad = PREDICTION.decode(orjson.dumps([GOOD_PREDICTION,
                                                    {**GOOD_PREDICTION, "features": names}]))
        assert len(good) == 1 and [(r.index, r.kind) for r in bad] == [(1, kind)]
        assert bad[0].error.startswith("[1].features: ")


@pytest.mark.parametrize("change,kind,path", [
    ({"prediction_id": ""}, "bad_id", "prediction_id"),
    ({"prediction_id": "x" * 257}, "bad_id", "prediction_id"),
    ({"prediction_id": 5}, "wrong_type", "prediction_id"),
    ({"model": "a b"}, "bad_model", "model"),
    ({"model": "m" * 129}, "bad_model", "model"),
    ({"model": "ünï"}, "bad_model", "model"),
    ({"version": 0}, "out_of_range", "version"),
    ({"version": 1.5}, "wrong_type", "version"),
    ({"version": True}, "wrong_type", "version"),
    ({"version": 2**63}, "out_of_range", "version"),
    ({"prediction": True}, "wrong_type", "prediction"),
    ({"prediction": None}, "wrong_type", "prediction"),
    ({"prediction": float("inf")}, "not_finite", "prediction"),
    ({"prediction": 10**400}, "not_finite", "prediction"),
    ({"features": {"a": float("nan")}}, "not_finite", "features.a"),
    ({"features": {"a": ""}}, "out_of_range", "features.a"),
    ({"features": {"a": "x" * 257}}, "out_of_range", "features.a"),
    ({"features": {"a": [1]}}, "wrong_type", "features.a"),
    ({"features": [1, 2]}, "wrong_type", "features"),
    ({"features": {f"f{i}": 1 for i in range(1025)}}, "oversized", "features"),
    ({"ts": -1}, "out_of_range", "ts"),
    ({"ts": 1.7e12}, "out_of_range", "ts"),
    ({"colour": "red"}, "unknown_field", ""),
    ({"`\x03\u00d0": 1}, "unknown_field", ""),  # a backtick in the name (found by the fuzzer)
    ({"model": "m\n"}, "bad_model", "model"),            # $ would match before the newline
    ({"features": {"x": {"y": 1.0}}}, "wrong_type", "features.x"),
], ids=lambda v: str(v)[:40])
def test_prediction_errors_name_the_field(change, kind, path):
    with pytest.raises(SchemaError) as err:
        PREDICTION.validate({**GOOD_PREDICTION, **change})
    assert err.value.kind == kind
    assert err.value.path == path
    assert isinstance(err.value, ValueError)


def test_feature_values_are_numbers_categories_booleans_or_null():
    """DESIGN.md since 2026-12-07: a category is a string of 1-256 characters or a boolean,
    null is a missing value; each keeps its type through decode and encode."""
    features = {"age": 41, "country": "DE", "vip": True, "income": None, "plan": "x" * 256}
    event = PREDICTION.validate({**GOOD_PREDICTION, "features": features})
    assert event.features == {"age": 41.0, "country": "DE", "vip": True, "income": None,
                              "plan": "x" * 256}
    assert type(event.features["vip"]) is bool and type(event.features["age"]) is float
    assert orjson.loads(encode(event))["features"] == event.features
    assert PREDICTION.decode_one(encode(event)).features == event.features
    with pytest.raises(SchemaError, match="features.country: a category must be 1 to 256 "
                                          "characters, got 0"):
        PREDICTION.validate({**GOOD_PREDICTION, "features": {"country": ""}})
    with pytest.raises(SchemaError, match="features.x: must be a finite number, a category"):
        PREDICTION.validate({**GOOD_PREDICTION, "features": {"x": {"y": 1}}})


def test_prediction_optional_fields_and_missing_required():
    minimal = PREDICTION.validate({"prediction_id": "a", "model": "m", "prediction": 1})
    assert as_dict(minimal) == {"prediction_id": "a", "model": "m", "prediction": 1.0,
                                "version": None, "features": {}}
    with pytest.raises(SchemaError, match="prediction: required field is missing"):
        PREDICTION.validate({"prediction_id": "a", "model": "m"})


def test_label_accepts_model_hint_and_rejects_bad_label():
    assert as_dict(LABEL.validate({"prediction_id": "a", "label": 0, "model": "m"})) == {
        "prediction_id": "a", "label": 0.0, "model": "m"}
    # a string is a class (a multiclass model's label); a boolean is neither
    assert LABEL.validate({"prediction_id": "a", "label": "0"}).label == "0"
    with pytest.raises(SchemaError, match=r"label: must be a finite number or a class \(a "
                                          r"string of 1 to 256 characters\), got bool"):
        LABEL.validate({"prediction_id": "a", "label": True})


def test_scored_pair_from_make_scored_validates():
    pair = make_scored(PREDICTION.validate(GOOD_PREDICTION), Label("p-1", 400.0, ts=2e9), 0, 0)
    assert SCORED_PAIR.validate(as_dict(pair)) == pair
    assert SCORED_PAIR.decode(encode(pair)) == ([pair], [])
    assert pair.error == 12.5 and pair.label_ts == 2e9 and pair.ts == 1.7e9
    untimed = make_scored(Prediction("p", "m", 1.0), Label("p", 0.5), 10.0, 20.0)
    assert (untimed.ts, untimed.label_ts) == (10.0, 20.0)


def test_other_event_kinds_validate():
    alert = {"alert_id": "a1", "model": "m", "version": 2, "kind": "concept_drift",
             "status": "firing", "severity": "critical", "detector": "ADWIN", "feature": None,
             "ts": 1.7e9, "metrics": {"rolling_mse": 2.0, "baseline_mse": 1.0, "n_scored": 5},
             "message": "MSE doubled."}
    assert as_dict(ALERT.validate(alert)) == {**alert, "segment": None}
    assert ALERT.validate({**alert, "kind": "promotion_regressed", "segment": "de",
                           "attribution": [{"feature": "x1", "share": 0.7}],
                           "reason": "superseded"}).attribution[0].share == 0.7
    with pytest.raises(SchemaError, match="kind: must be one of"):
        ALERT.validate({**alert, "kind": "vibes"})
    request = {"request_id": "r1", "model": "m", "base_version": 2, "alert_id": "a1",
               "reason": "drift", "ts": 1.7e9}
    assert as_dict(RETRAIN_REQUEST.validate(request)) == request
    event = {"model": "m", "version": 3, "event": "promoted", "parent_version": 2,
             "request_id": "r1", "metrics": {"challenger": {"mse": 1.0}, "champion": {"mse": 2.0}},
             "ts": 1.7e9}
    assert as_dict(MODEL_EVENT.validate(event)) == event
    assert MODEL_EVENT.validate({**event, "event": "shadowing"}).event == "shadowing"
    with pytest.raises(SchemaError, match="metrics.champion.mse: must be a finite number"):
        MODEL_EVENT.validate({**event, "metrics": {"champion": {"mse": float("nan")}}})


def test_validate_many_batches_and_singles():
    assert len(LABEL.validate_many([{"prediction_id": "a", "label": 1}] * 3)) == 3
    with pytest.raises(SchemaError, match=r"\[1\].label"):
        LABEL.validate_many([{"prediction_id": "a", "label": 1}, {"prediction_id": "a"}])


@pytest.mark.parametrize("raw,kind", [
    (b"{oops", "invalid_json"),
    (b"\xff\xfe", "invalid_json"),
    (b"[" * 1100 + b"]" * 1100, "invalid_json"),
    (b'"a string"', "wrong_type"),
    (b"[]", "empty"),
    (None, "empty"),
    (b'{"prediction_id": "a", "label": Infinity}', "not_finite"),
    (b'{"prediction_id": "a", "label": -1e400}', "not_finite"),
    (b" " * 20_000, "oversized"),
], ids=["syntax", "not-utf8", "deep-nesting", "not-object", "empty-batch", "null",
        "infinity", "overflow", "oversized"])
def test_decode_refuses_bad_messages(raw, kind):
    good, bad = decode(raw, LABEL, max_bytes=10_000)
    assert good == [] and len(bad) == 1 and bad[0].kind == kind
    assert bad[0].raw == (raw or b"")


def test_decode_batch_limit_and_mixed_batch():
    items = [{"prediction_id": str(i), "label": i} for i in range(5)]
    good, bad = decode(orjson.dumps(items), LABEL, max_batch=4)
    assert good == [] and bad[0].kind == "oversized"
    items[3] = {"prediction_id": "3", "label": [1]}
    good, bad = decode(orjson.dumps(items), LABEL)
    assert [g.prediction_id for g in good] == ["0", "1", "2", "4"]
    assert (bad[0].index, bad[0].kind, orjson.loads(bad[0].raw)) == (3, "wrong_type", items[3])


def test_numpy_scalars_are_the_numbers_they_stand_for():
    """A caller's ``model.predict(X)[0]`` or a numpy-computed metric validates as the float
    or int it is (the old validators took float subclasses; msgspec alone would not)."""
    import numpy as np

    event = PREDICTION.validate({**GOOD_PREDICTION, "prediction": np.float64(2.5),
                                 "features": {"rooms": np.float32(4.0), "area": np.int64(88)}})
    assert event.prediction == 2.5 and event.features == {"rooms": 4.0, "area": 88.0}
    model_event = MODEL_EVENT.validate({
        "model": "m", "version": 3, "event": "registered", "parent_version": None,
        "request_id": None, "metrics": {"mse": np.float64(0.5), "rows": np.int64(10)},
        "ts": 1.7e9})
    assert model_event.metrics == {"mse": 0.5, "rows": 10}
    with pytest.raises(SchemaError) as err:
        PREDICTION.validate({**GOOD_PREDICTION, "prediction": np.float64("nan")})
    assert (err.value.kind, err.value.path) == ("not_finite", "prediction")


def test_documented_values_keep_out_of_range_whatever_the_type():
    alert = {"alert_id": "a1", "model": "m", "version": 2, "kind": "concept_drift",
             "status": "firing", "severity": "critical", "detector": "ADWIN", "feature": None,
             "ts": 1.7e9, "metrics": {"rolling_mse": 2.0, "baseline_mse": 1.0, "n_scored": 5},
             "message": "MSE doubled."}
    for bad in ("vibes", 5, None, ["concept_drift"]):
        with pytest.raises(SchemaError) as err:
            ALERT.validate({**alert, "kind": bad})
        assert (err.value.kind, err.value.path) == ("out_of_range", "kind"), bad
        assert "must be one of concept_drift, data_drift" in str(err.value)
    with pytest.raises(SchemaError) as err:   # a count beyond 64 bits cannot be written out
        ALERT.validate({**alert, "metrics": {"n_scored": 2**64}})
    assert err.value.path == "metrics.n_scored"


def test_model_names_are_checked_once_a_batch_with_the_errors_msgspec_gave():
    """PREDICTION decodes the model as bounded text and checks each batch's names once
    (msgspec's pattern cost ~0.6 µs an event); a bad name among good ones, good names
    remembered or not, is refused alone, by the pattern's own words, on every path."""
    from driftline.models.wire.events import StrictPrediction

    def event(model: str, i: int = 0) -> dict:
        return {"prediction_id": f"p{i}", "model": model, "prediction": 1.0}

    names = ["houses", "churn.v2", "a" * 128]
    batch = [event(names[i % 3], i) for i in range(500)]
    for bad in ("bad name", "", "a" * 129, "héllo"):
        raw = orjson.dumps(batch[:250] + [event(bad, 250)] + batch[251:])
        good, refused = PREDICTION.decode(raw)
        assert len(good) == 499 and all(type(e) is Prediction for e in good)
        assert [(r.index, r.kind) for r in refused] == [(250, "bad_model")]
        assert refused[0].error.startswith(  # a long value cut short, as before
            f"[250].model: must match [A-Za-z0-9._-]{{1,128}}, got {bad[:10]!r}"[:-1])
        assert PREDICTION.decode_each([orjson.dumps(event(bad))]) is None
        with pytest.raises(SchemaError, match="model: must match"):
            PREDICTION.decode_one(orjson.dumps(event(bad)))
        with pytest.raises(SchemaError, match="model: must match"):
            PREDICTION.validate(event(bad))
        with pytest.raises(msgspec.ValidationError):  # the strict twin says so itself
            msgspec.convert(event(bad), StrictPrediction)
    # The first error in field order, as before: the model's, not the prediction's after it.
    with pytest.raises(SchemaError, match="^model: must match"):
        PREDICTION.validate({"prediction_id": "p", "model": "x y", "prediction": "nan!" * 99})
    assert [e.model for e in PREDICTION.decode_each([orjson.dumps(e) for e in batch])] == \
        [e["model"] for e in batch]
