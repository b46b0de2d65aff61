"""The trainer against real Kafka and Redis: data window, lineage, idempotence, failures."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest
from kafka_io import agent_sender, as_messages, create_topics, produce, read_all

from driftline import ConfigError, LinearModel, ModelRegistry, RegistryUnavailable
from driftline.agents.retrain.trainer import Trainer, TrainingFailed, load_train_fn
from driftline.agents.retrain.training_data import recent_pairs
from driftline.kafka import partition_for
from driftline.simulate import World, bootstrap

pytestmark = pytest.mark.integration


def pairs_of(world: World, start: int, stop: int, model: str = "houses", version: int = 1,
             champion: LinearModel | None = None) -> list[dict]:
    X, y = world.rows(start, stop)
    y_hat = champion.predict(X) if champion is not None else np.zeros(len(y))
    return [{"prediction_id": f"{model}-{i}", "model": model, "version": version,
             "prediction": float(p), "label": float(t), "error": float(p - t),
             "features": dict(zip(world.names, row)), "ts": float(i), "label_ts": float(i)}
            for i, row, p, t in zip(range(start, stop), X.tolist(), y_hat, y)]


def put_pairs(settings, pairs: list[dict], per_record: int = 50) -> None:
    """Pairs on monitor-input as the join writes them: on their model's partition."""
    by_partition: dict[int, list] = {}
    for i, pair in enumerate(pairs):
        q = partition_for(pair["model"].encode(), settings.partitions)
        by_partition.setdefault(q, []).append({"k": "s", "s": [0, i], "e": [pair]})
    for q, elements in by_partition.items():
        produce(settings, [("monitor_input", None, orjson.dumps(elements[i:i + per_record]))
                           for i in range(0, len(elements), per_record)], partition=q)


def request(rid="r-1", since=None, model="houses"):
    return {"request_id": rid, "model": model, "base_version": 1, "alert_id": "a-1",
            "reason": "test", "ts": 1.0, "since": since}


@pytest.fixture
def registry(settings):
    events: list[dict] = []
    reg = ModelRegistry.from_url(settings.redis_url, prefix=settings.registry_prefix)
    reg.on_event = events.append
    reg.recorded = events
    yield reg
    reg.close()


def trainer_for(settings, registry, send=None):
    return Trainer(settings, registry, load_train_fn(settings.trainer), send, max_delay=0.2)


def test_recent_pairs_reads_back_only_the_window(settings):
    settings = settings.replace(partitions=1)
    create_topics(settings)
    world = World(drift_at=None, seed=3)
    mine = pairs_of(world, 0, 3000)
    other = pairs_of(world, 0, 3000, model="other")
    put_pairs(settings, [p for pair in zip(mine, other) for p in pair])
    put_pairs(settings, mine[2990:])  # re-forwarded after a route crash

    window = asyncio.run(recent_pairs(settings, "houses", since=1000.0))
    assert [p["label_ts"] for p in window.pairs] == [float(i) for i in range(1000, 3000)]
    assert window.duplicates == 10 and window.older_skipped > 0
    assert window.first_offset > 0  # it did not read the whole partition

    window = asyncio.run(recent_pairs(settings, "houses", max_pairs=500))
    assert [p["label_ts"] for p in window.pairs] == [float(i) for i in range(2500, 3000)]
    assert asyncio.run(recent_pairs(settings, "nobody")).pairs == []


