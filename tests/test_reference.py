"""Reference profiles (issue 34): a version's references from where it was trained, stored
in the registry, used by the monitor and by replay; what they change in an already-shifted
world."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from driftline import ArtifactError, LinearModel, ModelRegistry
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.eventfile import read_reference
from driftline.models.reference import profile, rows_of, with_predictions
from driftline.replay import References
from driftline.simulate import World, event_log, initial_model

CONFIG = MonitorConfig.from_dict({"defaults": {"estimation": {"enabled": False}}})


def events(world: World, start: int, stop: int, model: LinearModel, version: int = 1):
    X, y = world.rows(start, stop)
    cities = np.array(["lyon", "paris", "nice"])[np.arange(start, stop) % 3]
    return [{"prediction_id": f"p{i}", "model": "m", "version": version,
             "prediction": float(p), "features": {**dict(zip(world.names, row)), "city": c},
             "ts": float(i)}
            for i, row, p, c in zip(range(start, stop), X.tolist(), model.predict(X), cities)]


def as_rows(evts):
    return [{"features": e["features"], "prediction": e["prediction"]} for e in evts]


def test_a_profile_fits_the_same_references_as_the_first_production_events():
    """The profile's rows take the path production events take: the same edges, expected
    shares, category counts and limits; then the same production stream gives the same
    alerts and statistics."""
    world = World("abrupt", drift_at=None, seed=3)
    model = LinearModel([2.0, 0.0, 0.0], 0.0, world.names)
    first, later = events(world, 0, 1000, model), events(world, 1000, 4000, model)
    plain = Monitor(CONFIG)
    plain.process_predictions(first)
    warmed = Monitor(CONFIG, References({("m", 1): as_rows(first)}))
    a, b = plain.versions[("m", 1)], warmed.version("m", 1)  # (no features given: the profile's)
    assert b.reference_source == "profile" and a.reference_source == "first events"
    for x, y in ((a.data_drift.detector, b.data_drift.detector),
                 (a.prediction_drift.detector, b.prediction_drift.detector)):
        assert x.edges and all(np.array_equal(e, f) for e, f in zip(x.edges, y.edges))
        assert np.array_equal(x.expected, y.expected) and np.array_equal(x.reference,
                                                                           y.reference)
    assert a.categorical_drift is not None and b.categorical_drift is not None
    assert a.report()["calibration"] == b.report()["calibration"]  # the same limits
    shifted = [{**e, "features": {**e["features"], "x1": e["features"]["x1"] + 1.0,
                                  "city": "paris"}} for e in later]
    alerts_a = plain.process_predictions(shifted)
    alerts_b = warmed.process_predictions(shifted)
    assert [x["alert_id"] for x in alerts_a] == [x["alert_id"] for x in alerts_b]
    assert {x["feature"] for x in alerts_a} >= {"x1", "city"}
    assert a.report()["psi"] == b.report()["psi"]
    assert b.report()["reference"] == "profile" and b.n_predictions == 3000


def training_profile(model, seed: int) -> dict:
    """The profile of 2,000 rows of the feature-shift world before its shift, with the
    model's predictions and their labels: where a v1 was trained."""
    before = World("feature-shift", drift_at=None, seed=seed)
    X, y = before.rows(0, 2000)
    return profile(with_predictions([{"features": dict(zip(before.names, row)),
                                      "label": float(t)} for row, t in zip(X.tolist(), y)],
                                    model), source="training")


def replay_with(profile_rows, log):
    from driftline.eventfile import Row
    from driftline.replay import Replay

    rows = [Row(i, "prediction" if "prediction" in e else "label", e)
            for i, e in enumerate(log, 1)]
    refs = {("houses", 1): profile_rows} if profile_rows else None
    return Replay(MonitorConfig(), references=refs).feed(rows).finish()


def test_in_an_already_shifted_world_only_the_training_reference_sees_the_drift():
    """Issue 34's measure: a version deployed where x1 has already moved by +2 (the
    feature-shift world from its first prediction). Against its first production
    predictions nothing is ever different; against its training rows the shift is seen."""
    world = World("feature-shift", drift_at=0, seed=5)
    log = list(event_log(world, 6000))
    model, _ = initial_model(world)
    training = training_profile(model, seed=6)
    plain = replay_with(None, log)
    warmed = replay_with(training["rows"], log)
    def kinds(result):
        return [a for a in result.alerts if a["kind"] in ("data_drift", "prediction_drift")]

    assert kinds(plain) == []
    found = kinds(warmed)
    assert found and found[0]["feature"] in ("x1", "prediction"), found
    # event_log's prediction i is stamped start + i / 100 s: the prediction that fired
    first = round((found[0]["ts"] - log[0]["ts"]) * 100) + 1
    print(f"\nalready shifted world: {found[0]['alert_id']} after {first:,} predictions "
          f"with the training reference; never in 6,000 without it")
    # The reference is whole before the first prediction: the first window (1,000) is
    # checked, and the next check (250 later) makes the two in a row that fire.
    assert first == 1_000 + 250
    assert warmed.versions["houses v1"]["reference"] == "profile"


