"""The numpy training core: ridge closed form, SGD against it, CV, holdout, decision."""

from __future__ import annotations

import numpy as np
import pytest

from driftline import LinearModel
from driftline.models.training import (
    cv_alpha,
    decide,
    ridge_closed_form,
    ridge_sgd,
    rows_to_arrays,
    standardisation,
    time_holdout,
    train_ridge,
)


def data(n=2_000, d=4, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=[5, -3, 0, 100][:d], scale=[1, 2, 0.5, 10][:d], size=(n, d))
    w = np.array([1.5, -2.0, 0.5, 0.03][:d])
    return X, X @ w + 4.0 + rng.normal(scale=noise, size=n), w


def test_closed_form_with_alpha_0_is_least_squares():
    X, y, _ = data()
    w, b = ridge_closed_form(X, y, 0.0)
    expected, *_ = np.linalg.lstsq(np.hstack([X, np.ones((len(y), 1))]), y, rcond=None)
    np.testing.assert_allclose(np.r_[w, b], expected, atol=1e-9)


def test_closed_form_solves_the_ridge_normal_equations():
    X, y, _ = data(n=300)
    Xs = (X - X.mean(0)) / X.std(0)
    alpha = 25.0
    w, b = ridge_closed_form(Xs, y, alpha)
    # gradient of ||Xs w + b - y||^2 + alpha ||w||^2 vanishes at the optimum
    residual = Xs @ w + b - y
    np.testing.assert_allclose(2 * Xs.T @ residual + 2 * alpha * w, 0, atol=1e-8)
    assert abs(residual.sum()) < 1e-8


@pytest.mark.parametrize("alpha", [0.0, 10.0])
def test_sgd_descends_to_the_closed_form_solution(alpha):
    X, y, _ = data(n=5_000)
    mean, scale = standardisation(X)
    Xs = (X - mean) / scale
    w_exact, b_exact = ridge_closed_form(Xs, y, alpha)
    w, b = ridge_sgd(Xs, y, alpha, epochs=150)
    np.testing.assert_allclose(w, w_exact, atol=2e-3)
    assert b == pytest.approx(b_exact, abs=2e-3)  # a flipped gradient sign diverges


def test_cv_picks_the_alpha_with_the_lowest_validation_error():
    X, y, _ = data(n=60, d=4, noise=3.0, seed=3)
    Xs = (X - X.mean(0)) / X.std(0)
    best, scores = cv_alpha(Xs, y, alphas=(0.0, 1.0, 10.0, 1e6), folds=5)
    assert best == min(scores, key=scores.get)
    assert scores[1e6] > scores[best]  # shrinking everything to 0 is worse


def test_train_ridge_recovers_the_model_on_raw_features():
    X, y, w_true = data(n=3_000, noise=0.1)
    fit = train_ridge(X, y, ["a", "b", "c", "d"])
    assert fit.method == "closed_form"
    X_new = data(n=100, seed=9)[0]
    np.testing.assert_allclose(fit.model.predict(X_new), X_new @ w_true + 4.0, atol=0.05)
    back = LinearModel.from_bytes(fit.model.to_bytes())
    np.testing.assert_allclose(back.predict(X_new), fit.model.predict(X_new))


def test_train_ridge_switches_to_sgd_for_large_windows():
    X, y, w_true = data(n=4_000, noise=0.1)
    fit = train_ridge(X, y, ["a", "b", "c", "d"], max_closed_form_rows=1_000)
    assert fit.method == "sgd"
    X_new = data(n=100, seed=9)[0]
    np.testing.assert_allclose(fit.model.predict(X_new), X_new @ w_true + 4.0, atol=0.1)


def test_rows_with_missing_or_non_finite_values_are_dropped_in_feature_order():
    pairs = [{"features": {"b": 2.0, "a": 1.0}, "label": 3.0},
             {"features": {"a": 1.0}, "label": 3.0},
             {"features": {"a": float("nan"), "b": 1.0}, "label": 3.0},
             {"features": {"a": 4.0, "b": 5.0}, "label": float("inf")},
             {"features": {"a": 6.0, "b": 7.0, "c": 9.0}, "label": 8.0}]
    X, y, dropped = rows_to_arrays(pairs, ["a", "b"])
    assert X.tolist() == [[1.0, 2.0], [6.0, 7.0]] and y.tolist() == [3.0, 8.0]
    assert dropped == 3


def test_holdout_is_the_most_recent_fifth():
    train, holdout = time_holdout(1_000)
    assert (train.start, train.stop, holdout.start, holdout.stop) == (0, 800, 800, 1_000)


def test_decide_needs_the_margin():
    X, y, _ = data(n=500)
    good = train_ridge(X, y, ["a", "b", "c", "d"]).model
    bad = LinearModel([0.0, 0.0, 0.0, 0.0], float(y.mean()), ["a", "b", "c", "d"])
    assert decide(good, None, X, y).promote
    win = decide(good, bad, X, y, margin=0.02)
    assert win.promote and win.challenger_loss < 0.98 * win.champion_loss
    tie = decide(good, good, X, y, margin=0.02)
    assert not tie.promote and "not 2% below" in tie.reason


def test_sgd_step_adapts_to_correlated_features_instead_of_diverging():
    rng = np.random.default_rng(5)
    base = rng.normal(size=(3_000, 1))
    X = base + 0.05 * rng.normal(size=(3_000, 40))  # 40 nearly identical columns
    y = X.sum(axis=1) + rng.normal(scale=0.1, size=3_000)
    mean, scale = standardisation(X)
    Xs = (X - mean) / scale
    w, b = ridge_sgd(Xs, y, 1.0, epochs=100)
    w_exact, b_exact = ridge_closed_form(Xs, y, 1.0)
    mse = float(np.mean((Xs @ w + b - y) ** 2))
    mse_exact = float(np.mean((Xs @ w_exact + b_exact - y) ** 2))
    assert np.all(np.isfinite(w)) and mse < 1.5 * mse_exact + 1e-3


def test_a_challenger_with_a_non_finite_holdout_mse_is_never_promoted():
    X = np.ones((10, 1))
    broken = LinearModel([1e308], 1e308)
    with np.errstate(over="ignore"):
        decision = decide(broken, None, X * 1e10, np.zeros(10))
    assert not decision.promote and "not finite" in decision.reason
