"""Model kinds: one contract over every kind, entry-point discovery, losses, and the
registry, ModelClient, shadow and canary serving classifiers (real Valkey)."""

from __future__ import annotations

import functools
import io
import json
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest

from driftline import (
    ArtifactError,
    LinearModel,
    LogisticModel,
    ModelClient,
    ModelRegistry,
    SoftmaxModel,
)
from driftline.agents.monitor.canary import Canary
from driftline.agents.monitor.shadow import Shadow
from driftline.models import kinds
from driftline.models.encoded import Column, EncodedModel, Encoding
from driftline.models.losses import model_losses, served_losses
from driftline.models.wire import MODEL_EVENT

RNG = np.random.default_rng(7)
X = RNG.normal(size=(50, 3))


def built_in() -> list:
    return [LinearModel([1.0, -2.0, 0.5], 0.3, ["a", "b", "c"], mean=[0, 1, 2],
                        scale=[1, 2, 3]),
            LogisticModel([1.0, -2.0, 0.5], 0.3, ["a", "b", "c"], mean=[0, 1, 2],
                          scale=[1, 2, 3]),
            SoftmaxModel(RNG.normal(size=(4, 3)), [0.1, 0.0, -0.1, 0.2], ["a", "b", "c"],
                         ["w", "x", "y", "z"]),
            # numeric raw features (so that arrays of numbers are rows too), one imputed
            EncodedModel(LogisticModel([1.0, 0.5, -2.0, 0.5], 0.1,
                                       ["a", "a=_missing", "b", "c"]),
                         Encoding([Column("a", "numeric", 0.5, indicator=True),
                                   Column("b", "numeric"), Column("c", "numeric")]))]


