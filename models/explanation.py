"""What a linear model does with its features, measured on its training rows.

* **Standardised coefficient** of feature j: the change in the prediction for one
  standard deviation of j (the coefficient times the feature's spread in the
  training rows), comparable across features whatever their units.
* **Share of the prediction variance**: with c_j = w_j (x_j - mean_j) the feature's
  contribution, ``cov(c_j, y_hat) / var(y_hat)``. The shares sum to 1 exactly;
  with correlated features one can be negative (it cancels part of another).

For a classifier the same is measured on what it scores linearly: a logistic model's
log-odds; a softmax model's class scores, where a feature's standardised coefficient
is the root mean square over the classes and its share is of the scores' summed
variance, ``sum_k cov(c_jk, s_k) / sum_k var(s_k)``.

The trainer stores :func:`explain` of each version in its metadata
(``explanation``), so ``driftline models show`` and the API read it without the
training data; :func:`diff` compares two of them.

>>> from driftline.models.linear import LinearModel
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

MAX_ROWS = 20_000  # explained on the most recent rows: a softmax costs n x classes x features


def raw_coefficients(model: Any) -> np.ndarray:
    """Coefficients per unit of each raw feature (the model's scale undone); a softmax
    model's are one row per class."""
    coef = np.asarray(model.coef, dtype=float)
    return coef / model.scale if model.scale is not None else coef.copy()


def explain(model: Any, X: np.ndarray) -> dict[str, Any]:
    """Standardised coefficients and prediction-variance shares on the rows ``X``."""
    X = np.asarray(X, dtype=float)[-MAX_ROWS:]
    raw = np.atleast_2d(raw_coefficients(model))      # classes (1 unless softmax) x features
    spread = X.std(axis=0)
    centred = X - X.mean(axis=0)
    covariance, var = np.zeros(raw.shape[1]), 0.0
    for w in raw:
        contributions = centred * w
        score = contributions.sum(axis=1)
        covariance += (contributions * (score - score.mean())[:, None]).mean(axis=0)
        var += float(score.var())
    shares = covariance / var if var > 0 else np.zeros(raw.shape[1])
    coef = np.sqrt((raw ** 2).mean(axis=0)) if len(raw) > 1 else raw[0]
    features = [{"feature": name, "coef": float(c), "std_coef": float(c * s),
                 "variance_share": float(share)}
                for name, c, s, share in zip(model.feature_names, coef, spread, shares)]
    return {"rows": len(X), "intercept": _intercept(model), "prediction_variance": var,
            "features": sorted(features, key=lambda f: -abs(f["variance_share"]))}


def _intercept(model: Any) -> float | list[float]:
    value = np.asarray(model.intercept, dtype=float)
    return float(value) if value.ndim == 0 else value.tolist()


def stored(model: Any) -> dict[str, Any]:
    """The explanation the trainer stored with ``model`` (a registry-loaded model's
    ``meta``), else what the artifact alone tells: raw coefficients, and standardised
    ones if the model standardises (its ``scale`` is the training spread); no shares."""
    explanation = model.meta.get("explanation")
    if isinstance(explanation, dict) and isinstance(explanation.get("features"), list):
        return explanation
    if not hasattr(model, "coef"):  # a kind without linear coefficients: nothing to say
        return {"rows": 0, "intercept": None, "prediction_variance": None, "features": []}
    raw = np.atleast_2d(raw_coefficients(model))
    coef = np.atleast_2d(model.coef)
    if len(raw) > 1:  # softmax: root mean square over the classes
        raw, coef = np.sqrt((raw ** 2).mean(axis=0))[None], np.sqrt((coef ** 2).mean(axis=0))[None]
    return {"rows": 0, "intercept": _intercept(model), "prediction_variance": None,
            "features": [{"feature": name, "coef": float(c),
                          "std_coef": None if model.scale is None else float(w),
                          "variance_share": None}
                         for name, c, w in zip(model.feature_names, raw[0], coef[0])]}


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
