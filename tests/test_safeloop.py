"""Shadow scoring and the canary, pure: verdicts from the order of the pairs alone."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.agents.monitor.canary import Canary
from driftline.agents.monitor.safeloop import alert_for
from driftline.agents.monitor.shadow import Shadow, pair_losses
from driftline.models.linear import LinearModel
from driftline.models.wire import ALERT

TRUE = LinearModel([3.0], 1.0, ["x"])       # the world: y = 3x + 1 (+ noise)
BAD = LinearModel([-3.0], 1.0, ["x"])


class Source:
    """A registry stand-in: versions 1..n with models and holdout MSEs."""

    def __init__(self, models, holdout=None, challenger=None):
        self.models = models
        self.holdout = holdout or {}
        self.current = challenger
        self.loads = 0

    def load(self, model, version):
        self.loads += 1
        return self.models.get(version)

    def holdout_mse(self, model, version):
        return self.holdout.get(version)

    def challenger(self, model):
        return self.current


def pairs(served_by: LinearModel, version: int, n: int, start: int = 0, seed: int = 0,
          model: str = "m"):
    rng = np.random.default_rng(seed + start)
    x = rng.normal(size=n)
    y = 3.0 * x + 1.0 + rng.normal(0, 0.5, n)
    yhat = served_by.predict(x[:, None])
    return [{"prediction_id": f"{model}-{start + i}", "model": model, "version": version,
             "prediction": float(p), "label": float(t), "error": float(p - t),
             "features": {"x": float(v)}, "ts": float(start + i),
             "label_ts": float(start + i)} for i, (v, p, t) in enumerate(zip(x, yhat, y))]


def feed(watcher, stream, chunk=37):
    verdicts = []
    for i in range(0, len(stream), chunk):
        verdicts.extend(watcher.observe(stream[i:i + chunk]))
    return verdicts


def test_pair_losses_skip_pairs_without_the_models_features():
    stream = pairs(TRUE, 1, 5)
    stream[2]["features"] = {"other": 1.0}
    mine, served, index = pair_losses(BAD, stream, "mse")
    assert len(mine) == len(served) == 4 and index.tolist() == [0, 1, 3, 4]
    np.testing.assert_allclose(served, [p["error"] ** 2 for i, p in enumerate(stream) if i != 2])


def test_a_bad_promotion_is_rolled_back_after_exactly_the_canary_pairs():
    canary = Canary(Source({1: TRUE, 2: BAD}), pairs=300, margin=0.1)
    stream = pairs(TRUE, 1, 1000) + pairs(BAD, 2, 500, start=1000)
    verdicts = feed(canary, stream)
    assert [(v.action, v.version, v.previous) for v in verdicts] == [("rollback", 2, 1)]
    m = verdicts[0].metrics
    assert m["pairs"] == 300 and m["canary_mse"] > 10 * m["reference_mse"]
    assert 0.15 < m["reference_mse"] < 0.35  # v1's shadow score on v2's pairs: the noise
    assert verdicts[0].ts == 1299.0  # the 300th pair of v2 decided it
    assert "v2's live MSE" in verdicts[0].reason and "v1's shadow MSE" in verdicts[0].reason


def test_a_good_promotion_passes_and_the_old_version_returning_starts_no_canary():
    canary = Canary(Source({1: BAD, 2: TRUE}), pairs=300, margin=0.1)
    stream = pairs(BAD, 1, 400) + pairs(TRUE, 2, 400, start=400) + pairs(BAD, 1, 400, start=800)
    assert [(v.action, v.version) for v in feed(canary, stream)] == [("passed", 2)]
    assert set(canary.runs) == {("m", 2)}


def test_the_reference_is_the_holdout_mse_when_the_old_model_cannot_be_loaded():
    canary = Canary(Source({2: BAD}, holdout={1: 0.25}), pairs=100, margin=0.1)
    verdict, = feed(canary, pairs(TRUE, 1, 50) + pairs(BAD, 2, 200, start=50))
    assert verdict.action == "rollback" and verdict.metrics["reference_mse"] == 0.25
    assert "holdout MSE" in verdict.reason


def test_within_the_margin_is_no_rollback():
    slightly = LinearModel([3.0], 1.2, ["x"])  # bias 0.2: MSE 0.25 -> 0.29, 16 % worse
    assert feed(Canary(Source({1: TRUE}), pairs=2000, margin=0.25),
                pairs(TRUE, 1, 10) + pairs(slightly, 2, 2000, start=10))[0].action == "passed"
    assert feed(Canary(Source({1: TRUE}), pairs=2000, margin=0.1),
                pairs(TRUE, 1, 10) + pairs(slightly, 2, 2000, start=10))[0].action == "rollback"


def test_a_replay_reaches_the_same_verdict_whatever_the_batching():
    stream = pairs(TRUE, 1, 700) + pairs(BAD, 2, 700, start=700)
    first = feed(Canary(Source({1: TRUE, 2: BAD}), pairs=500), stream, chunk=500)
    second = feed(Canary(Source({1: TRUE, 2: BAD}), pairs=500), stream, chunk=7)
    assert len(first) == len(second) == 1
    a, b = first[0], second[0]
    assert (a.action, a.version, a.previous, a.ts, a.metrics["pairs"]) == (
        b.action, b.version, b.previous, b.ts, b.metrics["pairs"])
    assert a.metrics == pytest.approx(b.metrics)  # the sums' order differs, not the pairs


def test_canary_pairs_0_turns_it_off():
    assert feed(Canary(Source({1: TRUE, 2: BAD}), pairs=0),
                pairs(TRUE, 1, 10) + pairs(BAD, 2, 100, start=10)) == []


def test_shadow_promotes_a_challenger_that_beats_the_live_model_on_the_same_pairs():
    source = Source({2: TRUE}, challenger=(2, 500.0))
    shadow = Shadow(source, pairs=400, margin=0.02)
    verdicts = feed(shadow, pairs(BAD, 1, 1200))
    assert [(v.action, v.version) for v in verdicts] == [("promote", 2)]
    m = verdicts[0].metrics
    assert m["pairs"] == 400 and m["shadow_mse"] < m["live_mse"] / 10
    assert verdicts[0].ts == 899.0  # pairs labelled before the alias was set do not count
    report, = shadow.reports()
    assert (report["version"], report["n"], report["verdict"]) == (2, 400, "promote")


def test_shadow_rejects_a_challenger_that_is_no_better():
    shadow = Shadow(Source({2: BAD}, challenger=(2, 0.0)), pairs=300, margin=0.02)
    verdict, = feed(shadow, pairs(TRUE, 1, 500))
    assert verdict.action == "reject" and "is not 2% below the live" in verdict.reason


def test_a_new_challenger_starts_a_new_shadow_and_none_stops_it():
    source = Source({2: BAD, 3: TRUE}, challenger=(2, 0.0))
    shadow = Shadow(source, pairs=1000)
    feed(shadow, pairs(TRUE, 1, 300))
    assert shadow.runs["m"].n == 300
    source.current = (3, 0.0)
    feed(shadow, pairs(TRUE, 1, 100, start=300))
    assert (shadow.runs["m"].version, shadow.runs["m"].n) == (3, 100)
    source.current = None
    assert feed(shadow, pairs(TRUE, 1, 100, start=400)) == [] and shadow.runs == {}


def test_the_rollback_alert_is_a_valid_promotion_regressed_alert():
    verdict, = feed(Canary(Source({1: TRUE, 2: BAD}), pairs=100),
                    pairs(TRUE, 1, 10) + pairs(BAD, 2, 100, start=10))
    alert = ALERT.validate(alert_for(verdict))
    assert (alert.kind, alert.status, alert.version) == ("promotion_regressed", "firing", 2)
    assert alert.alert_id == "m.v2.promotion_regressed.firing"
    assert alert.metrics["n_scored"] == 100 and alert.metrics["restored_version"] == 1
    assert "rolled back to v1" in alert.message


@pytest.mark.parametrize("bad", [{"x": float("nan")}, {}], ids=["nan", "missing"])
def test_pairs_the_reference_cannot_score_count_for_neither(bad):
    stream = pairs(TRUE, 1, 5) + pairs(BAD, 2, 60, start=5)
    for p in stream[10:20]:
        p["features"] = bad
    canary = Canary(Source({1: TRUE, 2: BAD}), pairs=50)
    verdict, = feed(canary, stream)
    assert verdict.metrics["pairs"] == 50 and verdict.ts == 64.0


def test_the_serving_version_is_known_with_the_canary_off_too():
    canary = Canary(Source({1: TRUE, 2: BAD}), pairs=0)
    canary.observe(pairs(TRUE, 1, 10) + pairs(BAD, 2, 10, start=10))
    assert canary.serving == {"m": 2} and canary.runs == {}


def test_reports_ride_on_the_serving_versions_metrics_record():
    from driftline.agents.monitor.safeloop import SafeLoop
    from driftline.observe import Observatory
    from driftline.settings import Settings

    loop = SafeLoop(Settings(canary_pairs=50, shadow_pairs=50), Source({1: TRUE, 2: BAD, 3: TRUE},
                                                                     challenger=(3, 0.0)))
    loop.observe(pairs(TRUE, 1, 20) + pairs(BAD, 2, 60, start=20))
    assert loop.serving("m") == 2
    [(model, reports)] = loop.by_model().items()
    assert model == "m" and {(r["role"], r["version"]) for r in reports} == {
        ("challenger", 3), ("canary", 2)}
    assert [v.action for v in loop.pending] == ["promote", "rollback"]
    obs = Observatory()
    obs.apply("metrics", {"model": "m", "version": 2, "rolling_mse": 9.0, "n_scored": 60,
                          "shadow": reports}, 5.0)
    assert obs.reports["m"][2]["n_scored"] == 60
    assert obs.shadow["m"][("canary", 2)]["verdict"] == "rollback"
    assert obs.shadow["m"][("challenger", 3)]["n"] == 50


def test_pairs_as_columns_reach_the_same_verdicts_making_dicts_only_while_watched(
        monkeypatch):
    """The worker's pairs come as columns (monitor-input format 2): the safe loop makes
    them dicts only for a chunk a canary or the shadow scores (or whose version is new),
    and reaches the verdicts the dicts reach."""
    from driftline.agents.monitor.safeloop import SafeLoop
    from driftline.models.wire import SCORED_PAIR, encode
    from driftline.models.wire.internal import SCORED, Columnar, columnar_element, decode_elements
    from driftline.settings import Settings

    settings = Settings().replace(canary_pairs=300, shadow_pairs=200)
    stream = (pairs(TRUE, 1, 1000) + pairs(BAD, 2, 600, start=1000)
              + pairs(TRUE, 1, 1000, start=1600))
    made: list[int] = []
    events = Columnar.events
    monkeypatch.setattr(Columnar, "events",
                        lambda self, kind: made.append(len(self)) or events(self, kind))
    loops = [SafeLoop(settings, Source({1: TRUE, 2: BAD})) for _ in range(2)]
    for i in range(0, len(stream), 50):
        chunk = stream[i:i + 50]
        loops[0].observe(chunk)
        value = columnar_element(SCORED, 0, i, "m",
                                 [SCORED_PAIR.decode_one(encode(p)) for p in chunk])
        loops[1].observe_columns(decode_elements(b"[" + value + b"]")[0].columns())
    by_dicts, by_columns = ([(v.action, v.version, v.ts, v.metrics) for v in loop.pending]
                            for loop in loops)
    assert by_columns == by_dicts
    assert [v[:2] for v in by_dicts] == [("rollback", 2)]
    assert loops[0].canary.serving == loops[1].canary.serving == {"m": 1}
    # Dicts for the first chunk (v1 new) and v2's chunks until its verdict; none for the
    # rest of v2 or for v1's return (seen before, no canary).
    assert sum(made) == 50 + 300