def test_trains_registers_with_lineage_and_promotes_once(settings, registry):
    create_topics(settings)
    world = World("abrupt", drift_at=0, seed=4)  # every streamed row is after the drift
    assert bootstrap(registry, "houses", world) == 1
    v1 = registry.load("houses")
    put_pairs(settings, pairs_of(world, 0, 2000, champion=v1))
    trainer = trainer_for(settings, registry)

    outcome = asyncio.run(trainer.handle(request(since=0.0)))
    assert (outcome.version, outcome.promoted, outcome.trained) == (2, True, True)
    assert registry.resolve("houses") == 2
    v2 = registry.load("houses")
    assert v2.feature_names == v1.feature_names
    np.testing.assert_allclose(v2.predict(np.array([[1.0, 0.0, 0.0]]) ) -
                               v2.predict(np.array([[0.0, 0.0, 0.0]])), 3.0, atol=0.15)
    meta = v2.meta
    assert meta["parent_version"] == 1 and meta["request_id"] == "r-1"
    assert meta["alert_id"] == "a-1" and meta["base_version"] == 1
    assert meta["data"]["pairs"] == 2000 and meta["data"]["since"] == 0.0
    assert meta["data"]["first_label_ts"] == 0.0 and meta["data"]["last_label_ts"] == 1999.0
    assert meta["metrics"]["train_rows"] == 1600 and meta["metrics"]["holdout_rows"] == 400
    assert meta["holdout"]["challenger_mse"] < 0.98 * meta["holdout"]["champion_mse"]
    assert meta["baseline_mse"] == meta["holdout"]["challenger_mse"]
    assert meta["training"]["method"] == "closed_form" and meta["training_seconds"] > 0
    assert meta["decision"] == "promote"

    again = asyncio.run(trainer.handle(request(since=0.0)))
    assert (again.version, again.trained) == (2, False)
    assert [v.version for v in registry.versions("houses")] == [1, 2]
    assert [(e["event"], e["version"]) for e in registry.recorded] == [
        ("registered", 1), ("promoted", 1), ("registered", 2), ("promoted", 2)]
    assert registry.recorded[2]["request_id"] == "r-1"
    assert registry.recorded[2]["metrics"]["champion_mse"] == meta["holdout"]["champion_mse"]


def test_a_challenger_that_does_not_win_is_registered_as_rejected(settings, registry):
    create_topics(settings)
    world = World("abrupt", drift_at=None, seed=6)  # no drift: v1 is as good as it gets
    bootstrap(registry, "houses", world)
    put_pairs(settings, pairs_of(world, 0, 1500, champion=registry.load("houses")))
    outcome = asyncio.run(trainer_for(settings, registry).handle(request()))
    assert (outcome.version, outcome.promoted) == (2, False)
    info = registry.get("houses", 2)
    assert info.status == "rejected" and "not 2% below the champion's" in outcome.reason
    assert info.meta["rejected_reason"] == outcome.reason
    assert registry.resolve("houses") == 1
    assert [e["event"] for e in registry.recorded][-1] == "rejected"


@pytest.mark.reliability
def test_a_promotion_cut_off_by_a_redis_outage_is_completed_not_repeated(settings, registry):
    create_topics(settings)
    world = World("abrupt", drift_at=0, seed=7)
    bootstrap(registry, "houses", world)
    put_pairs(settings, pairs_of(world, 0, 1500, champion=registry.load("houses")))
    real_promote = registry.promote
    failures = []

    def promote_after_an_outage(*args, **kwargs):
        if not failures:
            failures.append(args)
            raise RegistryUnavailable("Redis is unreachable: connection refused")
        return real_promote(*args, **kwargs)

    registry.promote = promote_after_an_outage
    outcome = asyncio.run(trainer_for(settings, registry).handle(request(since=0.0)))
    assert failures and registry.resolve("houses") == 2
    assert (outcome.version, outcome.trained) == (2, False)  # finished by the retry
    actions = [(h["action"], h["version"]) for h in registry.history("houses")]
    assert actions == [("registered", 1), ("promoted", 1), ("registered", 2), ("promoted", 2)]


def mean_only(X, y, feature_names):
    """A user's training function: predicts the mean."""
    return LinearModel(np.zeros(len(feature_names)), float(np.mean(y)), list(feature_names))


def not_a_model(X, y, feature_names):
    return {"coef": [1.0]}


def shuffled_names(X, y, feature_names):
    return LinearModel(np.zeros(len(feature_names)), 0.0, list(reversed(feature_names)))


