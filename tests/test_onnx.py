"""The ``onnx`` model kind on real models: scikit-learn estimators and pipelines converted
with skl2onnx, served with onnxruntime, compared with scikit-learn's own predictions; the
artifact, the registry, ModelClient and the CLI; a corrupt file; no onnxruntime."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")

from click.testing import CliRunner
from skl2onnx import convert_sklearn, to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from test_model_kinds import Source, refuses_a_tampered_artifact

from driftline import ArtifactError, LinearModel, ModelClient, ModelRegistry
from driftline.cli import main
from driftline.models import kinds, onnx_meta
from driftline.models.onnx import OnnxModel

# float32 inside ONNX: predictions of order 1-10 agree with scikit-learn's float64 ones to
# about 1e-6; the tests allow 1e-5, absolute and relative.
TOL = {"rtol": 1e-5, "atol": 1e-5}
APPROX = {"rel": 1e-5, "abs": 1e-5}
RNG = np.random.default_rng(11)
N = 400
CITIES = np.array(["paris", "lyon", "nice", "lille"])


def numeric_world() -> tuple[np.ndarray, np.ndarray]:
    X = RNG.normal(size=(N, 4))
    return X, 3 * X[:, 0] + np.sin(2 * X[:, 1]) - X[:, 2] * X[:, 3] + RNG.normal(0, 0.1, N)


@functools.cache
def regression() -> tuple[GradientBoostingRegressor, bytes, np.ndarray]:
    X, y = numeric_world()
    est = GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=0).fit(X, y)
    return est, to_onnx(est, X[:1].astype(np.float32)).SerializeToString(), X


def mixed_world() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Two numeric columns and a string one, as an object array (no pandas needed:
    skl2onnx maps the ColumnTransformer's column indices onto the named inputs)."""
    x1, x2 = RNG.normal(size=N), RNG.normal(size=N)
    city = RNG.choice(CITIES, size=N)
    X = np.empty((N, 3), dtype=object)
    X[:, 0], X[:, 1], X[:, 2] = x1, x2, city
    binary = ((x1 + (city == "paris") - 0.5 * (city == "nice")) > 0.3).astype(int)
    multi = np.where(city == "paris", "red", np.where(x1 + x2 > 0, "green", "blue"))
    return X, {"binary": binary, "multiclass": multi}


@functools.cache
def pipeline(task: str, zipmap: bool) -> tuple[Pipeline, bytes, np.ndarray]:
    X, targets = mixed_world()
    clf = RandomForestClassifier(n_estimators=25, max_depth=6, random_state=0)
    pipe = Pipeline([
        ("encode", ColumnTransformer([("num", "passthrough", [0, 1]),
                                      ("cat", OneHotEncoder(handle_unknown="ignore"), [2])])),
        ("clf", clf)]).fit(X, targets[task])
    inputs = [("x1", FloatTensorType([None, 1])), ("x2", FloatTensorType([None, 1])),
              ("city", StringTensorType([None, 1]))]
    options = {} if zipmap else {id(clf): {"zipmap": False}}
    onx = convert_sklearn(pipe, initial_types=inputs, options=options)
    return pipe, onx.SerializeToString(), X


def rows(X: np.ndarray) -> list[dict]:
    return [{"x1": float(a), "x2": float(b), "city": str(c)} for a, b, c in X]


def test_a_regression_predicts_what_scikit_learn_does():
    est, data, X = regression()
    model = kinds.from_file(data, task="regression")
    assert isinstance(model, OnnxModel) and (model.kind, model.task) == ("onnx", "regression")
    assert model.feature_names == ["x0", "x1", "x2", "x3"]
    expected = est.predict(X)
    got = model.predict(X)
    assert got.shape == (N,) and got.dtype == float
    np.testing.assert_allclose(got, expected, **TOL)
    assert np.abs(got - expected).max() < 1e-5
    assert model.predict(X[0]) == pytest.approx(expected[0], **APPROX)
    named = OnnxModel(data, task="regression", feature_names=["a", "b", "c", "d"])
    row = dict(zip("abcd", X[0].tolist()))
    assert named.predict(row) == model.predict(X[0]) == model.predict(X[:1])[0]
    assert named.predict([row, row]).tolist() == [named.predict(row)] * 2
    # A regression has no probabilities: ModelClient and others ask hasattr.
    assert not hasattr(model, "predict_proba") and not hasattr(model, "predict_class")
    assert model.classes is None
    with pytest.raises(ValueError, match="missing feature.*d"):
        named.predict({"a": 1.0, "b": 1.0, "c": 1.0})
    with pytest.raises(ValueError, match="expected 4 features"):
        model.predict(X[:, :3])


