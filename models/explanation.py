"""What a linear model does with its features, measured on its training rows.

* **Standardised coefficient** of feature j: the change in the prediction for one
  standard deviation of j (the coefficient times the feature's spread in the
  training rows), comparable across features whatever their units.
* **Share of the prediction variance**: with c_j = w_j (x_j - mean_j) the feature's
  contribution, ``cov(c_j, y_hat) / var(y_hat)``. The shares sum to 1 exactly;
  with correlated features one can be negative (it cancels part of another).

The trainer stores :func:`explain` of each version in its metadata
(``explanation``), so ``driftline models show`` and the API read it without the
training data; :func:`diff` compares two of them.

>>> m = LinearModel([2.0, 0.0], 1.0, ["a", "b"])
>>> X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
>>> e = explain(m, X)
>>> [(f["feature"], round(f["std_coef"], 3), round(f["variance_share"], 3))
...  for f in e["features"]]
[('a', 2.236, 1.0), ('b', 0.0, 0.0)]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftline.models.linear import LinearModel


def raw_coefficients(model: LinearModel) -> np.ndarray:
    """Coefficients per unit of each raw feature (the model's scale undone)."""
    return model.coef / model.scale if model.scale is not None else model.coef.copy()


def explain(model: LinearModel, X: np.ndarray) -> dict[str, Any]:
    """Standardised coefficients and prediction-variance shares on the rows ``X``."""
    X = np.asarray(X, dtype=float)
    raw = raw_coefficients(model)
    spread = X.std(axis=0)
    contributions = (X - X.mean(axis=0)) * raw
    predicted = contributions.sum(axis=1)
    var = float(predicted.var())
    shares = ((contributions * (predicted - predicted.mean())[:, None]).mean(axis=0) / var
              if var > 0 else np.zeros(len(raw)))
    features = [{"feature": name, "coef": float(c), "std_coef": float(c * s),
                 "variance_share": float(share)}
                for name, c, s, share in zip(model.feature_names, raw, spread, shares)]
    return {"rows": len(X), "intercept": model.intercept, "prediction_variance": var,
            "features": sorted(features, key=lambda f: -abs(f["variance_share"]))}


def stored(model: LinearModel) -> dict[str, Any]:
    """The explanation the trainer stored with ``model`` (a registry-loaded model's
    ``meta``), else what the artifact alone tells: raw coefficients, and standardised
    ones if the model standardises (its ``scale`` is the training spread); no shares."""
    explanation = model.meta.get("explanation")
    if isinstance(explanation, dict) and isinstance(explanation.get("features"), list):
        return explanation
    raw = raw_coefficients(model)
    return {"rows": 0, "intercept": model.intercept, "prediction_variance": None,
            "features": [{"feature": name, "coef": float(c),
                          "std_coef": None if model.scale is None else float(w),
                          "variance_share": None}
                         for name, c, w in zip(model.feature_names, raw, model.coef)]}


def diff(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Feature by feature, two explanations (``a`` older): standardised coefficient and
    variance share in each, and what changed (``added``, ``removed``, ``changed``,
    ``same``); largest change of share first."""
    left = {f["feature"]: f for f in a.get("features", [])}
    right = {f["feature"]: f for f in b.get("features", [])}
    rows = []
    for name in sorted(set(left) | set(right)):
        x, y = left.get(name), right.get(name)
        share_a = (x["variance_share"] or 0.0) if x else 0.0
        share_b = (y["variance_share"] or 0.0) if y else 0.0
        coef_a = (x["std_coef"] if x["std_coef"] is not None else x["coef"]) if x else 0.0
        coef_b = (y["std_coef"] if y["std_coef"] is not None else y["coef"]) if y else 0.0
        if x is None or (coef_a == 0 and coef_b != 0):
            change = "added"
        elif y is None or (coef_b == 0 and coef_a != 0):
            change = "removed"
        elif abs(share_b - share_a) > 0.01 or not np.isclose(coef_a, coef_b, rtol=0.05,
                                                              atol=1e-9):
            change = "changed"
        else:
            change = "same"
        rows.append({"feature": name, "std_coef": [x and x["std_coef"], y and y["std_coef"]],
                     "variance_share": [share_a, share_b], "change": change})
    return sorted(rows, key=lambda r: -abs(r["variance_share"][1] - r["variance_share"][0]))


def bar(share: float, width: int = 20) -> str:
    """A text bar for a share in [-1, 1]: ``#`` positive, ``-`` negative."""
    n = int(round(min(abs(share), 1.0) * width))
    return ("#" if share >= 0 else "-") * n