def test_a_pluggable_training_function_and_bad_ones(settings, registry):
    create_topics(settings)
    world = World("abrupt", drift_at=None, seed=8)
    put_pairs(settings, pairs_of(world, 0, 500))
    custom = settings.replace(trainer="test_trainer:mean_only")
    outcome = asyncio.run(trainer_for(custom, registry).handle(request()))
    assert outcome.promoted  # no champion yet: the first model wins
    model = registry.load("houses")
    assert np.all(model.coef == 0) and model.meta["trainer"] == "test_trainer:mean_only"

    with pytest.raises(ConfigError, match="cannot be imported"):
        load_train_fn("test_trainer:nothing_here")
    with pytest.raises(ConfigError, match="cannot be imported"):
        load_train_fn("no_such_module:train")
    junk = settings.replace(trainer="test_trainer:not_a_model")
    with pytest.raises(TrainingFailed, match="returned dict: dict is not a model kind"):
        asyncio.run(trainer_for(junk, registry).handle(request("r-2")))
    shuffled = settings.replace(trainer="test_trainer:shuffled_names")
    with pytest.raises(TrainingFailed, match=r"features \['x2', 'x1', 'x0'\], not the"):
        asyncio.run(trainer_for(shuffled, registry).handle(request("r-3")))


def test_requests_it_cannot_train_go_to_the_dead_letter_topic(settings, registry):
    create_topics(settings)
    world = World("abrupt", drift_at=None, seed=9)
    put_pairs(settings, pairs_of(world, 0, 5))

    async def run():
        async with agent_sender(settings) as send:
            trainer = trainer_for(settings, registry, send)
            await trainer.process(as_messages(
                [orjson.dumps(request("few")), b'{"request_id": 7}'],
                topic=settings.topic("retrain"), partition=0, key=b"houses"))

    asyncio.run(run())
    dead = sorted((orjson.loads(r.value) for r in read_all(settings, "deadletter")),
                  key=lambda d: d["offset"])
    assert [d["error"].split(":")[0] for d in dead] == ["training_failed", "wrong_type"]
    assert "5 usable pairs" in dead[0]["error"] and dead[0]["offset"] == 0
    assert registry.models() == []


def test_with_promotion_shadow_a_winner_becomes_the_challenger_not_the_champion(settings,
                                                                               registry):
    settings = settings.replace(promotion="shadow")
    create_topics(settings)
    world = World("abrupt", drift_at=0, seed=4)
    bootstrap(registry, "houses", world)
    put_pairs(settings, pairs_of(world, 0, 2000, champion=registry.load("houses")))
    trainer = trainer_for(settings, registry)
    outcome = asyncio.run(trainer.handle(request(since=0.0)))
    assert (outcome.version, outcome.promoted, outcome.trained) == (2, False, True)
    assert registry.aliases("houses") == {"champion": 1, "challenger": 2}
    info = registry.get("houses", 2)
    assert info.status == "active" and info.meta["decision"] == "shadow"
    assert [(e["event"], e["version"]) for e in registry.recorded][2:] == [
        ("registered", 2), ("shadowing", 2)]
    # A re-delivery whose alias a crash cut off sets it; one that finds it set does nothing.
    registry.delete_alias("houses", "challenger")
    assert asyncio.run(trainer.handle(request(since=0.0))).trained is False
    assert registry.resolve("houses", "challenger") == 2
    asyncio.run(trainer.handle(request(since=0.0)))
    assert [e["event"] for e in registry.recorded].count("shadowing") == 2
    assert registry.resolve("houses") == 1


def class_pairs_of(world: World, start: int, stop: int, champion, model: str) -> list[dict]:
    """Scored pairs of a classifier as the join writes them: a binary model's P(1) and its
    error, a multiclass one's class with its probabilities and no error."""
    from driftline.simulate import served, truth

    X, y = world.rows(start, stop)
    predictions, probabilities = served(champion, X)
    pairs = []
    for i, row, p, t in zip(range(start, stop), X.tolist(), predictions, y):
        label = truth(t)
        pair = {"prediction_id": f"{model}-{i}", "model": model, "version": 1,
                "prediction": p, "label": label,
                "error": p - label if world.task == "binary" else None,
                "features": dict(zip(world.names, row)), "ts": float(i), "label_ts": float(i)}
        if probabilities is not None:
            pair["probabilities"] = probabilities[i - start]
        pairs.append(pair)
    return pairs


