"""LinearModel: predictions, the .npz artifact, and refusing unsafe or malformed files."""

from __future__ import annotations

import io

import numpy as np
import pytest

from driftline import ArtifactError, LinearModel


def test_predict_arrays_rows_and_dicts_with_standardisation():
    m = LinearModel([2.0, -1.0], 1.0, ["a", "b"], mean=[1.0, 2.0], scale=[2.0, 0.5])
    X = np.array([[3.0, 2.5], [1.0, 2.0]])
    expected = ((X - [1, 2]) / [2, 0.5]) @ [2, -1] + 1
    np.testing.assert_allclose(m.predict(X), expected)
    assert m.predict(X[0]) == pytest.approx(expected[0])
    assert m.predict({"b": 2.5, "a": 3.0, "extra": 9}) == pytest.approx(expected[0])
    np.testing.assert_allclose(m.predict([{"a": 3.0, "b": 2.5}, {"a": 1.0, "b": 2.0}]), expected)


def test_missing_feature_and_wrong_width_are_clear_errors():
    m = LinearModel([1.0, 1.0], 0.0, ["rooms", "area"])
    with pytest.raises(ValueError,
                       match="missing feature\\(s\\) area; this model needs rooms, area"):
        m.predict({"rooms": 1})
    with pytest.raises(ValueError, match="expected 2 features per row"):
        m.predict([[1.0, 2.0, 3.0]])


@pytest.mark.parametrize("model", [
    LinearModel([1.5], 0.0),
    LinearModel([1.0, 2.0, 3.0], -4.0, ["a", "b", "c"]),
    LinearModel([1.0, 2.0], 0.5, ["a", "b"], mean=[0.1, 0.2], scale=[1.0, 3.0]),
], ids=["one-feature", "named", "standardised"])
def test_artifact_round_trip(model):
    back = LinearModel.from_bytes(model.to_bytes())
    assert back == model
    X = np.random.default_rng(0).normal(size=(5, len(model.coef)))
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


GOOD = dict(format=np.array("driftline.linear/1"), coef=np.array([1.0]),
            intercept=np.array(0.0), feature_names=np.array(["a"]))


@pytest.mark.reliability
@pytest.mark.parametrize("data,message", [
    (_npz(**{**GOOD, "coef": np.array([{"evil": 1}], dtype=object)}), "unsafe or malformed"),
    (_npz(**{**GOOD, "feature_names": np.array(["a"], dtype=object)}), "unsafe or malformed"),
    (_npz(**{k: v for k, v in GOOD.items() if k != "coef"}), "not a driftline linear model"),
    (_npz(**GOOD, extra=np.array([1.0])), "not a driftline linear model"),
    (_npz(**{**GOOD, "format": np.array("sklearn")}), "unknown artifact format"),
    (_npz(**{**GOOD, "coef": np.array(["1.0"])}), "coef must be numeric"),
    (_npz(**{**GOOD, "coef": np.array([np.nan])}), "coef must be finite"),
    (_npz(**{**GOOD, "intercept": np.array([0.0, 1.0])}), "intercept must be a scalar"),
    (b"PK\x03\x04 not really a zip", "malformed artifact"),
    (b"\x80\x04\x95 a pickle", "malformed artifact"),
], ids=["object-coef", "object-names", "missing", "extra", "format", "string-coef", "nan",
        "vector-intercept", "bad-zip", "pickle-bytes"])
def test_malformed_and_unsafe_artifacts_are_refused(data, message):
    with pytest.raises(ArtifactError, match=message):
        LinearModel.from_bytes(data)