def test_replay_takes_a_reference_for_every_version_a_model_or_one_version(tmp_path):
    """``driftline replay FILE --reference DATA`` as the contract writes it, and its
    narrower forms, on the already-shifted world: the plain file applies to every version,
    a more specific one wins, and a malformed target says what is expected."""
    from click.testing import CliRunner

    from driftline.cli import main

    world = World("feature-shift", drift_at=0, seed=5)
    log = tmp_path / "log.jsonl"
    log.write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in event_log(world, 3000)))
    model, _ = initial_model(world)
    training = tmp_path / "train.jsonl"
    training.write_text("".join(json.dumps(r) + "\n"
                                for r in training_profile(model, seed=6)["rows"]))
    shifted = tmp_path / "shifted.jsonl"  # the log's own world: nothing differs from it
    X, _ = world.rows(0, 2000)
    shifted.write_text("".join(json.dumps({"features": dict(zip(world.names, row))}) + "\n"
                               for row in X.tolist()))

    def replay(*references: str) -> dict:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        args = ["replay", str(log), "--out", str(out)]
        for ref in references:
            args += ["--reference", ref]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        summary = json.loads((out / "summary.json").read_text())
        alerts = json.loads((out / "alerts.json").read_text())
        return {"reference": summary["versions"]["houses v1"]["reference"],
                "drift": sorted({a["feature"] for a in alerts if a["kind"] == "data_drift"})}

    assert replay() == {"reference": "first events", "drift": []}
    assert replay(str(training)) == {"reference": "profile", "drift": ["x1"]}
    assert replay(f"houses={training}")["drift"] == ["x1"]
    assert replay(f"other={training}")["drift"] == []
    # The version's own reference is more specific than the file's: it wins.
    assert replay(str(training), f"houses:1={shifted}") == {"reference": "profile",
                                                            "drift": []}
    result = CliRunner().invoke(main, ["replay", str(log), "--reference", "houses:v1=x"])
    assert result.exit_code == 2 and "MODEL:VERSION=FILE" in result.output


def test_reference_files_and_what_is_refused(tmp_path):
    (tmp_path / "r.csv").write_text("x,city,prediction,label\n1.5,lyon,2.0,2.5\n2.0,,3.0,\n")
    (tmp_path / "r.jsonl").write_text('{"features": {"x": 1.5, "city": "lyon"}, '
                                      '"prediction": 2.0, "label": 2.5}\n'
                                      '{"x": 2.0, "city": null, "prediction": 3.0}\n')
    csv_rows, jsonl_rows = read_reference(tmp_path / "r.csv"), read_reference(tmp_path / "r.jsonl")
    assert csv_rows[0] == jsonl_rows[0] == {"features": {"x": 1.5, "city": "lyon"},
                                            "prediction": 2.0, "label": 2.5}
    p = profile(jsonl_rows, source="r.jsonl")
    assert p["summary"]["features"]["city"]["missing_share"] == 0.5
    assert rows_of(json.loads(json.dumps(p))) == p["rows"]
    (tmp_path / "bad.jsonl").write_text('{"x": 1.0}\n{"x": [1, 2]}\n')
    with pytest.raises(ValueError, match="line 2: features.x"):
        read_reference(tmp_path / "bad.jsonl")
    with pytest.raises(ArtifactError, match="not a reference profile"):
        rows_of({"rows": []})
    with pytest.raises(ArtifactError, match="at least one row"):
        profile([], source="empty")