@pytest.mark.parametrize("scenario, kind, baseline_metric", [
    ("binary", "logistic", "brier"), ("multiclass", "softmax", "error_rate")])
def test_a_classifier_is_retrained_as_a_classifier_and_judged_by_log_loss(
        settings, registry, scenario, kind, baseline_metric):
    """Issue 33: the task comes from the champion (the monitor config gives none here); the
    challenger is the same kind of classifier, promoted on holdout log loss, with the
    baseline the monitor's rolling metric measures."""
    from driftline.models.losses import model_losses

    create_topics(settings)
    world = World(scenario, drift_at=0, seed=4)
    assert bootstrap(registry, "m", world) == 1
    v1 = registry.load("m")
    assert v1.kind == kind
    put_pairs(settings, class_pairs_of(world, 0, 3000, v1, "m"))
    outcome = asyncio.run(trainer_for(settings, registry).handle(
        request(since=0.0, model="m")))
    assert (outcome.version, outcome.promoted) == (2, True), outcome.reason
    assert "holdout log loss" in outcome.reason
    v2 = registry.load("m")
    info = registry.get("m", 2)
    assert (v2.kind, info.kind, info.task) == (kind, kind, world.task)
    meta = v2.meta
    assert meta["holdout"]["metric"] == "log_loss"
    assert meta["holdout"]["challenger_log_loss"] < 0.98 * meta["holdout"]["champion_log_loss"]
    assert set(meta["metrics"]) >= {"log_loss", "champion_log_loss"}
    assert meta["selection"]["kept"] and meta["explanation"]["features"]
    # The baseline is what the monitor's rolling metric measures, on the holdout rows.
    X, y = world.rows(2400, 3000)
    assert meta["baseline_mse"] == pytest.approx(
        float(np.mean(model_losses(v2, X, y, baseline_metric))), rel=1e-9)
    # The new world, learnt: better than v1 on fresh rows by the task's own metric.
    X, y = world.rows(5000, 8000)
    new, old = (float(np.mean(model_losses(m, X, y, baseline_metric))) for m in (v2, v1))
    assert new < 0.8 * old, (new, old)
    print(f"\n{scenario}: v1 {baseline_metric} {old:.3f} -> v2 {new:.3f}; holdout log loss "
          f"{meta['holdout']['champion_log_loss']:.3f} -> "
          f"{meta['holdout']['challenger_log_loss']:.3f}")


def test_the_monitor_config_task_picks_the_classifier_for_a_linear_champion(settings,
                                                                            registry):
    """A binary model whose champion was registered as a linear model (ridge on 0/1
    labels, what the trainer did before issue 33) is retrained as a logistic one once the
    monitor config says binary; a function that returns the wrong task is refused."""
    create_topics(settings)
    world = World("binary", drift_at=0, seed=5)
    X, y = World("binary", drift_at=None, seed=6).rows(0, 2000)
    ridge = LinearModel(np.linalg.lstsq(np.c_[X, np.ones(len(X))], y, rcond=None)[0][:3],
                        float(y.mean()), world.names)
    registry.promote("m", registry.register("m", ridge))
    pairs = class_pairs_of(world, 0, 2000, ridge, "m")
    for pair in pairs:  # ridge predictions outside [0, 1] are refused by the join
        pair["prediction"] = min(max(pair["prediction"], 0.0), 1.0)
        pair["error"] = pair["prediction"] - pair["label"]
    put_pairs(settings, pairs)
    trainer = Trainer(settings, registry, load_train_fn(settings.trainer), max_delay=0.2,
                      tasks=lambda model: "binary")
    outcome = asyncio.run(trainer.handle(request(since=0.0, model="m")))
    assert outcome.promoted and "a regression model, not comparable" in outcome.reason
    assert registry.load("m").kind == "logistic"
    wrong = Trainer(settings.replace(trainer="test_trainer:mean_only"), registry,
                    load_train_fn("test_trainer:mean_only"), max_delay=0.2,
                    tasks=lambda model: "binary")
    with pytest.raises(TrainingFailed, match="returned a regression model .linear. for m, a "
                                             "binary model"):
        asyncio.run(wrong.handle(request("r-2", since=0.0, model="m")))


