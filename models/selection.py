"""Feature selection before the fit (the seed's training, step 2), numpy only.

1. **Constant** features (no spread in the training rows) are dropped.
2. **Near-duplicates**: a feature whose absolute correlation with a feature kept
   before it is at least ``duplicate_corr`` (0.99) is dropped, naming that feature.
3. **Forward selection by walk-forward CV** on the standardised design: starting
   from the intercept alone, the feature that lowers the walk-forward validation
   MSE (every block predicted by a least-squares fit on the blocks before it, never
   on its future) the most is added, while it lowers it by more than ``min_gain``
   (0.5 %). The rest are dropped as ``not selected`` with the change they would have
   made at the last step. What is minimised is a :class:`Criterion`: the MSE of least
   squares for regression (:data:`MSE`), the log loss of a logistic or softmax fit for
   classifiers (:mod:`driftline.models.classifier_training`).

The model keeps every feature name, with coefficient 0 for the dropped ones, so
serving code and the next retrain see the same features; the metadata says which
were kept, which dropped and why (``Selected.describe``).

>>> rng = np.random.default_rng(1)
>>> X = rng.normal(size=(600, 4)); X[:, 3] = 5.0
>>> y = 2 * X[:, 0] + rng.normal(0, 0.5, 600)
>>> fit = train_selected(X, y, ["signal", "noise1", "noise2", "flat"])
>>> fit.selection.kept, [(d["feature"], d["reason"].split(":")[0]) for d in fit.selection.dropped]
(['signal'], [('noise1', 'not selected'), ('noise2', 'not selected'), ('flat', 'constant')])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline.models import classifier_training as clf
from driftline.models.forward import Selection, select
from driftline.models.linear import LinearModel
from driftline.models.training import DEFAULT_ALPHAS, Fit, train_ridge


@dataclass
class SelectedFit(Fit):
    selection: Selection | None = None


def train_selected(X: np.ndarray, y: np.ndarray, feature_names: Sequence[str], *,
                   task: str = "regression", alphas: Sequence[float] = DEFAULT_ALPHAS,
                   folds: int = 5, max_closed_form_rows: int = 200_000
                   ) -> Any:  # a SelectedFit, or classifier_training.ClassifierFit
    """:func:`select`, then :func:`~driftline.models.training.train_ridge` on the kept
    features; the model has every feature, the dropped ones with coefficient 0.

    ``task`` ``"binary"`` (``y`` of 0/1) and ``"multiclass"`` (``y`` of class names) train
    a classifier the same way, selecting by log loss
    (:func:`~driftline.models.classifier_training.train_logistic`, ``train_softmax``);
    ``max_closed_form_rows`` is regression's only."""
    if task in ("binary", "multiclass"):
        train = clf.train_logistic if task == "binary" else clf.train_softmax
        return train(X, y, feature_names, alphas=alphas, folds=folds, select_features=True)
    if task != "regression":
        raise ValueError(f"task must be regression, binary or multiclass, not {task!r}")
    names = list(feature_names)
    if len(y) < 2 * max(folds, 2):
        raise ValueError(f"need at least {2 * max(folds, 2)} rows to train, got {len(y)}")
    selection = select(X, y, names, folds=folds)
    if not selection.kept:  # nothing predicts better than the mean: an intercept model
        mean = X.mean(axis=0)
        scale = np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
        model = LinearModel(np.zeros(len(names)), float(y.mean()), names, mean=mean,
                            scale=scale)
        return SelectedFit(model, 0.0, "intercept_only", {}, selection)
    keep = [names.index(n) for n in selection.kept]
    fit = train_ridge(X[:, keep], y, selection.kept, alphas=alphas, folds=folds,
                      max_closed_form_rows=max_closed_form_rows)
    coef, mean, spread = np.zeros(len(names)), X.mean(axis=0), X.std(axis=0)
    scale = np.where(spread > 0, spread, 1.0)
    sub = fit.model
    coef[keep] = sub.coef
    if sub.mean is not None:  # train_ridge standardises: its mean and scale are the kept
        mean[keep] = sub.mean  # features' own
    if sub.scale is not None:
        scale[keep] = sub.scale
    model = LinearModel(coef, sub.intercept, names, mean=mean, scale=scale)
    return SelectedFit(model, fit.alpha, fit.method, fit.cv_mse, selection)
