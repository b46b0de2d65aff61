"""The simulated world: seeded, cut-invariant, and each scenario changes what it says."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.simulate import World


def slope_and_intercept(X, y):
    A = np.column_stack([X[:, 0], np.ones(len(y))])
    return np.linalg.lstsq(A, y, rcond=None)[0]


def test_rows_are_the_same_however_the_range_is_cut():
    w = World(seed=11)
    X, y = w.rows(0, 2500)
    parts = [w.rows(a, b) for a, b in ((0, 999), (999, 1001), (1001, 2500))]
    np.testing.assert_array_equal(X, np.vstack([p[0] for p in parts]))
    np.testing.assert_array_equal(y, np.concatenate([p[1] for p in parts]))
    assert not np.array_equal(X, World(seed=12).rows(0, 2500)[0])


def test_abrupt_and_gradual_change_the_relation():
    abrupt = World("abrupt", drift_at=10_000, seed=1)
    np.testing.assert_allclose(slope_and_intercept(*abrupt.rows(0, 10_000)), [2, 0], atol=0.05)
    np.testing.assert_allclose(slope_and_intercept(*abrupt.rows(10_000, 20_000)), [3, 1],
                               atol=0.05)
    gradual = World("gradual", drift_at=10_000, span=10_000, seed=1)
    np.testing.assert_allclose(slope_and_intercept(*gradual.rows(14_000, 16_000)), [2.5, 0.5],
                               atol=0.1)
    np.testing.assert_allclose(slope_and_intercept(*gradual.rows(20_000, 30_000)), [3, 1],
                               atol=0.05)


def test_feature_shift_moves_x1_only():
    w = World("feature-shift", drift_at=5_000, seed=2)
    before, after = w.rows(0, 5_000)[0], w.rows(5_000, 10_000)[0]
    assert abs(before[:, 1].mean()) < 0.05 and abs(after[:, 1].mean() - 2) < 0.05
    assert abs(after[:, 0].mean()) < 0.05


def test_unknown_scenario_is_refused():
    with pytest.raises(ValueError, match="scenario must be one of abrupt, gradual"):
        World("sideways")