@functools.cache
def onnx_models() -> list:
    """The ``onnx`` kind, one a task, on the same features: scikit-learn models converted
    with skl2onnx (built on first use, so that collecting needs neither)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from driftline.models.onnx import OnnxModel

    y = X @ [1.0, -2.0, 0.5]
    fitted = [(LinearRegression().fit(X, y), "regression", {}),
              (LogisticRegression().fit(X, y > 0), "binary", {"zipmap": False}),
              (LogisticRegression().fit(X, np.array(["w", "x", "y"])[(y > -1) * 1 + (y > 1)]),
               "multiclass", {"zipmap": False})]
    return [OnnxModel(to_onnx(est, X[:1].astype(np.float32), options={id(est): options})
                      .SerializeToString(), task=task, feature_names=["a", "b", "c"])
            for est, task, options in fitted]


def every_model() -> list:
    try:
        return built_in() + onnx_models()
    except pytest.skip.Exception:
        return built_in()


CASES = ["linear", "logistic", "softmax", "encoded", "onnx:regression", "onnx:binary",
         "onnx:multiclass"]


@pytest.mark.parametrize("case", CASES)
def test_every_kind_keeps_the_contract(case):
    kind, _, task = case.partition(":")
    model = (next(m for m in onnx_models() if m.task == task) if kind == "onnx"
             else next(m for m in built_in() if m.kind == kind))
    assert kinds.get(model.kind) is type(model) and kinds.kind_of(model) == model.kind
    assert model.task in kinds.TASKS
    data = model.to_bytes()
    again = type(model).from_bytes(data)
    assert again == model and kinds.from_file(data) == model
    assert np.array_equal(np.asarray(again.predict(X)), np.asarray(model.predict(X)))
    row = dict(zip(model.feature_names, X[0]))
    one = model.predict(row)
    assert one == model.predict(X)[0] == model.predict(X[0])
    if model.task != "regression":
        proba = model.predict_proba(X)
        assert proba.shape == (len(X), len(model.classes))
        assert np.allclose(proba.sum(axis=1), 1.0)
        assert list(model.predict_proba(row)) == list(model.classes)
    # Refused: the other kinds' artifacts, a pickle, a truncated file, a tampered header.
    for other in every_model():
        if other.kind != model.kind:
            with pytest.raises(ArtifactError):
                type(model).from_bytes(other.to_bytes())
    buf = io.BytesIO()
    np.savez(buf, format=np.array([{"a pickled": "object"}], dtype=object),
             coef=np.array([1.0]))
    with pytest.raises(ArtifactError, match="unsafe or malformed|not a"):
        type(model).from_bytes(buf.getvalue())
    with pytest.raises(ArtifactError):
        type(model).from_bytes(data[: len(data) // 2])


def test_an_encoding_of_one_row_is_the_same_as_of_it_among_others():
    """One dict row (a service's request) takes a Python path, many take numpy's: the same
    columns for every kind of value either may meet."""
    encoding = Encoding([Column("x", "numeric", 0.5, indicator=True), Column("y", "numeric"),
                         Column("city", "categorical", categories=["lyon", "paris"])])
    odd = [None, float("nan"), float("inf"), True, "7", np.float64(2.5), np.int64(3), 4]
    cities = ["paris", "nice", None, True, 3.0, "lyon", "<true>", "_other"]
    rows = [{"x": x, "y": odd[-1 - i], "city": c} for i, (x, c) in enumerate(zip(odd, cities))]
    rows.append({})  # every feature absent
    together = encoding.transform(rows)
    assert np.isfinite(together).all() and together.shape == (len(rows), 6)
    for i, row in enumerate(rows):
        assert encoding.transform([row]).tolist() == [together[i].tolist()], row
    plain = [{"x": 1.0, "y": None, "city": "lyon"}, {"x": 2, "y": 3.0, "city": "paris"}]
    assert encoding.transform(plain).tolist() == [encoding.transform([r])[0].tolist()
                                                  for r in plain]


def test_a_header_without_classes_or_with_a_wrong_shape_is_refused():
    good = SoftmaxModel([[1.0], [2.0]], [0.0, 0.0], ["x"], ["a", "b"])
    with pytest.raises(ArtifactError, match="no list of classes"):
        SoftmaxModel.from_bytes(kinds.write_npz(SoftmaxModel.FORMAT, {"feature_names": ["x"]},
                                                good._arrays()))
    with pytest.raises(ArtifactError, match="2 classes"):
        SoftmaxModel([[1.0], [2.0], [3.0]], [0.0, 0.0], ["x"], ["a", "b"])
    with pytest.raises(ArtifactError, match="distinct"):
        SoftmaxModel([[1.0], [2.0]], [0.0, 0.0], ["x"], ["a", "a"])


def test_a_kind_from_another_package_is_found_by_entry_point(tmp_path):
    """A package that ships a kind under ``driftline.model_kinds`` is found without any
    change to driftline; one that claims a built-in name is ignored."""
    (tmp_path / "mykinds.py").write_text(textwrap.dedent('''
        import json
        class Constant:
            kind, task = "constant", "regression"
            def __init__(self, value, feature_names):
                self.value, self.feature_names = value, list(feature_names)
                self.version, self.meta = None, {}
            def predict(self, X):
                return self.value
            def to_bytes(self):
                return json.dumps({"value": self.value, "f": self.feature_names}).encode()
            @classmethod
            def from_bytes(cls, data):
                d = json.loads(data)
                return cls(d["value"], d["f"])
    '''))
    dist = tmp_path / "mykinds-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mykinds\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[driftline.model_kinds]\nconstant = mykinds:Constant\nlinear = mykinds:Constant\n")
    probe = textwrap.dedent(f'''
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        from driftline.models import kinds
        cls = kinds.get("constant")
        m = kinds.load("constant", cls(4.5, ["a"]).to_bytes())
        print(kinds.kinds()["constant"], kinds.kind_of(m), m.predict([[1.0]]),
              kinds.get("linear").__name__)
    ''')
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["mykinds:Constant", "constant", "4.5", "LinearModel"]
    assert "ignored: it is built in" in out.stderr


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(ArtifactError, match="unknown model kind 'forest'.*linear, logistic"):
        kinds.get("forest")
    with pytest.raises(ArtifactError, match="is not a model kind"):
        kinds.kind_of(object())


def test_losses_by_hand():
    m = SoftmaxModel([[0.0], [0.0]], [np.log(3.0), 0.0], ["x"], ["a", "b"])  # P(a) = 0.75
    rows = np.zeros((3, 1))
    assert np.allclose(model_losses(m, rows, ["a", "b", "zzz"], "log_loss"),
                       [-np.log(0.75), -np.log(0.25), -np.log(1e-15)])
    # Brier over the classes: (0.75-1)^2 + 0.25^2; (0.75)^2 + (0.25-1)^2; a class the
    # model does not know: 0.75^2 + 0.25^2 + 1
    assert np.allclose(model_losses(m, rows, ["a", "b", "zzz"], "brier"),
                       [0.125, 1.125, 1.625])
    assert model_losses(m, rows, ["a", "b", "zzz"], "error_rate").tolist() == [0, 1, 1]
    pairs = [{"prediction": "a", "label": "b", "probabilities": {"a": 0.75, "b": 0.25}},
             {"prediction": "a", "label": "a"}]
    assert np.allclose(served_losses(pairs, "multiclass", "log_loss"),
                       [-np.log(0.25), np.nan], equal_nan=True)
    assert served_losses(pairs, "multiclass", "error_rate").tolist() == [1.0, 0.0]
    b = [{"prediction": 0.8, "label": 1.0}, {"prediction": 0.8, "label": 0.0}]
    assert np.allclose(served_losses(b, "binary", "log_loss"), [-np.log(0.8), -np.log(0.2)])
    assert served_losses(b, "binary", "error_rate").tolist() == [0.0, 1.0]


class Source:
    def __init__(self, models, challenger=None):
        self.models, self._challenger = models, challenger

    def load(self, model, version):
        return self.models.get(version)

    def holdout_mse(self, model, version):
        return None

    def challenger(self, model):
        return self._challenger


def class_pairs(n, version, *, probabilities=True, seed=0):
    """Pairs of a 2-feature, 3-class world: the class is the sign pattern of x."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        x = rng.normal(size=2)
        label = "a" if x[0] > 0 else ("b" if x[1] > 0 else "c")
        pair = {"model": "m", "version": version, "prediction_id": f"p{i}",
                "features": {"x0": float(x[0]), "x1": float(x[1])}, "label": label,
                "prediction": "a", "error": None, "ts": 1.0 + i, "label_ts": 1.0 + i}
        if probabilities:  # the served model always says "a", fairly sure
            pair["probabilities"] = {"a": 0.6, "b": 0.2, "c": 0.2}
        pairs.append(pair)
    return pairs


GOOD = SoftmaxModel([[6.0, 0.0], [-3.0, 3.0], [-3.0, -3.0]], [0.0, 0.0, 0.0], ["x0", "x1"],
                    ["a", "b", "c"])


def test_shadow_judges_a_classifier_by_log_loss_and_falls_back_to_the_error_rate():
    shadow = Shadow(Source({2: GOOD}, (2, 0.0)), pairs=300, margin=0.02)
    verdicts = shadow.observe(class_pairs(400, 1))
    assert [v.action for v in verdicts] == ["promote"]
    m = verdicts[0].metrics
    assert m["shadow_log_loss"] < m["live_log_loss"] / 2
    assert "log loss" in verdicts[0].reason
    assert shadow.reports()[0]["rolling_log_loss"] == m["shadow_log_loss"]
    MODEL_EVENT.validate({"model": "m", "version": 2, "event": "promoted",
                          "parent_version": 1, "request_id": None, "metrics": m, "ts": 1.0})
    # Without probabilities in the pairs, log loss cannot be compared: the error rate is.
    bare = Shadow(Source({2: GOOD}, (2, 0.0)), pairs=300, margin=0.02)
    verdict = bare.observe(class_pairs(400, 1, probabilities=False))[0]
    assert "shadow_error_rate" in verdict.metrics and verdict.action == "promote"
    assert 0.4 < verdict.metrics["live_error_rate"] < 0.6  # "a" is right half the time
    # Brier, by the setting.
    brier = Shadow(Source({2: GOOD}, (2, 0.0)), pairs=300, margin=0.02, metric="brier")
    assert "shadow_brier" in brier.observe(class_pairs(400, 1))[0].metrics


def test_a_canary_rolls_back_a_worse_classifier_by_log_loss():
    bad = SoftmaxModel([[-6.0, 0.0], [3.0, -3.0], [3.0, 3.0]], [0.0, 0.0, 0.0], ["x0", "x1"],
                       ["a", "b", "c"])
    canary = Canary(Source({1: GOOD}), pairs=200, margin=0.1)
    pairs = class_pairs(10, 1) + class_pairs(300, 2, seed=1)
    for pair in pairs[10:]:  # v2 serves what ``bad`` predicts, with its probabilities
        row = pair["features"]
        pair["probabilities"] = bad.predict_proba(row)
        pair["prediction"] = bad.predict(row)
    verdicts = canary.observe(pairs)
    assert [v.action for v in verdicts] == ["rollback"]
    m = verdicts[0].metrics
    assert m["canary_log_loss"] > 5 * m["reference_log_loss"]
    assert set(m) == {"canary_log_loss", "reference_log_loss", "pairs", "margin",
                      "rolled_back_from", "restored"}
    # What the registry's rollback sends on: a valid model event (numbers only).
    MODEL_EVENT.validate({"model": "m", "version": 1, "event": "rolled_back",
                          "parent_version": None, "request_id": None, "metrics": m, "ts": 1.0})


def test_binary_shadow_scores_probabilities_against_the_served_ones():
    rng = np.random.default_rng(3)
    x = rng.normal(size=600)
    y = (rng.random(600) < 1 / (1 + np.exp(-3 * x))).astype(float)
    pairs = [{"model": "m", "version": 1, "features": {"x": float(v)}, "label": float(t),
              "prediction": 0.5, "error": 0.5 - float(t), "ts": 1.0, "label_ts": 1.0}
             for v, t in zip(x, y)]
    shadow = Shadow(Source({2: LogisticModel([3.0], 0.0, ["x"])}, (2, 0.0)), pairs=500)
    m = shadow.observe(pairs)[0].metrics
    assert m["live_log_loss"] == pytest.approx(np.log(2))
    assert m["shadow_log_loss"] < 0.6


@pytest.mark.integration
def test_registry_and_model_client_serve_classifiers(stack):
    registry = ModelRegistry.from_url(stack.redis_url, prefix=f"k{uuid.uuid4().hex[:8]}:")
    try:
        v = registry.register("intents", GOOD, metrics={"log_loss": 0.1})
        registry.promote("intents", v)
        info = registry.get("intents", v)
        assert (info.kind, info.task) == ("softmax", "multiclass")
        assert info.as_dict()["kind"] == "softmax"
        loaded = registry.load("intents")
        assert loaded == GOOD and loaded.version == v
        with ModelClient(registry, "intents", start=False) as client:
            row = {"x0": 1.0, "x1": -1.0}
            assert client.predict(row) == "a" and client.classes == ["a", "b", "c"]
            proba = client.predict_proba(row)
            assert max(proba, key=proba.get) == "a" and sum(proba.values()) == pytest.approx(1)
            assert client.task == "multiclass"
        registry.promote("fraud", registry.register("fraud", LogisticModel([2.0], 0.0, ["x"])))
        with ModelClient(registry, "fraud", start=False) as client:
            assert client.predict_class({"x": 0.2}) == 1
            assert client.predict_class({"x": 0.2}, threshold=0.7) == 0
            assert client.predict_proba({"x": 0.0}) == {0: 0.5, 1: 0.5}
        registry.promote("houses", registry.register("houses", LinearModel([1.0], 0.0)))
        with ModelClient(registry, "houses", start=False) as client:
            with pytest.raises(TypeError, match="regression model .linear.: it has no"):
                client.predict_proba([1.0])
        # A checksum mismatch is refused for every kind.
        refuses_a_tampered_artifact(registry, "intents", v)
        key = f"{registry.prefix}intents:v:{v}"
        assert json.loads(registry.redis.hget(key, "meta"))["kind"] == "softmax"
    finally:
        registry.close()


@pytest.mark.integration
@pytest.mark.parametrize("case", CASES)
def test_the_registry_stores_every_kind_and_refuses_it_tampered(stack, case):
    """Register, promote, load and serve each kind through real Valkey; then one flipped
    byte of its stored artifact is refused by the checksum, whatever the kind."""
    kind, _, task = case.partition(":")
    model = (next(m for m in onnx_models() if m.task == task) if kind == "onnx"
             else next(m for m in built_in() if m.kind == kind))
    registry = ModelRegistry.from_url(stack.redis_url, prefix=f"k{uuid.uuid4().hex[:8]}:")
    try:
        v = registry.register("m", model)
        registry.promote("m", v)
        info = registry.get("m", v)
        assert (info.kind, info.task) == (model.kind, model.task)
        loaded = registry.load("m")
        assert loaded == model and loaded.version == v
        with ModelClient(registry, "m", start=False) as client:
            assert np.array_equal(np.asarray(client.predict(X)), np.asarray(model.predict(X)))
        refuses_a_tampered_artifact(registry, "m", v)
    finally:
        registry.close()


def refuses_a_tampered_artifact(registry, model: str, version: int) -> None:
    """One byte of the stored artifact flipped: the registry's load refuses it (for every
    kind: the checksum is checked before the kind reads the bytes)."""
    key = f"{registry.prefix}{model}:v:{version}"
    data = bytearray(registry.redis.hget(key, "artifact"))
    data[len(data) // 2] ^= 0xFF
    registry.redis.hset(key, "artifact", bytes(data))
    with pytest.raises(ArtifactError, match="checksum"):
        registry.load(model, version=version)
