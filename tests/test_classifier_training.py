"""Logistic and softmax training (models/classifier_training.py), pure numpy + scipy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from driftline.models.classifier_training import (
    ClassifierFit,
    _Binary,
    _Multinomial,
    logistic_objective,
    softmax_objective,
    train_logistic,
    train_softmax,
    walk_forward_log_loss,
)
from driftline.models.classifiers import LogisticModel, SoftmaxModel
from driftline.models.linear import LinearModel
from driftline.models.selection import select, train_selected
from driftline.models.training import train_ridge

NAMES4 = ["a", "b", "c", "d"]


def binary_data(n, coef, seed=0, intercept=0.3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(coef)))
    y = (X @ np.asarray(coef) + intercept + rng.logistic(size=n) > 0).astype(float)
    return X, y


def four_class_data(n, seed=0):
    """Classes from a known softmax model with Gumbel noise: the generating model's own
    prediction is the Bayes classifier."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    W = np.array([[3.0, 0.0, 0.0], [-3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, -3.0, 0.0]])
    scores = X @ W.T
    classes = np.array(["east", "west", "north", "south"])
    y = classes[np.argmax(scores + rng.gumbel(size=scores.shape), axis=1)]
    return X, y, classes[np.argmax(scores, axis=1)]


def log_loss(p, y):
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def test_binary_recovers_the_coefficients_order_and_beats_the_base_rate():
    X, y = binary_data(3_000, [2.0, -1.0, 0.5, 0.0])
    fit = train_logistic(X[:2_400], y[:2_400], NAMES4)
    assert isinstance(fit, ClassifierFit) and isinstance(fit.model, LogisticModel)
    assert fit.method == "lbfgs" and fit.alpha in fit.cv_log_loss
    coef = fit.model.coef
    assert np.sign(coef[:3]).tolist() == [1.0, -1.0, 1.0]
    assert np.argsort(-np.abs(coef)).tolist() == [0, 1, 2, 3]
    assert coef[0] == pytest.approx(2.0, rel=0.15)  # the generating model, standardised
    holdout = log_loss(fit.model.predict(X[2_400:]), y[2_400:])
    base = log_loss(np.full(600, y[:2_400].mean()), y[2_400:])
    assert holdout < 0.75 * base


def test_separable_data_at_alpha_zero_gives_finite_coefficients():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 2))
    y = (X[:, 0] - X[:, 1] > 0).astype(float)  # a perfect separator
    fit = train_logistic(X, y, ["p", "q"], alphas=(0.0,))
    assert fit.alpha == 0.0 and np.all(np.isfinite(fit.model.coef))
    assert np.isfinite(fit.model.intercept) and np.all(np.isfinite(list(fit.cv_log_loss.values())))
    assert fit.model.coef[0] > 5 and fit.model.coef[1] < -5  # large: nothing stops them
    assert np.array_equal(fit.model.predict_class(X), y.astype(int))


def test_cv_wants_more_penalty_on_a_tiny_noisy_sample_than_on_a_large_clean_one():
    coef = [0.3, -0.2, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0]
    names = [f"x{i}" for i in range(8)]
    tiny = train_logistic(*binary_data(60, coef, seed=2), names)
    X, y = binary_data(5_000, [4.0 * c for c in coef], seed=3)
    large = train_logistic(X, y, names)
    assert tiny.alpha >= 10.0 and large.alpha <= 1.0
    assert tiny.alpha > large.alpha
    # and on the tiny sample alpha = 0 is the worst, by the walk-forward loss
    assert max(tiny.cv_log_loss, key=lambda a: tiny.cv_log_loss[a]) == 0.0


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_selection_drops_noise_and_constant_features(task):
    rng = np.random.default_rng(4)
    n = 2_000
    X = np.column_stack([rng.normal(size=n), rng.normal(size=n), np.full(n, 7.0),
                         rng.normal(size=n)])
    z = 2.0 * X[:, 0] - 1.5 * X[:, 3]
    if task == "binary":
        y = (z + rng.logistic(size=n) > 0).astype(float)
    else:
        y = np.array(["lo", "mid", "hi"])[np.digitize(z + rng.normal(0, 0.5, n), [-1, 1])]
    fit = train_selected(X, y, ["signal", "noise", "flat", "signal2"], task=task)
    assert isinstance(fit, ClassifierFit) and fit.selection is not None
    assert fit.selection.kept == ["signal", "signal2"]
    reasons = {d["feature"]: d["reason"] for d in fit.selection.dropped}
    assert reasons["flat"].startswith("constant")
    assert reasons["noise"].startswith("not selected: adding it changes the walk-forward CV "
                                       "log loss")
    coef = np.atleast_2d(fit.model.coef)
    assert np.all(coef[:, 1:3] == 0) and np.all(np.abs(coef[:, [0, 3]]).sum(axis=0) > 0)
    assert fit.model.feature_names == ["signal", "noise", "flat", "signal2"]
    described = json.loads(json.dumps(fit.selection.describe()))  # the trainer stores it
    assert described["method"] == "forward selection, walk-forward CV log loss"
    assert described["path"][-1]["cv_loss"] < described["path"][0]["cv_loss"]


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_nothing_useful_gives_an_intercept_only_model(task):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(600, 3))
    if task == "binary":
        y = (rng.random(600) < 0.3).astype(float)
        expected = [1 - y.mean(), y.mean()]
    else:
        y = rng.choice(np.array(["x", "y", "z"]), size=600, p=[0.5, 0.3, 0.2])
        expected = [np.mean(y == c) for c in ("x", "y", "z")]
    fit = train_selected(X, y, ["p", "q", "r"], task=task)
    assert fit.selection.kept == [] and fit.method == "intercept_only"
    assert np.all(fit.model.coef == 0)
    assert np.asarray(fit.model.predict_proba(X[:2])) == pytest.approx(np.array([expected] * 2))


