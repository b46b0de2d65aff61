"""The concept-drift test (issue 35): a G test on binned errors, calibrated on any error
distribution, the same however its stream is batched."""

from __future__ import annotations

import math

import numpy as np
import pytest

from driftline.agents.monitor import calibration
from driftline.agents.monitor.changepoint import CLOCK, BinnedGLR
from driftline.agents.monitor.config import ConceptDriftConfig
from driftline.agents.monitor.drift import ErrorDrift

RATE = calibration.per_test_rate(1.0, calibration.count_tests(features=10))


def feed(detector, errors: np.ndarray, sizes) -> list[tuple[int, float, float]]:
    found, start = [], 0
    for size in sizes:
        part = errors[start:start + size]
        found += [(start + i, before, after) for i, before, after in detector.update_many(part)]
        start += size
    assert start >= len(errors)
    return found


def shifting(seed: int) -> np.ndarray:
    """Squared errors that rise x3, fall back, rise x2: 4,000 pairs each."""
    rng = np.random.default_rng(seed)
    return np.concatenate([s * rng.standard_normal(4_000) ** 2 for s in (1.0, 3.0, 1.0, 2.0)])


@pytest.mark.parametrize("bounded", [False, True])
def test_the_same_stream_gives_the_same_rises_however_it_is_batched(bounded):
    rng = np.random.default_rng(7)
    errors = shifting(7)
    if bounded:  # a classifier's 0/1 error at rates 0.1, 0.3, 0.1, 0.2
        errors = (rng.random(len(errors)) < np.repeat([0.1, 0.3, 0.1, 0.2], 4_000)).astype(float)
    whole = feed(BinnedGLR(RATE, bounded), errors, [len(errors)])
    assert len(whole) == 2, whole  # the two rises, not the fall
    assert 4_000 <= whole[0][0] < 4_500 and 12_000 <= whole[1][0] < 13_000
    for sizes in ([1] * len(errors), rng.integers(1, 700, 200).tolist(), [CLOCK] * 1_000,
                  [199, 2, 15, 17] * 1_000):
        got = feed(BinnedGLR(RATE, bounded), errors, sizes)
        assert [g[0] for g in got] == [w[0] for w in whole]
        assert np.allclose([g[1:] for g in got], [w[1:] for w in whole], rtol=1e-9)


def test_a_rise_reports_the_mean_error_before_and_after_it():
    errors = shifting(3)
    (position, before, after), *_ = BinnedGLR(RATE, False).update_many(errors)
    assert 4_000 <= position < 4_500
    assert 0.8 < before < 1.2 and 2.0 < after < 4.5  # means of chi-square(1) x1 and x3


@pytest.mark.parametrize("noise", ["normal", "t2"])
def test_false_alarms_stay_under_the_calibration_fit(noise):
    """At a threshold of 10 the fit (calibration.GLR_FIT, 5 bins) allows 108 per million
    pairs; bench/glr_null.py measured 51-65 there, for normal and Student t residuals
    alike (counts in bins follow one law whatever the errors'). 1,000,000 pairs."""
    rng = np.random.default_rng(11)
    residuals = rng.standard_normal(1_000_000) if noise == "normal" else rng.standard_t(
        2, 1_000_000)
    detector = BinnedGLR(RATE, False, threshold=10.0)
    feed(detector, residuals ** 2, [500] * 2_000)
    a, b = calibration.GLR_FIT[5]
    allowed = math.exp(a - b * 10.0) * 1_000_000
    assert 20 < detector.detections < allowed, detector.detections


def test_heavy_tailed_errors_fool_adwin_but_not_the_change_point_test():
    """The defect issue 35 measured: ADWIN at the budget's delta took Student t residuals'
    squared errors for rises (152-265 per million pairs); the G test on their bins does not."""
    errors = np.random.default_rng(2).standard_t(2, 200_000) ** 2
    adwin = ErrorDrift(ConceptDriftConfig(detector="adwin"), RATE)
    glr = ErrorDrift(ConceptDriftConfig(), RATE)
    feed(adwin, errors, [500] * 400)
    feed(glr, errors, [500] * 400)
    assert adwin.detections >= 5 and glr.detections == 0, (adwin.detections, glr.detections)


def test_a_regression_waits_for_its_bins_and_a_classifier_does_not():
    detector = BinnedGLR(RATE, False)
    errors = shifting(5)
    assert detector.update_many(errors[:150]) == [] and detector.bins is None
    detector.update_many(errors[150:250])
    assert detector.bins == 5 and detector.threshold == calibration.glr_threshold(RATE, 5)
    assert BinnedGLR(RATE, True).bins == 2


def test_a_configured_threshold_wins_and_unknown_params_are_refused():
    from driftline.agents.monitor.config import MonitorConfig
    from driftline.errors import ConfigError

    cfg = MonitorConfig.from_dict({"defaults": {"concept_drift": {"params": {
        "threshold": 25.0, "reference": 500}}}})
    detector = ErrorDrift(cfg.defaults.concept_drift, RATE)
    detector.update_many(shifting(1)[:600])
    assert detector.params["threshold"] == 25.0 and detector.params["reference"] == 500
    with pytest.raises(ConfigError, match="clock not a parameter of glr"):
        MonitorConfig.from_dict({"defaults": {"concept_drift": {"params": {"clock": 8}}}})


def test_errors_that_are_not_finite_neither_stop_nor_break_it():
    """The monitor refuses non-finite errors before they get here; fed them anyway, the
    test waits for finite ones to set its bins and bins the others above every edge."""
    detector = BinnedGLR(RATE, False, reference=20)
    assert detector.update_many(np.full(20, np.nan)) == [] and detector.bins is None
    errors = shifting(4)
    errors[[300, 5_000]] = [np.inf, np.nan]
    found = feed(detector, errors, [500] * 32)
    assert detector.bins == 5 and 4_000 <= found[0][0] < 4_500, found
