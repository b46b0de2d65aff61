"""Classifiers (issue 33, first part): class predictions and labels with probabilities on the
wire; binary metrics with ROC AUC and PR AUC; multiclass metrics, concept drift on the 0/1
error and prediction drift on the predicted class; pairs that do not fit their task refused
visibly (counted, in Prometheus, dead-lettered), live as replay says."""

from __future__ import annotations

import time
import urllib.request
from collections import Counter

import msgspec
import numpy as np
import orjson
import pytest
from kafka_io import create_topics, produce, read_all
from river import metrics as river_metrics
from simulate import ANIMALS, softmax_pairs

from driftline.agents.join.state import make_scored
from driftline.agents.monitor.classes import average_precision, binary_report, roc_auc
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.eventfile import read_events
from driftline.models.wire import ALERT, LABEL, PREDICTION, array
from driftline.ports import free_port
from driftline.replay import Replay

CLASSES = ANIMALS
MULTICLASS = MonitorConfig.from_dict({"models": {"zoo": {"task": "multiclass"}}})


def sigmoid_stream(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(float)
    return y, 1 / (1 + np.exp(-(1.5 * (y - 0.3) + rng.normal(0, 1, n))))


def test_roc_auc_is_rivers_rolling_roc_auc_and_pr_auc_is_average_precision():
    y, p = sigmoid_stream(3_000, seed=1)
    window = 1_000
    river_auc = river_metrics.RollingROCAUC(window_size=window)
    river_pr = river_metrics.RollingPRAUC(window_size=window)
    for yi, pi in zip(y.tolist(), p.tolist()):
        river_auc.update(bool(yi), pi)
        river_pr.update(bool(yi), pi)
    y, p = y[-window:], p[-window:]
    assert roc_auc(y, p) == pytest.approx(river_auc.get(), abs=1e-12)
    # PR AUC is average precision: the precision at each positive, averaged (no ties here).
    order = np.argsort(-p)
    hits = y[order] == 1
    precision_at = np.cumsum(hits) / np.arange(1, len(y) + 1)
    assert average_precision(y, p) == pytest.approx(precision_at[hits].mean(), abs=1e-12)
    # River interpolates its PR curve: a different number, as the docs say.
    assert abs(average_precision(y, p) - river_pr.get()) < 0.02
    # the decision threshold moves the thresholded metrics, not the curves
    low, high = binary_report(p, y, 0.2), binary_report(p, y, 0.8)
    assert low["rolling_recall"] > high["rolling_recall"]
    assert low["rolling_roc_auc"] == high["rolling_roc_auc"]
    assert low["rolling_brier"] == pytest.approx(np.mean((p - y) ** 2))


def zoo_pairs(n: int, seed: int, accuracy: float = 0.8, wrong_from: int | None = None,
              shift_from: int | None = None) -> tuple[list[dict], list[dict]]:
    """A 4-class model's predictions (with probabilities) and labels: right ``accuracy``
    of the time; from ``wrong_from`` on right a third as often; from ``shift_from`` on
    the true classes (and so the predictions) shift towards "owl"."""
    rng = np.random.default_rng(seed)
    predictions, labels = [], []
    for i in range(n):
        shares = [0.4, 0.3, 0.2, 0.1] if shift_from is None or i < shift_from else \
            [0.1, 0.2, 0.3, 0.4]
        truth = CLASSES[rng.choice(4, p=shares)]
        good = accuracy if wrong_from is None or i < wrong_from else accuracy / 3
        guess = truth if rng.random() < good else CLASSES[rng.integers(4)]
        rest = (1 - 0.7) / 3
        probabilities = {c: (0.7 if c == guess else rest) for c in CLASSES}
        pid = f"z{i}"
        predictions.append({"prediction_id": pid, "model": "zoo", "version": 1,
                            "prediction": guess, "probabilities": probabilities,
                            "features": {"x": float(rng.normal())}, "ts": float(i)})
        labels.append({"prediction_id": pid, "label": truth, "ts": float(i) + 0.5})
    return predictions, labels


def scored(predictions: list[dict], labels: list[dict]) -> list[dict]:
    """The pairs as the join makes them (its make_scored), as dicts."""
    return [msgspec.to_builtins(make_scored(PREDICTION.validate(p), LABEL.validate(lab),
                                            p["ts"], lab["ts"]))
            for p, lab in zip(predictions, labels)]


def test_a_multiclass_model_gets_its_metrics_and_its_pairs_carry_classes():
    predictions, labels = zoo_pairs(3_000, seed=2)
    pairs = scored(predictions, labels)
    assert pairs[0]["error"] is None and pairs[0]["label"] in CLASSES
    assert set(pairs[0]["probabilities"]) == set(CLASSES)
    monitor = Monitor(MULTICLASS)
    monitor.process_predictions(predictions)
    monitor.process_pairs(pairs)
    report = monitor.versions[("zoo", 1)].report()
    window = pairs[-1_000:]
    right = [p["prediction"] == p["label"] for p in window]
    assert report["task"] == "multiclass" and report["n_scored"] == 3_000
    assert report["rolling_accuracy"] == pytest.approx(np.mean(right))
    assert report["rolling_mse"] == pytest.approx(1 - np.mean(right))  # the 0/1 error rate
    p_true = [p["probabilities"][p["label"]] for p in window]
    assert report["rolling_log_loss"] == pytest.approx(-np.mean(np.log(p_true)))
    assert set(report["per_class"]) == set(CLASSES)
    cat = report["per_class"]["cat"]
    tp = sum(p["prediction"] == p["label"] == "cat" for p in window)
    assert cat["support"] == sum(p["label"] == "cat" for p in window)
    assert cat["recall"] == pytest.approx(tp / cat["support"])
    assert cat["precision"] == pytest.approx(tp / sum(p["prediction"] == "cat" for p in window))
    assert 0 < report["rolling_macro_f1"] <= 1 and 0 < report["rolling_weighted_f1"] <= 1
    assert "refused_pairs" not in report


def test_a_multiclass_report_does_not_depend_on_the_order_its_classes_came():
    """Classes are codes inside the monitor, numbered as they first come: the same pairs
    after the same predictions in another order (as a worker rebuilt after a kill, or a
    replay, may see them) give the same rolling numbers. (The MAE and R^2 of the codes
    did not: they are left out for a multiclass model.)"""
    predictions, labels = zoo_pairs(2_000, seed=8)
    pairs = scored(predictions, labels)
    reports = []
    for order in (predictions, predictions[::-1]):
        monitor = Monitor(MULTICLASS)
        monitor.process_predictions(order)
        monitor.process_pairs(pairs)
        reports.append(monitor.versions[("zoo", 1)].report())
    forward, backward = reports
    assert forward["per_class"] == backward["per_class"]
    rolling = sorted(k for k in forward if k.startswith("rolling_"))
    assert {k: forward[k] for k in rolling} == pytest.approx(  # (macro F1: sums by code)
        {k: backward[k] for k in rolling}, abs=1e-12)
    assert forward["rolling_mae"] is forward["rolling_r2"] is None
    assert forward["rolling_mse"] == pytest.approx(1 - forward["rolling_accuracy"])


def run_zoo(predictions, labels, monitor=None):
    monitor = monitor or Monitor(MULTICLASS)
    pairs = scored(predictions, labels)
    alerts = []
    for start in range(0, len(pairs), 500):
        alerts += monitor.process_predictions(predictions[start:start + 500])
        alerts += monitor.process_pairs(pairs[start:start + 500])
    for alert in alerts:
        ALERT.validate(alert)
    return alerts


def test_a_multiclass_model_that_goes_wrong_fires_concept_drift_on_its_error_rate():
    alerts = run_zoo(*zoo_pairs(12_000, seed=3, wrong_from=6_000))
    concept = [a for a in alerts if a["kind"] == "concept_drift" and a["status"] == "firing"]
    assert concept and 6_000 < concept[0]["metrics"]["n_scored"] < 7_000
    assert "error rate" in concept[0]["message"]
    # (random guesses also move the predicted classes: prediction drift may fire too)


def test_shifting_classes_fire_prediction_drift_by_chi_square():
    alerts = run_zoo(*zoo_pairs(12_000, seed=4, shift_from=6_000))
    drift = [a for a in alerts if a["kind"] == "prediction_drift" and a["status"] == "firing"]
    assert drift and drift[0]["detector"] == "chi2" and drift[0]["feature"] is None
    assert 6_000 < drift[0]["ts"] < 8_000


def test_a_stationary_multiclass_stream_raises_nothing():
    assert run_zoo(*zoo_pairs(20_000, seed=5)) == []


def test_pairs_that_do_not_fit_the_task_are_refused_by_reason():
    predictions, labels = zoo_pairs(10, seed=6)
    pairs = scored(predictions, labels)
    numbers = [{**p, "prediction": 1.0, "label": 2.0, "error": -1.0, "prediction_id": f"n{i}"}
               for i, p in enumerate(pairs[:3])]
    monitor = Monitor(MULTICLASS)
    monitor.process_pairs(pairs + numbers)
    vm = monitor.versions[("zoo", 1)]
    assert vm.rolling.count == 10 and vm.refusals.counts == {"number_prediction": 3}
    # a regression model given classes
    regression = Monitor(MonitorConfig())
    regression.process_pairs([{**p, "model": "zoo"} for p in pairs])
    assert regression.versions[("zoo", 1)].refusals.counts == {"class_prediction": 10}


OUTCOMES = [0.0, 1.0, 0.5, -0.5, 1.5, 3.0, 1e200, -1e200, "cat", "dog"]


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_the_joins_check_of_one_pair_agrees_with_the_monitors_count(task):
    """The join dead-letters what the monitor counts: refusal() on each pair and
    Refusals.valid() on all of them together refuse the same pairs for the same reasons."""
    from driftline.agents.monitor.refusals import refusal
    config = MonitorConfig.from_dict({"defaults": {"task": task}})
    pairs = [{"prediction_id": f"{i}-{j}", "model": "m", "version": 1, "prediction": y,
              "label": t, "error": None, "features": {}, "ts": 0.0, "label_ts": 0.0}
             for i, y in enumerate(OUTCOMES) for j, t in enumerate(OUTCOMES)]
    monitor = Monitor(config)
    monitor.process_pairs(pairs)
    expected = Counter(r for p in pairs if (r := refusal(task, p["prediction"], p["label"])))
    assert monitor.versions[("m", 1)].refusals.counts == expected
    assert monitor.versions[("m", 1)].rolling.count == len(pairs) - sum(expected.values())


@pytest.mark.integration
def test_classes_stream_through_the_worker_as_replay_says(settings, worker_factory, tmp_path):
    """A multiclass model's predictions (arrays of 50, with probabilities) and labels (one
    by one) through a live worker: the scored pairs carry the classes, the metrics record
    the multiclass metrics, the alerts equal replay's; a regression model sent classes has
    its pairs refused: counted on the metrics topic and in Prometheus, dead-lettered."""
    config = tmp_path / "monitor.toml"
    config.write_text('[models.zoo]\ntask = "multiclass"\n')
    port = free_port()
    settings = settings.replace(partitions=1, metrics_interval=0.5, monitor_config=str(config),
                                web_port=port)
    predictions, labels = zoo_pairs(6_000, seed=7, wrong_from=3_000)
    wrong = [{**p, "model": "houses", "prediction_id": f"h{i}"}
             for i, p in enumerate(predictions[:20])]
    wrong_labels = [{**lab, "prediction_id": f"h{i}"} for i, lab in enumerate(labels[:20])]
    log = [e for pair in zip(predictions, labels) for e in pair]
    offline = Replay(MonitorConfig.load(config)).feed(
        read_events([orjson.dumps(e).decode() for e in log])).finish()

    create_topics(settings)
    worker = worker_factory(settings)
    produce(settings, [("predictions", None, array([orjson.dumps(e) for e in
                                                     predictions[i:i + 50]]))
                       for i in range(0, len(predictions), 50)]
            + [("labels", e["prediction_id"].encode(), orjson.dumps(e)) for e in labels]
            + [("predictions", e["prediction_id"].encode(), orjson.dumps(e)) for e in wrong]
            + [("labels", e["prediction_id"].encode(), orjson.dumps(e))
               for e in wrong_labels])
    deadline = time.monotonic() + 120
    records: dict = {}
    dead: list = []
    while time.monotonic() < deadline:  # (a metrics record may go out before the dead letters)
        records = {m["model"]: m for m in (orjson.loads(r.value)
                                           for r in read_all(settings, "metrics"))}
        dead = [orjson.loads(r.value) for r in read_all(settings, "deadletter")]
        if records.get("zoo", {}).get("n_scored") == 6_000 and len(dead) >= 20 and \
                sum(records.get("houses", {}).get("refused_pairs", {}).values()) == 20:
            break
        time.sleep(1)
    zoo, houses = records.get("zoo", {}), records.get("houses", {})
    assert zoo.get("n_scored") == 6_000 and zoo["task"] == "multiclass", (zoo, worker.log())
    assert 0 < zoo["rolling_accuracy"] < 1 and set(zoo["per_class"]) == set(CLASSES)
    assert houses.get("refused_pairs") == {"class_prediction": 20}, (houses, worker.log())
    assert len(dead) == 20, (dead, worker.log())
    assert sorted(orjson.loads(d["raw"])["prediction_id"] for d in dead) == sorted(
        f"h{i}" for i in range(20)), dead[:2]
    assert {d["error"] for d in dead} == {
        "refused_pair: class_prediction: the pair does not fit houses's task (regression)"}

    # Prometheus: the classifier's metrics, and the refusals by reason
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'driftline_classifier_metric{metric="rolling_accuracy",model="zoo",version="1"}' \
        in text
    assert 'driftline_classifier_metric{metric="estimated_accuracy",model="zoo",version="1"}' \
        in text
    assert ('driftline_monitor_refused_pairs_total{model="houses",reason="class_prediction",'
            'version="1"} 20.0') in text

    streamed = [orjson.loads(r.value) for r in read_all(settings, "alerts")]

    def key(a):
        return (a["alert_id"], a["kind"], a["status"], a["ts"])

    assert any(a["kind"] == "concept_drift" for a in streamed)
    assert sorted(map(key, offline.alerts)) == sorted(
        map(key, [a for a in streamed if a["model"] == "zoo"]))
    scored_pairs = [p for r in read_all(settings, "scored")
                    for p in (orjson.loads(r.value) if r.value.startswith(b"[")
                              else [orjson.loads(r.value)])]
    zoo_scored = [p for p in scored_pairs if p["model"] == "zoo"]
    assert len(zoo_scored) == 6_000
    assert all(p["error"] is None and p["label"] in CLASSES and
               set(p["probabilities"]) == set(CLASSES) for p in zoo_scored)


@pytest.mark.parametrize("seed", range(5))
def test_multiclass_cbpe_estimates_accuracy_and_macro_f1_within_0_05(seed):
    """NannyML's multiclass CBPE: on a stationary stream, the estimate (from the
    predictions' probabilities alone) is within 0.05 of the realised accuracy and macro F1
    over the same window. The seeds are bench/class_estimation.py's (its table, in
    docs/concepts/classifiers.md, has the errors)."""
    predictions, labels = softmax_pairs(6_000, seed=10 + seed)
    monitor = Monitor(MULTICLASS)
    alerts = run_zoo(predictions, labels, monitor=monitor)
    report = monitor.versions[("zoo", 1)].report()
    assert report["estimator"] == "cbpe" and alerts == []
    assert abs(report["estimated_accuracy"] - report["rolling_accuracy"]) < 0.05, report
    assert abs(report["estimated_macro_f1"] - report["rolling_macro_f1"]) < 0.05, report
    # the probabilities were overconfident: uncalibrated, they say something else
    window = predictions[-1_000:]
    naive = np.mean([max(p["probabilities"].values()) for p in window])
    assert abs(naive - report["rolling_accuracy"]) > 0.05


def test_multiclass_cbpe_sees_a_shift_to_harder_inputs_before_the_labels():
    predictions, labels = softmax_pairs(12_000, seed=20, shift_from=6_000)
    monitor = Monitor(MULTICLASS)
    alerts = []
    for start in range(0, 12_000, 500):  # predictions only after the reference's labels
        alerts += monitor.process_predictions(predictions[start:start + 500])
        if start < 3_000:
            alerts += monitor.process_pairs(scored(predictions[start:start + 500],
                                                   labels[start:start + 500]))
    estimated = [a for a in alerts if a["kind"] == "estimated_degradation"
                 and a["status"] == "firing"]
    assert estimated and 6_000 < estimated[0]["ts"] < 8_000, alerts
    # the estimate follows the realised accuracy of the labels that never came
    report = monitor.versions[("zoo", 1)].report()
    realised = np.mean([p["prediction"] == lab["label"]
                        for p, lab in zip(predictions[-1_000:], labels[-1_000:])])
    assert abs(report["estimated_accuracy"] - realised) < 0.05, (report, realised)


def test_probabilities_that_name_different_classes_line_up_by_class():
    """Events whose probabilities name other classes, or in another order, or none: each
    value lands in its class's column (the fast path is for the same classes everywhere)."""
    from driftline.agents.monitor.categories import Vocabulary
    from driftline.agents.monitor.columns import Columns
    cols = Columns([], classes=Vocabulary(8))
    same = cols.probabilities([{"probabilities": {"a": 0.6, "b": 0.4}},
                               {"probabilities": {"b": 0.1, "a": 0.9}}])
    assert same.tolist() == [[0.6, 0.4], [0.9, 0.1]]
    mixed = cols.probabilities([{"probabilities": {"a": 0.6, "b": 0.4}}, {},
                                {"probabilities": {"c": 1.0}}])
    assert cols.classes.labels() == ["a", "b", "c"]
    assert np.nan_to_num(mixed, nan=-1).tolist() == [[0.6, 0.4, -1], [-1, -1, -1],
                                                      [0.0, 0.0, 1.0]]


def test_a_class_is_never_a_monitor_input_column_even_one_that_reads_as_a_number():
    """monitor-input's columns hold numbers: a batch with one class, "3" included (numpy
    would read it as 3.0), stays format 1 and comes back as sent."""
    from driftline.models.wire.internal import (
        PREDICTIONS,
        SCORED,
        columnar_element,
        decode_elements,
    )
    predictions = [PREDICTION.validate({"prediction_id": f"p{i}", "model": "m",
                                        "prediction": "3" if i == 5 else float(i),
                                        "features": {"x": 1.0}, "ts": 1.0})
                   for i in range(40)]
    assert columnar_element(PREDICTIONS, 0, 0, "m", predictions) is None
    numbers = [PREDICTION.validate({**msgspec.to_builtins(p), "prediction": 1.0})
               for p in predictions]
    element = columnar_element(PREDICTIONS, 0, 0, "m", numbers)
    assert element is not None and decode_elements(b"[" + element + b"]")[0].columnar
    labels = [LABEL.validate({"prediction_id": p.prediction_id,
                              "label": "7" if i == 9 else 1.0}) for i, p in enumerate(numbers)]
    pairs = [make_scored(p, lab, 1.0, 2.0) for p, lab in zip(numbers, labels)]
    assert pairs[9].error is None and columnar_element(SCORED, 0, 0, "m", pairs) is None
    pairs[9] = make_scored(numbers[9], LABEL.validate({"prediction_id": "p9", "label": 1.0}),
                           1.0, 2.0)
    assert columnar_element(SCORED, 0, 0, "m", pairs) is not None


def test_the_join_finds_the_refused_pairs_in_one_pass_where_every_model_is_a_regression():
    """Tasks.refused: with regressions only, a numpy pass over the errors finds the pairs
    with a class (no error) or an overflowing error; with a classifier configured every
    pair of it is checked. Either way the reasons are refusal()'s."""
    from driftline.agents.monitor.refusals import Tasks

    def pair(i, y, t):
        return make_scored(PREDICTION.validate({"prediction_id": f"p{i}", "model": "m",
                                                "prediction": y}),
                           LABEL.validate({"prediction_id": f"p{i}", "label": t}), 1.0, 2.0)
    pairs = [pair(0, 1.0, 2.0), pair(1, "cat", 2.0), pair(2, 1e200, -1e200),
             pair(3, 0.5, 3.0), pair(4, 1.0, "dog")]
    found = Tasks(MonitorConfig()).refused(pairs)
    assert [(p.prediction_id, why, task) for p, why, task in found] == [
        ("p1", "class_prediction", "regression"), ("p2", "error_not_finite", "regression"),
        ("p4", "class_label", "regression")]
    binary = Tasks(MonitorConfig.from_dict({"models": {"m": {"task": "binary"}}}))
    assert [(p.prediction_id, why) for p, why, _ in binary.refused(pairs)] == [
        ("p0", "label_not_0_or_1"), ("p1", "class_prediction"),
        ("p2", "label_not_0_or_1"), ("p3", "label_not_0_or_1"), ("p4", "class_label")]


def test_the_trainers_read_back_drops_class_labels_it_cannot_fit():
    """The trainer reads the scored topic, where a multiclass model's pairs carry class
    labels now: its linear model leaves them out as rows it cannot use (a class "3"
    included, which float() would have read as 3), and keeps the numbers."""
    from driftline.models.training import rows_to_arrays
    predictions, labels = zoo_pairs(6, seed=1)
    pairs = scored(predictions, labels)
    pairs[0]["label"] = "3"
    pairs[1]["label"] = 2.5
    X, y, dropped = rows_to_arrays(pairs, ["x"])
    assert y.tolist() == [2.5] and X.shape == (1, 1) and dropped == 5


def test_shadow_scoring_leaves_out_pairs_its_linear_model_cannot_score():
    """A challenger is scored on the live pairs: a class label (a multiclass model's) or a
    category where the challenger reads a number leaves the pair out, it does not stop the
    monitor partition (squared errors raised on both before)."""
    from driftline.agents.monitor.shadow import pair_losses
    from driftline.models.linear import LinearModel
    model = LinearModel([2.0], 0.0, ["x"])
    pairs = [{"features": {"x": 1.0}, "label": 2.5, "error": 0.5},
             {"features": {"x": 1.0}, "label": "cat", "error": None},
             {"features": {"x": "DE"}, "label": 1.0, "error": 0.0},
             {"features": {"x": 3.0}, "label": 6.0, "error": 1.0}]
    mine, theirs, index = pair_losses(model, pairs, "mse")
    assert index.tolist() == [0, 3] and mine.tolist() == [0.25, 0.0]
    assert theirs.tolist() == [0.25, 1.0]
