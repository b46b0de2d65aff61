"""A binary model's ``decision_threshold`` reaches its estimated metrics (CBPE), its
concept-drift test and the ``error_rate`` its versions are judged by (holdout, shadow,
canary) as it does its realised metrics (the TOML's path: tests/test_cli_ops.py); the
per-class report's cap pools the rest as ``_other``."""

from __future__ import annotations

import numpy as np
import pytest
from simulate import HALF_CUT, LOW_CUT, binary_events, calibrated_binary, cut_pairs, cut_world

from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.models.training import decide
from driftline.settings import Settings

THRESHOLDED = ("accuracy", "precision", "recall", "f1")


def monitor_binary(threshold: float, predictions: list[dict], pairs: list[dict],
                   batch: int = 500) -> tuple[dict, list[dict]]:
    """The stream through a Monitor of a binary model at ``threshold``: its report and
    alerts."""
    config = MonitorConfig.from_dict(
        {"models": {"churn": {"task": "binary", "decision_threshold": threshold}}})
    monitor = Monitor(config)
    alerts = []
    for start in range(0, len(pairs), batch):
        alerts += monitor.process_predictions(predictions[start:start + batch])
        alerts += monitor.process_pairs(pairs[start:start + batch])
    return monitor.versions[("churn", 1)].report(), alerts


def test_binary_cbpe_reads_its_confusion_matrix_at_the_decision_threshold():
    """At threshold 0.3 the realised precision falls and the recall rises; the estimate
    (before, fixed at 0.5: recall 0.80 against a realised 0.92) follows them within 0.05,
    and moves from its 0.5 values the way the realised metrics move."""
    predictions, pairs = binary_events(*calibrated_binary(12_000, seed=3))
    at_half, alerts_half = monitor_binary(0.5, predictions, pairs)
    at_low, alerts_low = monitor_binary(0.3, predictions, pairs)
    assert alerts_half == [] and alerts_low == []
    for name in THRESHOLDED:
        for report in (at_half, at_low):
            assert report[f"estimated_{name}"] == pytest.approx(report[f"rolling_{name}"],
                                                                abs=0.05), (name, report)
    for name in ("precision", "recall"):
        realised = at_low[f"rolling_{name}"] - at_half[f"rolling_{name}"]
        estimated = at_low[f"estimated_{name}"] - at_half[f"estimated_{name}"]
        assert abs(realised) > 0.05 and estimated == pytest.approx(realised, abs=0.03), name
    # the threshold-free estimates stay as they were
    assert at_low["estimated_mse"] == at_half["estimated_mse"]


