"""The false-alarm budget: its split, the thresholds it gives, and what they do on streams."""

from __future__ import annotations

import numpy as np
import pytest
from simulate import FEATURES, stream

from driftline.agents.monitor import calibration
from driftline.agents.monitor.config import DataDriftConfig, MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.agents.monitor.drift import PSIDrift


def run(monitor: Monitor, predictions, pairs, batch: int = 500):
    alerts = []
    for i in range(0, max(len(predictions), len(pairs)), batch):
        alerts += monitor.process_predictions(predictions[i:i + batch])
        alerts += monitor.process_pairs(pairs[i:i + batch])
    return alerts


def test_the_budget_is_split_evenly_over_every_test():
    # per segment: a drift test per feature, the prediction's PSI, the error detector, the
    # threshold; model-wide, a data-quality test per feature
    assert calibration.count_tests(10) == 13 + 10
    assert calibration.count_tests(10, segments=4) == 52 + 10
    assert calibration.count_tests(0) == 3
    rate = calibration.per_test_rate(1.0, 13)
    assert rate == pytest.approx(1 / 13 / 1_000_000)
    assert rate * 13 * 1_000_000 == pytest.approx(1.0)  # the tests add up to the budget
    assert calibration.per_test_rate(5.0, 52) == pytest.approx(5 / 52e6)
    assert calibration.adwin_delta(rate, clock=32) == pytest.approx(32 * rate)
    assert calibration.check_alpha(rate, 250) == pytest.approx(250 * rate)
    for bad in ((0.0, 13), (1.0, 0)):
        with pytest.raises(ValueError):
            calibration.per_test_rate(*bad)
    with pytest.raises(ValueError):
        calibration.count_tests(3, segments=0)


def test_a_version_splits_its_budget_over_the_features_its_first_event_names():
    mon = Monitor(MonitorConfig.from_dict({"defaults": {"false_alarm_budget": 2.0}}))
    predictions, _ = stream(10, seed=1)
    mon.process_predictions(predictions)
    vm = mon.versions[("m", 1)]
    assert vm.tests == calibration.count_tests(len(FEATURES), extra=1)  # + estimation
    assert vm.rate == pytest.approx(2.0 / 1e6 / vm.tests)
    detector = vm.concept.detector
    assert detector.name == "glr" and detector.params["clock"] == 16  # a test every 16 pairs
    assert "threshold" not in detector.params  # a regression's bins come from 1,000 errors
    detector.update_many(np.random.default_rng(1).chisquare(1, 1000))
    assert detector.params["bins"] == 5
    assert detector.params["threshold"] == calibration.glr_threshold(vm.rate, 5)
    assert vm.report()["calibration"]["detector_params"]["threshold"] > 10
    assert vm.report()["calibration"]["tests"] == vm.tests


def test_a_classifiers_error_test_is_calibrated_from_its_first_pair():
    cfg = MonitorConfig.from_dict({"models": {"m": {"task": "binary"}}})
    vm = Monitor(cfg).version("m", 1)
    assert vm.concept.detector.params["bins"] == 2
    assert vm.concept.detector.params["threshold"] == calibration.glr_threshold(vm.rate, 2)
    assert calibration.glr_threshold(vm.rate, 2) < calibration.glr_threshold(vm.rate, 5)


def reference_psi_drift(rng, n=1000, window=1000, **cfg) -> PSIDrift:
    config = DataDriftConfig(reference_size=n, window=window, check_every=window, **cfg)
    d = PSIDrift(["x"], config)
    d.extend(rng.normal(size=(n, 1)))
    return d


def test_the_limit_is_the_upper_quantile_of_the_psi_of_stationary_windows():
    """Against one reference, windows from the same distribution breach the calibrated
    limit about ``alpha`` of the time: the bootstrap stands for the real null."""
    rng = np.random.default_rng(3)
    alpha = 0.05
    breaches = trials = 0
    for _ in range(8):  # references
        d = reference_psi_drift(rng)
        assert d.expected is not None
        limit = float(calibration.psi_thresholds(d.expected, 1000, 1000, alpha)[0])
        for _ in range(100):  # windows
            [check] = d.extend(rng.normal(size=(1000, 1)))  # a whole new window
            breaches += int(check.psi[0] > limit)
            trials += 1
    share = breaches / trials
    print(f"share of stationary windows above the alpha={alpha} limit: {share:.3f}")
    assert 0.025 < share < 0.085


def test_the_bootstrap_limit_is_the_quantile_of_the_bootstrapped_psi():
    expected = np.array([[0.1] * 10, [0.5, 0.3, 0.2] + [0.0] * 7])  # the second: ties
    null = calibration.psi_null(expected, 1000, 1000)
    limits = calibration.psi_thresholds(expected, 1000, 1000, 0.01)
    assert limits == pytest.approx(np.quantile(null, 0.99, axis=0))
    assert limits[1] < limits[0]  # fewer occupied bins, a smaller PSI under no drift