def low_cut(X, y, feature_names, task=None):
    """A training function that returns the cut world's LOW_CUT, whatever the rows."""
    from simulate import LOW_CUT
    return LOW_CUT


@pytest.mark.parametrize("threshold, promoted", [(0.3, True), (0.5, False)],
                         ids=["threshold=0.3", "threshold=0.5"])
def test_the_holdout_error_rate_of_a_binary_model_is_at_its_decision_threshold(
        settings, registry, threshold, promoted):
    """DRIFTLINE_PROMOTION_METRIC=error_rate: the challenger LOW_CUT against the champion
    HALF_CUT on the cut world wins at the decision_threshold 0.3 the monitor config gives
    the model, and loses at 0.5 (before, the holdout cut at 0.5 whatever the config said)."""
    from simulate import HALF_CUT, cut_pairs

    from driftline.agents.monitor.config import MonitorConfig

    settings = settings.replace(trainer="test_trainer:low_cut", promotion_metric="error_rate")
    create_topics(settings)
    registry.promote("churn", registry.register("churn", HALF_CUT))
    put_pairs(settings, cut_pairs(HALF_CUT, 1, 1000))
    config = MonitorConfig.from_dict(
        {"models": {"churn": {"task": "binary", "decision_threshold": threshold}}})
    trainer = Trainer(settings, registry, low_cut, max_delay=0.2,
                      tasks=lambda model: config.for_model(model).kind,
                      thresholds=config.decision_threshold)
    outcome = asyncio.run(trainer.handle(request(since=0.0, model="churn")))
    assert outcome.promoted is promoted, outcome.reason
    holdout = registry.get("churn", 2).meta["holdout"]
    assert holdout["metric"] == "error_rate"
    mine, theirs = holdout["challenger_error_rate"], holdout["champion_error_rate"]
    if promoted:
        assert mine == 0.0 and theirs > 0.05, holdout
    else:
        assert mine > 0.05 and theirs == 0.0, holdout


def mixed_pairs(n: int, seed: int, champion=None, model: str = "flats") -> list[dict]:
    """Pairs whose truth depends on a category (city), with x missing in 10 % of rows and a
    boolean; predicted by ``champion`` (numbers only) or 0."""
    rng = np.random.default_rng(seed)
    effect = {"Lyon": 0.0, "Paris": 4.0, "Nice": -3.0}
    pairs = []
    for i in range(n):
        x = float(rng.normal())
        city = str(rng.choice(list(effect)))
        lift = bool(rng.random() < 0.5)
        y = 2 * x + effect[city] + (1.5 if lift else 0.0) + float(rng.normal(0, 0.5))
        features = {"x": None if rng.random() < 0.1 else x, "city": city, "lift": lift}
        p = (float(champion.predict([x])) if champion is not None and
             features["x"] is not None else 0.0)
        pairs.append({"prediction_id": f"{model}-{i}", "model": model, "version": 1,
                      "prediction": p, "label": y, "error": p - y, "features": features,
                      "ts": float(i), "label_ts": float(i)})
    return pairs