def band_flip(n: int, flip_at: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A calibrated binary model, except that from ``flip_at`` on every prediction in
    [0.3, 0.5) has label 0: at threshold 0.5 (predicted 0) it makes fewer mistakes there,
    at threshold 0.3 (predicted 1) more. Its Brier score falls either way."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, n)
    y = (rng.random(n) < p).astype(float)
    band = (p >= 0.3) & (p < 0.5) & (np.arange(n) >= flip_at)
    y[band] = 0.0
    return p, y


def test_binary_concept_drift_counts_the_mistakes_at_the_decision_threshold():
    """The error test reads the 0/1 error at the model's threshold: the same stream is a
    rise of the mistakes at 0.3 and a fall at 0.5. Its calibration (bins, limit) does
    not depend on the threshold."""
    predictions, pairs = binary_events(*band_flip(16_000, 8_000, seed=1))
    at_half, alerts_half = monitor_binary(0.5, predictions, pairs)
    at_low, alerts_low = monitor_binary(0.3, predictions, pairs)
    assert [a["kind"] for a in alerts_half] == []
    fired = [a for a in alerts_low if a["kind"] == "concept_drift" and a["status"] == "firing"]
    assert fired and 8_000 < fired[0]["metrics"]["n_scored"] < 9_500, alerts_low
    assert "error rate" in fired[0]["message"]
    assert at_low["calibration"] == at_half["calibration"]
    assert at_low["calibration"]["detector_params"]["bins"] == 2


def test_a_stationary_binary_stream_at_threshold_0_3_raises_nothing():
    for seed in range(2):
        _, alerts = monitor_binary(0.3, *binary_events(*calibrated_binary(20_000, seed=40 + seed)))
        assert alerts == [], seed


def test_the_per_class_report_keeps_the_ten_most_frequent_labels_and_pools_the_rest():
    """15 classes, class k the label of 10 (k + 1) pairs: per_class names classes 5-14 and
    pools 0-4 as ``_other``, micro-averaged; the supports sum to the window's pairs."""
    from driftline.agents.monitor.classes import PER_CLASS, multiclass_report
    rng = np.random.default_rng(0)
    names = [f"c{k:02d}" for k in range(15)]
    labels = np.repeat(np.arange(15), 10 * np.arange(1, 16))
    rng.shuffle(labels)
    right = rng.random(len(labels)) < 0.7
    preds = np.where(right, labels, rng.integers(0, 15, len(labels)))
    report = multiclass_report(preds.astype(float), labels.astype(float), names)
    per_class = report["per_class"]
    assert PER_CLASS == 10
    assert list(per_class) == [names[k] for k in range(14, 4, -1)] + ["_other"]
    assert sum(c["support"] for c in per_class.values()) == len(labels) == 1_200
    rest = labels < 5
    other = per_class["_other"]
    hits = int(np.sum(rest & (preds == labels)))
    assert other["support"] == int(rest.sum()) == 150
    assert other["recall"] == pytest.approx(hits / rest.sum())
    assert other["precision"] == pytest.approx(hits / np.sum(preds < 5))
    top = per_class["c14"]
    assert top["support"] == 150
    assert top["precision"] == pytest.approx(np.sum((preds == 14) & (labels == 14))
                                             / np.sum(preds == 14))


def test_the_holdout_error_rate_counts_mistakes_at_the_decision_threshold():
    """The trainer's decision between LOW_CUT (challenger) and HALF_CUT (champion) by
    error_rate flips with the threshold: before, both were cut at 0.5 whatever it was.
    Log loss and the Brier score do not cut: the same decision at any threshold."""
    X, y = cut_world(2_000)
    low = decide(LOW_CUT, HALF_CUT, X, y, metric="error_rate", threshold=0.3)
    half = decide(LOW_CUT, HALF_CUT, X, y, metric="error_rate", threshold=0.5)
    assert low.promote and low.challenger_loss == 0.0 and low.champion_loss > 0.08, low
    assert not half.promote and half.challenger_loss > 0.08 and half.champion_loss == 0.0
    for metric in ("log_loss", "brier"):
        assert decide(LOW_CUT, HALF_CUT, X, y, metric=metric, threshold=0.3) == decide(
            LOW_CUT, HALF_CUT, X, y, metric=metric, threshold=0.5), metric


class Versions:
    """A registry stand-in: models by (model, version), challengers by model."""

    def __init__(self, models: dict, challengers: dict) -> None:
        self.models, self.challengers = models, challengers

    def load(self, model, version):
        return self.models.get((model, version))

    def holdout_mse(self, model, version):
        return None

    def challenger(self, model):
        return self.challengers.get(model)


@pytest.mark.parametrize("threshold, verdicts", [
    (0.3, {("a", 2, "passed"), ("b", 3, "promote")}),
    (0.5, {("a", 2, "rollback"), ("b", 3, "reject")})], ids=["threshold=0.3", "threshold=0.5"])
def test_shadow_and_canary_judge_a_binary_error_rate_at_the_decision_threshold(
        threshold, verdicts):
    """The monitor agent's safe loop, DRIFTLINE_PROMOTION_METRIC=error_rate, on the cut
    world: model a's LOW_CUT v2 replaces HALF_CUT v1 (its canary), model b's HALF_CUT v1
    serves while LOW_CUT v3 is its challenger (shadow). At the config's threshold 0.3
    LOW_CUT makes no mistakes: the canary passes and the shadow promotes; at 0.5 it makes
    ~10 %, HALF_CUT none: rollback and reject (before, both were cut at 0.5 whatever the
    config said)."""
    from driftline.agents.monitor.agent import MonitorAgent

    config = MonitorConfig.from_dict(
        {"defaults": {"task": "binary", "decision_threshold": threshold}})
    source = Versions({("a", 1): HALF_CUT, ("a", 2): LOW_CUT, ("b", 1): HALF_CUT,
                       ("b", 3): LOW_CUT}, {"b": (3, 0.0)})
    settings = Settings(promotion_metric="error_rate", shadow_pairs=400, canary_pairs=400)
    part = MonitorAgent(settings, None, config, models=source).partition_monitor()
    stream = (cut_pairs(HALF_CUT, 1, 50, model="a") + cut_pairs(LOW_CUT, 2, 400, 50, "a")
              + cut_pairs(HALF_CUT, 1, 400, model="b"))
    assert part.loop is not None
    for i in range(0, len(stream), 64):
        part.loop.observe(stream[i:i + 64])
    assert {(v.model, v.version, v.action) for v in part.loop.pending} == verdicts
    for v in part.loop.pending:  # LOW_CUT's error rate, HALF_CUT's
        low, half = ((v.metrics["canary_error_rate"], v.metrics["reference_error_rate"])
                     if v.model == "a" else
                     (v.metrics["shadow_error_rate"], v.metrics["live_error_rate"]))
        if threshold == 0.3:
            assert low == 0.0 and half > 0.05, v
        else:
            assert low > 0.05 and half == 0.0, v