def test_softmax_reaches_the_bayes_accuracy_and_its_probabilities_sum_to_one():
    X, y, bayes = four_class_data(6_000)
    fit = train_softmax(X[:5_000], y[:5_000], ["u", "v", "w"])
    model = fit.model
    assert isinstance(model, SoftmaxModel)
    assert model.classes == ["east", "north", "south", "west"]
    bayes_accuracy = float(np.mean(bayes[5_000:] == y[5_000:]))
    accuracy = float(np.mean(model.predict(X[5_000:]) == y[5_000:]))
    assert bayes_accuracy > 0.75
    assert accuracy >= bayes_accuracy - 0.02
    p = model.predict_proba(X[5_000:])
    assert p.sum(axis=1) == pytest.approx(np.ones(1_000))
    assert abs(model.coef[:, 2]).max() < 0.2 * abs(model.coef[:, :2]).max()  # w is noise


def test_a_class_missing_from_early_folds_does_not_crash():
    X, y, _ = four_class_data(1_000, seed=6)
    y = y.astype(object)
    y[:700][y[:700] == "south"] = "north"  # "south" appears only in the last 30 %
    y[:300] = "east"                       # and the first fold has one class only
    for select_features in (False, True):
        fit = train_softmax(X, y, ["u", "v", "w"], select_features=select_features)
        assert fit.model.classes == ["east", "north", "south", "west"]
        assert all(np.isfinite(v) for v in fit.cv_log_loss.values())
    # scored with probability 1e-12: -log(1e-12) = 27.6 for each unseen-class row
    multinomial = _Multinomial(2)
    loss = multinomial.fold_loss(X[:10], np.zeros(10, dtype=int), X[10:12],
                                 np.array([0, 1]), 0.0)
    assert loss == pytest.approx((-np.log(1 - 1e-12) - np.log(1e-12)) / 2)
    Xb, yb = binary_data(200, [1.0, 0.0, 0.0, 0.0])
    yb[:80] = 1.0  # the first walk-forward fold has one class
    assert np.isfinite(walk_forward_log_loss(_Binary(), Xb, yb, 0.0))


def test_both_models_round_trip_through_bytes():
    X, y = binary_data(500, [1.0, -1.0, 0.0, 0.5])
    binary = train_logistic(X, y, NAMES4).model
    back = LogisticModel.from_bytes(binary.to_bytes())
    assert back == binary and np.array_equal(back.predict(X), binary.predict(X))
    Xm, ym, _ = four_class_data(800)
    multi = train_selected(Xm, ym, ["u", "v", "w"], task="multiclass").model
    again = SoftmaxModel.from_bytes(multi.to_bytes())
    assert again == multi and np.array_equal(again.predict_proba(Xm), multi.predict_proba(Xm))


def test_regression_through_train_selected_is_select_then_train_ridge():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(800, 4))
    X[:, 2] = 1.5
    y = 1.0 + 2.0 * X[:, 0] - 0.5 * X[:, 3] + rng.normal(0, 0.5, 800)
    fit = train_selected(X, y, NAMES4)
    assert isinstance(fit.model, LinearModel)
    selection = select(X, y, NAMES4)
    assert fit.selection == selection and selection.kept == ["a", "d"]
    keep = [0, 3]
    ridge = train_ridge(X[:, keep], y, selection.kept)
    coef = np.zeros(4)
    coef[keep] = ridge.model.coef
    assert np.array_equal(fit.model.coef, coef)
    assert fit.model.intercept == ridge.model.intercept
    assert (fit.alpha, fit.method, fit.cv_mse) == (ridge.alpha, ridge.method, ridge.cv_mse)
    assert [set(step) for step in fit.selection.describe()["path"]] == [{"feature", "cv_mse"}] * 3
    assert fit.selection.describe()["method"] == "forward selection, walk-forward CV"


@pytest.mark.parametrize("which", ["logistic", "softmax"])
def test_the_gradient_matches_finite_differences(which):
    rng = np.random.default_rng(8)
    X = rng.normal(size=(50, 3))
    if which == "logistic":
        y = (rng.random(50) < 0.4).astype(float)

        def objective(p):
            return logistic_objective(p, X, y, 0.7)
        params = rng.normal(size=4)
    else:
        y = rng.integers(0, 4, 50)

        def objective(p):
            return softmax_objective(p, X, y, 0.7, 4)
        params = rng.normal(size=4 * 3 + 4)
    _, grad = objective(params)
    h = 1e-6
    numeric = np.array([(objective(params + h * e)[0] - objective(params - h * e)[0]) / (2 * h)
                        for e in np.eye(len(params))])
    assert grad == pytest.approx(numeric, rel=1e-5, abs=1e-6)


def test_bad_labels_are_refused_with_a_reason():
    X = np.random.default_rng(9).normal(size=(40, 2))
    with pytest.raises(ValueError, match="at least 2"):
        train_softmax(X, np.array(["only"] * 40), ["p", "q"])
    with pytest.raises(ValueError, match="non-empty strings"):
        train_softmax(X, np.array([1, 2] * 20, dtype=object), ["p", "q"])
    with pytest.raises(ValueError, match="0 or 1"):
        train_logistic(X, np.array([0.0, 2.0] * 20), ["p", "q"])
    with pytest.raises(ValueError, match="both 0 and 1"):
        train_logistic(X, np.ones(40), ["p", "q"])
    with pytest.raises(ValueError, match="task must be"):
        train_selected(X, np.ones(40), ["p", "q"], task="ranking")
