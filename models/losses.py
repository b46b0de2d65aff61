"""How a model is judged: per-row losses of a model kind, and of what was served.

The trainer's holdout, shadow scoring and the canary compare two versions on the same
rows by the mean of one of these:

==============  ==========================================================  ==========
metric          per row                                                     tasks
==============  ==========================================================  ==========
``mse``         (prediction - label)^2                                      regression
``log_loss``    -log P(label), P clipped to [1e-15, 1]                      classifiers
``brier``       sum over classes of (P(class) - [class = label])^2;         classifiers
                binary: (P(1) - label)^2, the monitor's rolling "MSE"
``error_rate``  1 when the predicted class is not the label (binary: P(1)    classifiers
                at or above the model's ``decision_threshold``, 0.5 unless
                its monitor config sets one, means class 1)
==============  ==========================================================  ==========

Only ``error_rate`` depends on the threshold; ``log_loss`` and ``brier`` score the
probabilities themselves.

A regression is always judged by ``mse``; a classifier by ``DRIFTLINE_PROMOTION_METRIC``
(``auto``: ``log_loss``). A version's ``baseline_mse`` is its holdout loss by what the
monitor's rolling metric measures (:data:`BASELINE`).

>>> from driftline.models.classifiers import LogisticModel
>>> m = LogisticModel([0.0], 0.0, ["x"])                 # P(1) = 0.5 everywhere
>>> model_losses(m, [[1.0], [2.0]], [1.0, 0.0], "log_loss").round(4).tolist()
[0.6931, 0.6931]
>>> served_losses([{"prediction": 0.9, "label": 1.0}], "binary", "brier").round(4).tolist()
[0.01]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from driftline.models.wire.features import number_or_nan

METRICS = ("mse", "log_loss", "brier", "error_rate")
CLASSIFIER_METRICS = ("log_loss", "brier", "error_rate")
BASELINE = {"regression": "mse", "binary": "brier", "multiclass": "error_rate"}
EPS = 1e-15
NAMES = {"mse": "MSE", "log_loss": "log loss", "brier": "Brier score",
         "error_rate": "error rate"}


def metric_for(task: str, configured: str = "auto") -> str:
    """The metric a model of ``task`` is judged by, given the setting."""
    if task == "regression":
        return "mse"
    if configured == "auto":
        return "log_loss"
    if configured not in CLASSIFIER_METRICS:
        raise ValueError(f"a classifier is judged by one of {', '.join(CLASSIFIER_METRICS)} "
                         f"(or auto), got {configured!r}")
    return configured


def needs_probabilities(metric: str) -> bool:
    return metric in ("log_loss", "brier")


def model_losses(model: Any, X: Any, labels: Any, metric: str,
                 threshold: float = 0.5) -> np.ndarray:
    """``model``'s loss on each row of ``X`` against ``labels``: numbers (regression; binary
    0/1) or class names (multiclass). ``X`` is an n x d array in the model's feature order,
    or a list of raw feature dicts (what scored pairs carry), which a model that
    ``takes_rows`` (an ``encoded`` kind, an ONNX graph with string inputs) takes as they
    are and any other as its numeric features (NaN where a value is missing or a
    category). Rows the loss is undefined on (a non-finite prediction or label) are NaN."""
    task = model.task
    rows = model_inputs(model, X)
    if task == "regression":
        y = np.asarray(labels, dtype=float)
        losses: np.ndarray = (np.asarray(model.predict(rows), dtype=float) - y) ** 2
        return losses
    if task == "binary":
        return binary_losses(np.asarray(model.predict(rows), dtype=float),
                             np.asarray(labels, dtype=float), metric, threshold)
    proba = np.asarray(model.predict_proba(rows), dtype=float)
    return multiclass_losses(proba, list(model.classes), labels, metric)


def model_inputs(model: Any, X: Any) -> Any:
    """What ``model.predict`` is given for ``X`` (see :func:`model_losses`)."""
    if isinstance(X, list) and X and isinstance(X[0], dict):
        if getattr(model, "takes_rows", False):
            return X
        names = model.feature_names
        return np.array([[number_or_nan(row.get(n)) for n in names] for row in X],
                        dtype=float).reshape(len(X), len(names))
    return np.asarray(X, dtype=float)


def binary_losses(p: np.ndarray, y: np.ndarray, metric: str,
                  threshold: float = 0.5) -> np.ndarray:
    out: np.ndarray
    if metric == "log_loss":
        q = np.clip(p, EPS, 1 - EPS)
        out = -(y * np.log(q) + (1 - y) * np.log1p(-q))
    elif metric in ("brier", "mse"):
        out = (p - y) ** 2
    elif metric == "error_rate":
        out = ((p >= threshold) != (y == 1)).astype(float)
        out[~np.isfinite(p) | ~np.isfinite(y)] = np.nan
    else:
        raise ValueError(f"unknown metric {metric!r}")
    return out


def multiclass_losses(proba: np.ndarray, classes: Sequence[Any], labels: Sequence[Any],
                      metric: str) -> np.ndarray:
    """Losses of probability rows over ``classes`` against class labels; a label the
    model has no class for gets probability 0 (log loss -log 1e-15 = 34.5)."""
    index = {c: i for i, c in enumerate(classes)}
    at = np.array([index.get(label, -1) for label in labels], dtype=np.int64)
    n = len(at)
    known = at >= 0
    p_label = np.zeros(n)
    p_label[known] = proba[np.flatnonzero(known), at[known]]
    if metric == "log_loss":
        out: np.ndarray = -np.log(np.clip(p_label, EPS, 1.0))
        return out
    if metric == "brier":
        # sum_k p_k^2 - 2 p_label + 1 (the label's own class counts once)
        return np.asarray((proba ** 2).sum(axis=1) - 2 * p_label + 1.0)
    if metric == "error_rate":
        wrong: np.ndarray = (np.argmax(proba, axis=1) != at).astype(float)
        return wrong
    raise ValueError(f"unknown metric {metric!r} for a multiclass model")


def served_losses(pairs: Sequence[dict[str, Any]], task: str, metric: str,
                  threshold: float = 0.5) -> np.ndarray:
    """The loss of what was served, per scored pair: a binary pair's prediction is
    P(1); a multiclass pair needs its ``probabilities`` for ``log_loss`` and ``brier``
    (NaN without them) and its predicted class for ``error_rate``."""
    if task == "regression":
        return np.array([p["error"] for p in pairs], dtype=float) ** 2
    if task == "binary":
        return binary_losses(np.array([_number(p["prediction"]) for p in pairs]),
                             np.array([_number(p["label"]) for p in pairs]), metric,
                             threshold)
    out = np.full(len(pairs), np.nan)
    for i, pair in enumerate(pairs):
        label = pair["label"]
        if metric == "error_rate":
            out[i] = float(pair["prediction"] != label)
            continue
        probabilities = pair.get("probabilities")
        if not probabilities:
            continue
        p_label = float(probabilities.get(label, 0.0))
        if metric == "log_loss":
            out[i] = -np.log(max(p_label, EPS))
        else:
            out[i] = sum(v * v for v in probabilities.values()) - 2 * p_label + 1.0
    return out


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else np.nan
