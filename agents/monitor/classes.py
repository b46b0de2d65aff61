"""Classifier metrics over a version's rolling window, in numpy: binary (ROC AUC, PR AUC,
and the thresholded ones) and multiclass (accuracy, macro and weighted F1, per-class
precision and recall, log loss).

A binary model's prediction is the probability of 1, its label 0 or 1; a multiclass
model's prediction and label are class codes (its :class:`~.categories.Vocabulary`),
and its pairs' probability of the true class, where the prediction sent probabilities,
gives the log loss.

>>> y = np.array([0.0, 0.0, 1.0, 1.0])
>>> p = np.array([0.1, 0.4, 0.35, 0.8])
>>> float(roc_auc(y, p)), round(float(average_precision(y, p)), 4)
(0.75, 0.8333)
>>> r = multiclass_report(np.array([0.0, 1, 2, 2]), np.array([0.0, 1, 1, 2]),
...                       ["a", "b", "c"], np.array([0.9, 0.6, 0.2, np.nan]))
>>> r["rolling_accuracy"], round(r["rolling_macro_f1"], 4), r["per_class"]["b"]
(0.75, 0.7778, {'precision': 1.0, 'recall': 0.5, 'support': 2})
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from driftline.agents.monitor.categories import Vocabulary
from driftline.agents.monitor.metrics import RollingErrors
from driftline.agents.monitor.window import Ring

PER_CLASS = 10        # classes reported one by one (the most frequent labels); the rest: _other
EPS = 1e-15           # probabilities are clipped to [EPS, 1 - EPS] for the log loss


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """The area under the ROC curve (ties count half: the Mann-Whitney statistic); None
    without both classes."""
    positive = labels >= 0.5
    n_pos = int(positive.sum())
    n_neg = len(labels) - n_pos
    if not n_pos or not n_neg:
        return None
    ranks = stats.rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """The area under the precision-recall curve as average precision (scikit-learn's
    ``average_precision_score``: precision at each distinct score, weighted by the recall
    it adds); None without a positive."""
    positive = labels >= 0.5
    n_pos = int(positive.sum())
    if not n_pos:
        return None
    order = np.argsort(-scores, kind="mergesort")
    hits = positive[order]
    ends = np.r_[np.flatnonzero(np.diff(scores[order])), len(scores) - 1]  # distinct scores
    tps = np.cumsum(hits)[ends]
    precision = tps / (ends + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def binary_report(predictions: np.ndarray, labels: np.ndarray,
                  threshold: float) -> dict[str, float | None]:
    """Accuracy, precision, recall and F1 at ``threshold``; log loss, Brier score, ROC AUC
    and PR AUC of the window (labels 0/1, predictions P(1))."""
    names = ("rolling_accuracy", "rolling_precision", "rolling_recall", "rolling_f1",
             "rolling_log_loss", "rolling_brier", "rolling_roc_auc", "rolling_pr_auc")
    if not len(labels):
        return dict.fromkeys(names)
    y = labels >= 0.5
    yhat = predictions >= threshold
    tp = int(np.sum(y & yhat))
    precision = tp / int(np.sum(yhat)) if yhat.any() else 0.0
    recall = tp / int(np.sum(y)) if y.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    p = np.clip(predictions, EPS, 1 - EPS)
    return {"rolling_accuracy": float(np.mean(y == yhat)), "rolling_precision": precision,
            "rolling_recall": recall, "rolling_f1": f1,
            "rolling_log_loss": float(-np.mean(np.where(y, np.log(p), np.log(1 - p)))),
            "rolling_brier": float(np.mean((predictions - labels) ** 2)),
            "rolling_roc_auc": roc_auc(labels, predictions),
            "rolling_pr_auc": average_precision(labels, predictions)}


def multiclass_report(predictions: np.ndarray, labels: np.ndarray, classes: list[str],
                      p_true: np.ndarray | None = None) -> dict[str, Any]:
    """Accuracy, macro and weighted F1, per-class precision, recall and support (the
    :data:`PER_CLASS` most frequent labels, the rest pooled as ``_other``), and the log
    loss of the pairs whose prediction sent probabilities (``p_true``: each pair's
    probability of its true class, NaN where none came)."""
    if not len(labels):
        return {"rolling_accuracy": None, "rolling_macro_f1": None,
                "rolling_weighted_f1": None, "rolling_log_loss": None, "per_class": {}}
    pred, true = predictions.astype(np.int64), labels.astype(np.int64)
    k = max(len(classes), int(pred.max()) + 1, int(true.max()) + 1)
    right = pred == true
    tp = np.bincount(true[right], minlength=k).astype(float)
    support = np.bincount(true, minlength=k).astype(float)
    predicted = np.bincount(pred, minlength=k).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k),
                   where=precision + recall > 0)
    present = (support > 0) | (predicted > 0)
    top = [int(c) for c in np.argsort(-support, kind="stable")[:PER_CLASS] if support[c] > 0]
    per_class = {classes[c] if c < len(classes) else str(c): {
        "precision": float(precision[c]), "recall": float(recall[c]), "support": int(support[c])}
        for c in top}
    rest = np.ones(k, bool)
    rest[top] = False
    if (rest & present).any():  # micro-averaged over the rest
        r_tp, r_pred, r_sup = tp[rest].sum(), predicted[rest].sum(), support[rest].sum()
        per_class["_other"] = {"precision": float(r_tp / r_pred) if r_pred else 0.0,
                               "recall": float(r_tp / r_sup) if r_sup else 0.0,
                               "support": int(r_sup)}
    log_loss = None
    if p_true is not None and np.isfinite(p_true).any():
        known = p_true[np.isfinite(p_true)]
        log_loss = float(-np.mean(np.log(np.clip(known, EPS, 1.0))))
    return {"rolling_accuracy": float(right.mean()),
            "rolling_macro_f1": float(f1[present].mean()),
            "rolling_weighted_f1": float(np.sum(f1 * support) / support.sum()),
            "rolling_log_loss": log_loss, "per_class": per_class}


def task_metrics(task: str, rolling: RollingErrors, threshold: float,
                 classes: Vocabulary | None, p_true: Ring) -> dict[str, Any]:
    """A classifier's rolling metrics over its window (none more for a regression)."""
    if task == "binary":
        return binary_report(rolling.predictions, rolling.labels, threshold)
    if task == "multiclass":
        return multiclass_report(rolling.predictions, rolling.labels,
                                 classes.labels() if classes else [],
                                 p_true.values() if len(p_true) else None)
    return {}