@pytest.mark.parametrize("zipmap", [False, True], ids=["tensor", "zipmap"])
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_a_pipeline_with_a_categorical_encoder(task, zipmap):
    pipe, data, X = pipeline(task, zipmap)
    model = OnnxModel(data, task=task)
    assert model.feature_names == ["x1", "x2", "city"]  # one input per column
    classes = pipe.classes_.tolist()
    assert model.classes == ([0, 1] if task == "binary" else classes)  # read from the graph
    expected = pipe.predict_proba(X)
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba, expected, **TOL)
    assert 0.0 <= proba.min() and proba.max() <= 1.0
    np.testing.assert_allclose(model.predict_proba(rows(X)), expected, **TOL)
    row = rows(X[:1])[0]
    by_class = model.predict_proba(row)
    assert list(by_class) == model.classes
    assert list(by_class.values()) == pytest.approx(expected[0].tolist(), **APPROX)
    predicted = model.predict(X)
    if task == "binary":
        np.testing.assert_allclose(predicted, expected[:, 1], **TOL)
        assert isinstance(model.predict(row), float)
        assert model.predict_class(X).tolist() == (expected[:, 1] >= 0.5).astype(int).tolist()
        assert model.predict_class(row, threshold=1.01) == 0
    else:
        assert predicted.tolist() == pipe.predict(X).tolist()
        assert model.predict(row) == pipe.predict(X[:1])[0] and isinstance(model.predict(row), str)
        assert model.predict_class(row) == model.predict(row)
    # A city the encoder never saw is ignored, as in scikit-learn (handle_unknown="ignore").
    unseen = np.array([[0.5, -0.2, "brest"]], dtype=object)
    np.testing.assert_allclose(model.predict_proba(unseen), pipe.predict_proba(unseen), **TOL)
    with pytest.raises(ValueError, match="'city' is a string feature"):
        model.predict({"x1": 1.0, "x2": 1.0, "city": 3})


def test_probabilities_stay_within_0_and_1():
    """A forest sure of a row sums float32 leaves to 1.0000001 and -1.2e-7 (the model of
    docs/how-to/registry.md); prediction events refuse probabilities outside [0, 1]."""
    X = np.array([[0.5, 1.0, "paris"], [2.0, -1.0, "lyon"], [-1.0, 0.5, "nice"]] * 20,
                 dtype=object)
    clf = RandomForestClassifier(n_estimators=25, random_state=0)
    pipe = Pipeline([("encode", ColumnTransformer([
        ("num", "passthrough", [0, 1]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), [2])])), ("clf", clf)])
    pipe.fit(X, np.array([1, 0, 0] * 20))
    onx = convert_sklearn(pipe, initial_types=[
        ("amount", FloatTensorType([None, 1])), ("age", FloatTensorType([None, 1])),
        ("city", StringTensorType([None, 1]))], options={id(clf): {"zipmap": False}})
    import onnxruntime

    raw = onnxruntime.InferenceSession(onx.SerializeToString(), providers=[
        "CPUExecutionProvider"]).run(None, {"amount": np.array([[0.5]], np.float32),
                                            "age": np.array([[1.0]], np.float32),
                                            "city": np.array([["paris"]])})[1]
    assert raw.max() > 1.0 or raw.min() < 0.0  # what onnxruntime says
    model = OnnxModel(onx.SerializeToString(), task="binary")
    row = {"amount": 0.5, "age": 1.0, "city": "paris"}
    assert model.predict(row) == 1.0 and model.predict_proba(row) == {0: 0.0, 1: 1.0}