def test_the_fitted_tail_agrees_with_a_long_bootstrap():
    """Beyond what 4,000 samples show, the limit is a chi-square scaled to their mean and
    variance; 400,000 samples show the 1e-3 tail directly."""
    expected = np.full((1, 10), 0.1)
    long = calibration.psi_null(expected, 1000, 1000, samples=400_000, seed=9)
    direct = float(np.quantile(long, 1 - 1e-3))
    fitted = float(calibration.upper_quantile(calibration.psi_null(expected, 1000, 1000),
                                              1e-3)[0])
    print(f"1e-3 tail: direct {direct:.4f}, fitted from 4,000 samples {fitted:.4f}")
    assert fitted == pytest.approx(direct, rel=0.12)


def test_a_larger_budget_gives_lower_limits():
    predictions, _ = stream(3_000, seed=4)
    limits = []
    for budget in (0.1, 1.0, 100.0):
        mon = Monitor(MonitorConfig.from_dict({"defaults": {"false_alarm_budget": budget}}))
        run(mon, predictions, [])
        limits.append(mon.versions[("m", 1)].data_drift.limits_by_column()["x0"])
    assert limits[0] > limits[1] > limits[2]


def test_a_stationary_stream_stays_under_a_large_budget():
    """At a budget of 2,000 per million, 100k predictions may raise 200 false alarms; the
    calibration keeps them under that, and does raise some (it is not simply deaf)."""
    budget, n = 2_000.0, 100_000
    mon = Monitor(MonitorConfig.from_dict({"defaults": {"false_alarm_budget": budget}}))
    predictions, pairs = stream(n, seed=11)
    alarms = [a for a in run(mon, predictions, pairs) if a["status"] == "firing"]
    allowed = budget * n / 1e6
    print(f"{len(alarms)} false alarms, {allowed:.0f} allowed")
    assert 0 < len(alarms) <= allowed


@pytest.mark.parametrize("seed", [0, 1])
def test_a_stationary_stream_raises_nothing_at_the_default_budget(seed):
    predictions, pairs = stream(50_000, seed=seed)
    assert run(Monitor(MonitorConfig()), predictions, pairs) == []


def test_a_small_real_shift_still_fires_on_that_feature_only():
    """A third of a standard deviation: below the fixed 0.25 limit of old, caught by the
    calibrated one."""
    predictions, _ = stream(12_000, seed=12)
    for p in predictions[6_000:]:
        p["features"]["x4"] += 0.35
    fixed = MonitorConfig.from_dict({"defaults": {"data_drift": {"psi_threshold": 0.25,
                                                                 "psi_resolve": 0.1}}})
    assert run(Monitor(fixed), predictions, []) == []
    alerts = run(Monitor(MonitorConfig()), predictions, [])
    assert [(a["kind"], a["feature"], a["status"]) for a in alerts] == [
        ("data_drift", "x4", "firing")]


def test_explicit_thresholds_win_over_the_calibrated_ones():
    cfg = MonitorConfig.from_dict({"defaults": {
        "data_drift": {"psi_threshold": 0.3},
        "concept_drift": {"detector": "adwin", "params": {"delta": 0.001}}}})
    mon = Monitor(cfg)
    predictions, _ = stream(2_500, seed=2)
    run(mon, predictions, [])
    vm = mon.versions[("m", 1)]
    assert set(vm.data_drift.limits_by_column().values()) == {0.3}
    assert vm.data_drift.resolves.tolist() == pytest.approx([0.12] * len(FEATURES))
    assert vm.concept.detector.params["delta"] == 0.001
    report = vm.report()["calibration"]
    assert report["psi_limits"]["prediction"] == 0.3
    assert report["detector_params"]["delta"] == 0.001


def test_calibration_is_the_same_on_every_run():
    predictions, _ = stream(3_000, seed=5)
    limits = []
    for _ in range(2):
        mon = Monitor(MonitorConfig())
        run(mon, predictions, [])
        limits.append(mon.versions[("m", 1)].report()["calibration"]["psi_limits"])
    assert limits[0] == limits[1]


def test_a_column_constant_in_its_reference_gets_the_minimum_limit():
    """Its PSI under no drift is 0 (the bins the reference left empty stay empty in the
    bootstrap, whatever the epsilon floor of the shares), so its limit is the floor."""
    expected = np.array([[1.0] + [1e-4] * 9])  # the floored shares PSIDrift keeps
    assert (calibration.psi_null(expected, 1000, 1000) == 0).all()
    assert calibration.psi_thresholds(expected, 1000, 1000, 1e-5).tolist() == [
        calibration.MIN_LIMIT]
    predictions, _ = stream(6_000, seed=13)
    for p in predictions:
        p["features"]["flag"] = 0.0
    assert run(Monitor(MonitorConfig()), predictions, []) == []
