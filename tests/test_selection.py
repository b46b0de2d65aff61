"""Feature selection and explanation in the trainer, pure numpy."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.models.explanation import diff, explain
from driftline.models.linear import LinearModel
from driftline.models.selection import select, train_selected
from driftline.models.training import time_holdout, train_ridge
from driftline.simulate import World


def holdout_mse(fit, X, y, holdout):
    return float(np.mean((fit.model.predict(X[holdout]) - y[holdout]) ** 2))


@pytest.mark.parametrize("scenario, true", [("abrupt", ["x0"]),
                                            ("feature-shift", ["x0", "x1"])],
                         ids=["abrupt:x0", "feature-shift:x0,x1"])
def test_with_20_noise_features_the_selected_model_keeps_the_true_ones(scenario, true):
    # The demo's world (3 features) with 20 noise features added, after its drift; three
    # worlds. On one of them (abrupt, seed 5) the selected model's holdout MSE is 0.15 %
    # above the all-feature model's (README, "Feature selection"): per world it is held to
    # 1 % above, on the three together to at most the all-feature model's.
    selected_mse, all_mse = [], []
    for seed in (3, 4, 5):
        world = World(scenario, drift_at=0, features=23, seed=seed)
        X, y = world.rows(0, 2_000)
        train, holdout = time_holdout(len(y))
        selected = train_selected(X[train], y[train], world.names)
        everything = train_ridge(X[train], y[train], world.names)
        assert selected.selection.kept == true, seed
        dropped = {d["feature"] for d in selected.selection.dropped}
        assert dropped == set(world.names) - set(true)
        kept = [world.names.index(n) for n in true]
        assert np.all(selected.model.coef[kept] != 0)
        assert np.count_nonzero(selected.model.coef) == len(true)
        assert selected.model.feature_names == world.names  # serving sends the same ones
        selected_mse.append(holdout_mse(selected, X, y, holdout))
        all_mse.append(holdout_mse(everything, X, y, holdout))
        assert selected_mse[-1] <= 1.01 * all_mse[-1], seed
    assert sum(selected_mse) <= sum(all_mse)


def test_constant_and_near_duplicate_features_are_dropped_with_the_reason():
    rng = np.random.default_rng(0)
    a = rng.normal(size=800)
    X = np.column_stack([a, a * 2 + 1e-3 * rng.normal(size=800), np.full(800, 3.0),
                         rng.normal(size=800)])
    y = a + X[:, 3] + rng.normal(0, 0.3, 800)
    sel = select(X, y, ["a", "a2", "flat", "b"])
    assert sel.kept == ["a", "b"]
    reasons = {d["feature"]: d["reason"] for d in sel.dropped}
    assert reasons["flat"].startswith("constant")
    assert reasons["a2"].startswith("near-duplicate of a (r = 1.000)")
    assert sel.path[0]["feature"] is None and {s["feature"] for s in sel.path[1:]} == {"a", "b"}
    assert sel.path[-1]["cv_mse"] < sel.path[0]["cv_mse"]


def test_nothing_useful_gives_an_intercept_model():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(400, 3)), rng.normal(5.0, 1.0, 400)
    fit = train_selected(X, y, ["p", "q", "r"])
    assert fit.selection.kept == [] and fit.method == "intercept_only"
    assert fit.model.predict(X[:3]).tolist() == pytest.approx([y.mean()] * 3)


def test_explanation_shares_sum_to_one_and_rank_the_features():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(1000, 3)) * [1.0, 10.0, 1.0]
    model = LinearModel([3.0, 0.1, 0.0], 1.0, ["big", "small", "none"])
    e = explain(model, X)
    assert [f["feature"] for f in e["features"]] == ["big", "small", "none"]
    assert sum(f["variance_share"] for f in e["features"]) == pytest.approx(1.0)
    by = {f["feature"]: f for f in e["features"]}
    assert by["big"]["std_coef"] == pytest.approx(3.0, rel=0.05)
    assert by["small"]["std_coef"] == pytest.approx(1.0, rel=0.05)  # 0.1 per unit, sd 10
    assert by["big"]["variance_share"] == pytest.approx(0.9, abs=0.02)
    # Standardised models (mean/scale) give the same numbers as raw ones.
    scaled = LinearModel([3.0, 1.0, 0.0], 1.0, ["big", "small", "none"],
                         scale=[1.0, 10.0, 1.0])
    for f, g in zip(explain(scaled, X)["features"], e["features"]):
        assert f["feature"] == g["feature"]
        assert (f["coef"], f["std_coef"], f["variance_share"]) == pytest.approx(
            (g["coef"], g["std_coef"], g["variance_share"]))


def test_diff_names_what_changed():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(500, 3))
    old = explain(LinearModel([2.0, 1.0, 0.0], 0.0, ["a", "b", "c"]), X)
    new = explain(LinearModel([3.0, 0.0, 1.0], 1.0, ["a", "b", "c"]), X)
    rows = {r["feature"]: r for r in diff(old, new)}
    assert (rows["a"]["change"], rows["b"]["change"], rows["c"]["change"]) == (
        "changed", "removed", "added")
    assert rows["b"]["variance_share"][1] == 0.0 and rows["c"]["variance_share"][0] == 0.0
    assert diff(old, old)[0]["change"] == "same"