def test_the_artifact_is_the_onnx_file_with_driftline_metadata():
    import onnx

    _, plain, X = pipeline("binary", False)
    model = OnnxModel(plain, task="binary")
    data = model.to_bytes()
    assert data.startswith(plain) and len(data) - len(plain) < 300
    proto = onnx.load_from_string(data)  # still a valid ONNX model for any ONNX tool
    onnx.checker.check_model(proto)
    stored = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(stored["driftline"]) == {
        "format": "driftline.onnx/1", "task": "binary", "feature_names": ["x1", "x2", "city"],
        "classes": [0, 1], "output": "probabilities", "label": "label"}
    again = OnnxModel.from_bytes(data)
    assert again == model and kinds.from_file(data) == model and kinds.load("onnx", data) == model
    assert np.array_equal(again.predict(X), model.predict(X))
    assert repr(again) == f"<OnnxModel binary, 3 features, 2 classes, {len(data):,} bytes>"
    # Arguments may repeat the metadata, or reorder the features' columns, never contradict.
    assert OnnxModel(data, task="binary", classes=[0, 1]) == model
    with pytest.raises(ArtifactError, match="task 'multiclass' disagrees"):
        OnnxModel(data, task="multiclass")
    reordered = OnnxModel(plain, task="binary", feature_names=["city", "x1", "x2"])
    assert reordered.predict(X[:, [2, 0, 1]]) == pytest.approx(model.predict(X), abs=1e-12)
    with pytest.raises(ArtifactError, match="not the model's inputs"):
        OnnxModel(plain, task="binary", feature_names=["x1", "x2", "town"])


