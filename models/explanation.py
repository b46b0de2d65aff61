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


def diff(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Feature by feature, two explanations (``a`` older): standardised coefficient and
    variance share in each, and what changed (``added``, ``removed``, ``changed``,
    ``same``); largest change of share first."""
    left = {f["feature"]: f for f in a.get("features", [])}
    right = {f["feature"]: f for f in b.get("features", [])}
    rows = []
    for name in sorted(set(left) | set(right)):
        x, y = left.get(name), right.get(name)
        share_a = x["variance_share"] if x else 0.0
        share_b = y["variance_share"] if y else 0.0
        if x is None or (x["std_coef"] == 0 and y is not None and y["std_coef"] != 0):
            change = "added"
        elif y is None or (y["std_coef"] == 0 and x["std_coef"] != 0):
            change = "removed"
        elif abs(share_b - share_a) > 0.01 or not np.isclose(x["std_coef"], y["std_coef"],
                                                              rtol=0.05, atol=1e-9):
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