def test_categories_and_missing_values_are_encoded_and_retrained_end_to_end(settings,
                                                                            registry):
    """Issue 34: a model with a categorical feature, a boolean and missing values is
    retrained with them (an encoded kind), promoted over a numbers-only champion, and
    serves raw rows through the registry, ModelClient and shadow scoring."""
    from driftline import ModelClient
    from driftline.agents.monitor.shadow import pair_losses

    create_topics(settings)
    v1 = LinearModel([2.0], 0.0, ["x"])
    registry.promote("flats", registry.register("flats", v1))
    put_pairs(settings, mixed_pairs(3000, seed=1, champion=v1))
    outcome = asyncio.run(trainer_for(settings, registry).handle(
        request(since=0.0, model="flats")))
    assert (outcome.version, outcome.promoted) == (2, True), outcome.reason
    v2 = registry.load("flats")
    assert (v2.kind, v2.inner.kind, v2.task) == ("encoded", "linear", "regression")
    assert v2.feature_names == ["x", "city", "lift"]  # the champion's first
    meta = v2.meta
    assert [c["name"] for c in meta["encoding"]] == ["x", "city", "lift"]
    assert meta["encoding"][0] == {"name": "x", "type": "numeric", "indicator": True,
                                   "fill": pytest.approx(0.0, abs=0.1)}
    assert meta["data"]["dropped_rows"] == 0  # missing x: imputed, not dropped
    assert meta["holdout"]["challenger_mse"] < 0.2 * meta["holdout"]["champion_mse"]
    # The effects it learnt, from raw rows: a city, a boolean, a missing value, an unseen city
    base = {"x": 1.0, "city": "Lyon", "lift": False}
    paris = v2.predict({**base, "city": "Paris"}) - v2.predict(base)
    lift = v2.predict({**base, "lift": True}) - v2.predict(base)
    assert paris == pytest.approx(4.0, abs=0.2) and lift == pytest.approx(1.5, abs=0.2)
    assert np.isfinite(v2.predict({"x": None, "city": "Marseille", "lift": True}))
    names = [f["feature"] for f in meta["explanation"]["features"]]
    assert "city=Paris" in names and "x=_missing" in names
    # Shadow scoring scores every pair from its raw features, missing x included.
    pairs = mixed_pairs(200, seed=2, champion=v1)
    mine, theirs, index = pair_losses(v2, pairs, "mse")
    assert len(index) == 200 and mine.mean() < 0.2 * theirs.mean()
    with ModelClient(registry, "flats", start=False) as client:
        assert client.predict(base) == v2.predict(base)


def test_a_training_pipeline_outside_driftline_gets_the_window_and_registers(settings,
                                                                             registry):
    """Issue 34: an external trainer, another process, subscribed to the retrain topic
    (docs/examples/external_trainer.py, the script the docs show): `driftline pairs export`
    gives it the drifted window, `driftline models register --promote` takes its model."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    create_topics(settings)
    world = World("abrupt", drift_at=0, seed=14)
    bootstrap(registry, "houses", world)
    old = pairs_of(World("abrupt", drift_at=None, seed=14), 0, 1000,
                   champion=registry.load("houses"))
    new = [{**p, "ts": p["ts"] + 1000, "label_ts": p["label_ts"] + 1000}
           for p in pairs_of(world, 1000, 2500, champion=registry.load("houses"))]
    put_pairs(settings, old + new)
    produce(settings, [("retrain", b"houses", orjson.dumps(request(since=2000.0)))])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env.update(settings.as_env())
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    script = Path(__file__).parent.parent / "docs" / "examples" / "external_trainer.py"
    done = subprocess.run([sys.executable, str(script), "houses"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = orjson.loads(done.stderr.strip().splitlines()[0])
    assert summary["pairs"] == 1500 and summary["first_label_ts"] == 2000.0  # the window only
    assert registry.resolve("houses") == 2
    v2 = registry.load("houses")
    assert v2.meta["metrics"]["mse"] < 1.5 and "external retrain for r-1" in \
        registry.history("houses")[-1]["reason"]
    assert v2.meta["reference"] == {"rows": 1500, "labelled": 1500, "source": "reference.jsonl"}
    # y = 3 x0 + 1 after the drift: the external fit learnt it
    assert v2.predict([1.0, 0.0, 0.0]) - v2.predict([0.0, 0.0, 0.0]) == pytest.approx(3.0,
                                                                                      abs=0.15)