def test_what_is_refused():
    _, plain, _ = pipeline("multiclass", True)
    with pytest.raises(ArtifactError, match="no driftline metadata: say its task"):
        OnnxModel.from_bytes(plain)
    with pytest.raises(ArtifactError, match="needs 2 distinct"):
        OnnxModel(plain, task="binary")  # three classes in the graph
    data = OnnxModel(plain, task="multiclass").to_bytes()
    for corrupt in (data[: len(data) // 2], b"\x08\x07garbage", b"", data[1:]):
        with pytest.raises(ArtifactError, match="not a valid ONNX model|not an ONNX model"):
            OnnxModel.from_bytes(corrupt)
    with pytest.raises(ArtifactError, match="malformed artifact: neither an .npz"):
        kinds.from_file(b"hello")
    with pytest.raises(ArtifactError, match="not a valid ONNX model"):
        kinds.from_file(data[: len(data) // 2])
    _, reg_data, _ = regression()
    with pytest.raises(ArtifactError, match="3 feature_names for input 'X' of 4 columns"):
        OnnxModel(reg_data, task="regression", feature_names=["a", "b", "c"])
    with pytest.raises(ArtifactError, match="'variable' has 1 columns of probabilities for 2"):
        OnnxModel(reg_data, task="binary")
    with pytest.raises(ArtifactError, match="'probabilities' has 3 columns; a regression"):
        OnnxModel(pipeline("multiclass", False)[1], task="regression")
    # Hostile metadata is checked against the graph like given arguments.
    facts = {"format": "driftline.onnx/1", "task": "regression", "feature_names": ["a"],
             "output": "variable"}
    lying = reg_data + onnx_meta.entry(json.dumps(facts))
    with pytest.raises(ArtifactError, match="1 feature_names for input"):
        OnnxModel.from_bytes(lying)
    with pytest.raises(ArtifactError, match="not a driftline.onnx/1 JSON object"):
        OnnxModel.from_bytes(reg_data + onnx_meta.entry("[1, 2]"))
    # For an .npz the options may only repeat what the file says.
    npz = LinearModel([1.0], 0.0, ["x"]).to_bytes()
    assert kinds.from_file(npz, task="regression", feature_names=["x"]).kind == "linear"
    with pytest.raises(ArtifactError, match="task 'binary' disagrees with the linear model"):
        kinds.from_file(npz, task="binary")


def test_without_onnxruntime_driftline_works_and_the_kind_names_the_extra():
    _, data, _ = regression()
    probe = textwrap.dedent('''
        import sys
        sys.modules["onnxruntime"] = None   # as if it were not installed
        import driftline
        from driftline import ArtifactError, LinearModel
        from driftline.models import kinds, onnx_meta
        m = LinearModel([1.0], 0.0, ["x"])
        assert kinds.from_file(m.to_bytes()) == m and kinds.get("onnx").__name__ == "OnnxModel"
        try:
            kinds.load("onnx", sys.stdin.buffer.read())
        except ArtifactError as exc:
            print(exc)
    ''')
    out = subprocess.run([sys.executable, "-c", probe], input=data, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().strip() == (
        "the onnx model kind needs onnxruntime: pip install 'driftline[onnx]'")


@pytest.mark.integration
def test_registry_model_client_and_cli(stack, tmp_path):
    prefix = f"onnx{uuid.uuid4().hex[:8]}:"
    registry = ModelRegistry.from_url(stack.redis_url, prefix=prefix)
    pipe, plain, X = pipeline("multiclass", False)
    try:
        model = OnnxModel(plain, task="multiclass")
        v = registry.register("colours", model, metrics={"log_loss": 0.2})
        registry.promote("colours", v)
        info = registry.get("colours", v)
        assert (info.kind, info.task) == ("onnx", "multiclass")
        loaded = registry.load("colours")
        assert loaded == model and loaded.version == v and loaded.meta["kind"] == "onnx"
        with ModelClient(registry, "colours", start=False) as client:
            assert client.task == "multiclass" and client.classes == pipe.classes_.tolist()
            row = rows(X[:1])[0]
            assert client.predict(row) == pipe.predict(X[:1])[0]
            assert sum(client.predict_proba(row).values()) == pytest.approx(1)
            assert client.predict(X).tolist() == pipe.predict(X).tolist()
        refuses_a_tampered_artifact(registry, "colours", v)
    finally:
        registry.close()

    env = {"DRIFTLINE_REDIS_URL": stack.redis_url, "DRIFTLINE_REGISTRY_PREFIX": prefix}

    def run(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(main, ["models", *args], env=env)
        assert result.exit_code == code, result.output
        return result.output

    bpipe, bplain, bX = pipeline("binary", True)
    (tmp_path / "fraud.onnx").write_bytes(bplain)
    assert "--task" in run("register", "fraud", str(tmp_path / "fraud.onnx"), code=1)
    assert json.loads(run("register", "fraud", str(tmp_path / "fraud.onnx"), "--task", "binary",
                          "--promote", "--json")) == {
        "model": "fraud", "version": 1, "promoted": True}
    shown = json.loads(run("show", "fraud", "--version", "1", "--json"))
    assert (shown["kind"], shown["task"]) == ("onnx", "binary")
    assert run("show", "fraud").splitlines()[1].split()[:3] == ["1", "onnx", "active"]
    with ModelClient.from_url(stack.redis_url, "fraud", prefix=prefix, start=False) as client:
        np.testing.assert_allclose(client.predict(bX), bpipe.predict_proba(bX)[:, 1], **TOL)
        assert client.predict_class(rows(bX[:1])[0]) in (0, 1)
    (tmp_path / "bad.onnx").write_bytes(bplain[: len(bplain) // 2])
    assert "error: not a valid ONNX model" in run("register", "fraud",
                                                  str(tmp_path / "bad.onnx"), "--task",
                                                  "binary", code=1)
    (tmp_path / "m.npz").write_bytes(LinearModel([1.0], 0.0, ["x"]).to_bytes())
    assert "disagrees with the linear model" in run("register", "h", str(tmp_path / "m.npz"),
                                                    "--task", "binary", code=1)


def test_shadow_scoring_reads_an_onnx_challengers_string_features_from_the_pairs():
    """A challenger with a string input is scored from the pairs' raw features (the
    categories as they came), not from numbers; a pair with a null there is left out."""
    from driftline.agents.monitor.shadow import Shadow, pair_losses

    pipe, data, X = pipeline("multiclass", False)
    model = OnnxModel(data, task="multiclass")
    assert model.takes_rows and not OnnxModel(regression()[1], task="regression").takes_rows
    labels = pipe.predict(X).tolist()
    pairs = [{"model": "m", "version": 1, "features": row, "label": label,
              "prediction": "blue", "probabilities": {"blue": 0.5, "green": 0.3, "red": 0.2},
              "error": None, "ts": 1.0, "label_ts": 1.0}
             for row, label in zip(rows(X[:300]), labels[:300])]
    pairs[0]["features"] = {**pairs[0]["features"], "city": None}
    mine, theirs, index = pair_losses(model, pairs, "log_loss")
    assert index.tolist() == list(range(1, 300))
    assert mine.mean() < 0.3 < theirs.mean()

    verdict = Shadow(Source({2: model}, (2, 0.0)), pairs=200).observe(pairs)[0]
    assert verdict.action == "promote" and "shadow_log_loss" in verdict.metrics


def test_a_canary_against_an_onnx_champion_scores_it_from_the_raw_rows():
    """The canary judges a new version against the champion scored on the same pairs: here
    the champion is an ONNX pipeline with a string input, and a canary serving confident
    wrong classes is rolled back by log loss."""
    from driftline.agents.monitor.canary import Canary

    pipe, data, X = pipeline("multiclass", False)
    champion = OnnxModel(data, task="multiclass")
    labels, raw = pipe.predict(X).tolist(), rows(X)

    def pairs(version: int, start: int, stop: int, bad: bool) -> list[dict]:
        out = []
        for i in range(start, stop):
            p = ({"blue": 0.1, "green": 0.1, "red": 0.8} if bad
                 else champion.predict_proba(raw[i]))
            out.append({"model": "m", "version": version, "prediction_id": f"p{i}",
                        "features": raw[i], "label": labels[i],
                        "prediction": max(p, key=p.get), "probabilities": p, "error": None,
                        "ts": float(i), "label_ts": float(i)})
        return out

    canary = Canary(Source({1: champion}), pairs=200, margin=0.1)
    verdicts = canary.observe(pairs(1, 0, 10, False) + pairs(2, 10, 400, True))
    assert [v.action for v in verdicts] == ["rollback"]
    m = verdicts[0].metrics
    assert m["reference_log_loss"] < 0.3 < 1.0 < m["canary_log_loss"]
    # A canary serving what the champion serves passes, with the same loss as its own.
    kept = Canary(Source({1: champion}), pairs=200, margin=0.1)
    [verdict] = kept.observe(pairs(1, 0, 10, False) + pairs(2, 10, 400, False))
    assert verdict.action == "passed"
    assert verdict.metrics["canary_log_loss"] == pytest.approx(
        verdict.metrics["reference_log_loss"], rel=1e-4)  # onnxruntime computes in float32


def forest_onnx(X, y, feature_names):
    """A user's training function that returns an ONNX model: a gradient-boosted tree
    ensemble from scikit-learn, converted with skl2onnx."""
    fitted = GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=0).fit(X, y)
    onx = to_onnx(fitted, X[:1].astype(np.float32))
    return OnnxModel(onx.SerializeToString(), task="regression",
                     feature_names=list(feature_names))


@pytest.mark.integration
def test_a_training_function_may_return_an_onnx_model_and_every_kind_is_checksummed(
        settings):
    """Issue 34: the trainer registers and promotes what a training function returns as
    an ONNX graph, with its reference; a tampered artifact of any kind is refused."""
    import asyncio

    from kafka_io import create_topics
    from test_trainer import pairs_of, put_pairs, request, trainer_for

    from driftline.simulate import World, bootstrap

    create_topics(settings)
    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    try:
        world = World("feature-shift", drift_at=0, seed=3)  # x1^2: trees beat the line
        bootstrap(registry, "houses", world)
        put_pairs(settings, pairs_of(world, 0, 2000, champion=registry.load("houses")))
        trainer = trainer_for(settings.replace(trainer="test_onnx:forest_onnx"), registry)
        outcome = asyncio.run(trainer.handle(request(since=0.0)))
        assert (outcome.version, outcome.promoted) == (2, True), outcome.reason
        v2 = registry.load("houses")
        assert v2.kind == "onnx" and v2.meta["explanation"] is None
        assert v2.meta["reference"]["rows"] == 1600  # its training rows
        assert v2.meta["holdout"]["challenger_mse"] < 0.8 * v2.meta["holdout"]["champion_mse"]
        for version in (1, 2):  # linear, onnx: the checksum is checked on every load
            refuses_a_tampered_artifact(registry, "houses", version)
    finally:
        registry.close()