@pytest.mark.integration
def test_the_registry_keeps_a_versions_profile_and_the_cli_registers_one(stack, tmp_path):
    from click.testing import CliRunner

    from driftline.cli import main

    prefix = f"r{uuid.uuid4().hex[:8]}:"
    (tmp_path / "m.npz").write_bytes(LinearModel([2.0], 1.0, ["x"]).to_bytes())
    (tmp_path / "ref.jsonl").write_text("".join(
        json.dumps({"x": float(i), "label": 2.0 * i + 1}) + "\n" for i in range(50)))
    env = {"DRIFTLINE_REDIS_URL": stack.redis_url, "DRIFTLINE_REGISTRY_PREFIX": prefix}
    result = CliRunner().invoke(main, ["models", "register", "m", str(tmp_path / "m.npz"),
                                       "--reference", str(tmp_path / "ref.jsonl"), "--json"],
                                env=env)
    assert result.exit_code == 0, result.output
    registry = ModelRegistry.from_url(stack.redis_url, prefix=prefix)
    try:
        info = registry.get("m", 1)
        assert info.meta["reference"] == {"rows": 50, "labelled": 50, "source": "ref.jsonl"}
        document = registry.reference("m", 1)
        rows = rows_of(document)
        assert rows[3] == {"features": {"x": 3.0}, "prediction": 7.0, "label": 7.0}  # predicted
        assert document["summary"]["prediction"]["type"] == "numeric"
        assert registry.reference("m", 1) is not None and registry.versions("m")[0].meta[
            "reference"]["labelled"] == 50
        v2 = registry.register("m", LinearModel([1.0], 0.0, ["x"]))
        assert registry.reference("m", v2) is None
        with pytest.raises(ArtifactError):
            registry.register("m", LinearModel([1.0], 0.0, ["x"]), reference={"rows": []})
        assert [v.version for v in registry.versions("m")] == [1, 2]  # nothing half-written
    finally:
        registry.close()
    bad = CliRunner().invoke(main, ["models", "register", "m", str(tmp_path / "m.npz"),
                                    "--reference", str(tmp_path / "m.npz")], env=env)
    assert bad.exit_code == 2 and "--reference" in bad.output


@pytest.mark.integration
def test_a_live_worker_measures_drift_against_the_registered_training_reference(
        settings, worker_factory):
    """The worker reads v1's profile from the registry when it meets v1, and an
    already-shifted world alerts within the first window (without it: never)."""
    import asyncio
    import time

    import orjson
    from kafka_io import create_topics, read_all

    from driftline import ModelClient, Publisher
    from driftline.simulate import ProductionService

    settings = settings.replace(metrics_interval=0.5)
    create_topics(settings)
    world = World("feature-shift", drift_at=0, seed=8)   # x1 +2 from the first prediction
    model, mse = initial_model(world)
    reference = training_profile(model, seed=9)
    registry = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    registry.promote("houses", registry.register("houses", model, metrics={"mse": mse},
                                                 reference=reference))
    registry.close()
    worker = worker_factory(settings)
    client = ModelClient.from_url(settings.redis_url, "houses", prefix=settings.registry_prefix)
    try:
        async def serve():
            async with Publisher(settings=settings) as pub:
                service = ProductionService(pub, lambda: client.model, world, model="houses",
                                            label_delay=100)
                await service.run(2_000)

        asyncio.run(serve())
        deadline, found = time.monotonic() + 60, []
        while time.monotonic() < deadline and not found:
            found = [a for a in (orjson.loads(r.value) for r in read_all(settings, "alerts"))
                     if a["kind"] == "data_drift"]
            time.sleep(0.5)
        assert found and found[0]["feature"] == "x1", worker.log()
        records = [orjson.loads(r.value) for r in read_all(settings, "metrics")]
        assert any(r.get("reference") == "profile" for r in records if r.get("version") == 1)
    finally:
        client.close()


def test_a_profiles_labelled_rows_set_the_error_tests_bins():
    """A regression's concept-drift test bins its squared errors at the quantiles of its
    reference's: a profile with labels gives them before the first production pair."""
    from driftline.agents.monitor.changepoint import QUANTILES

    world = World("abrupt", drift_at=None, seed=3)
    model = LinearModel([2.0, 0.0, 0.0], 0.0, world.names)
    X, y = world.rows(0, 1000)
    predictions = model.predict(X)
    rows = [{"features": dict(zip(world.names, row)), "prediction": float(p), "label": float(t)}
            for row, p, t in zip(X.tolist(), predictions, y)]
    warmed = Monitor(CONFIG, References({("m", 1): rows})).version("m", 1)
    plain = Monitor(CONFIG).version("m", 1)
    squared = (predictions - y) ** 2
    assert warmed.concept.detector.params["bins"] == 5
    assert "bins" not in plain.concept.detector.params
    assert np.allclose(warmed.concept.detector._glr.edges,
                       np.append(np.quantile(squared, QUANTILES), squared.max()))
