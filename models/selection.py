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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftline.models.linear import LinearModel
from driftline.models.training import DEFAULT_ALPHAS, Fit, ridge_closed_form, train_ridge

DUPLICATE_CORR = 0.99
MIN_GAIN = 0.005


@dataclass
class Selection:
    kept: list[str]
    dropped: list[dict[str, Any]]          # {"feature", "reason"}
    path: list[dict[str, Any]] = field(default_factory=list)  # {"feature", "cv_mse"} per step
    loss: str = "MSE"                      # what the path's CV numbers measure

    def describe(self) -> dict[str, Any]:
        # Regression's description is unchanged from before classifiers (registry metadata
        # written then reads the same); a classifier's names its loss.
        method = "forward selection, walk-forward CV"
        return {"kept": self.kept, "dropped": self.dropped, "path": self.path,
                "method": method if self.loss == "MSE" else f"{method} {self.loss}"}


@dataclass
class SelectedFit(Fit):
    selection: Selection | None = None


def walk_forward_mse(Xs: np.ndarray, y: np.ndarray, columns: Sequence[int],
                     folds: int = 5) -> float:
    """Mean validation MSE of least squares on ``columns``, walking forward in time."""
    n = len(y)
    folds = max(2, min(folds, n // 2))
    bounds = np.linspace(0, n, folds + 1).astype(int)
    errors = []
    for lo, hi in zip(bounds[1:], bounds[2:]):
        if columns:
            w, b = ridge_closed_form(Xs[:lo][:, list(columns)], y[:lo], 1e-6)
            predicted = Xs[lo:hi][:, list(columns)] @ w + b
        else:
            predicted = np.full(hi - lo, y[:lo].mean())
        errors.append(float(np.mean((predicted - y[lo:hi]) ** 2)))
    return float(np.mean(errors))


@dataclass(frozen=True)
class Criterion:
    """What forward selection minimises: ``score(Xs, y, columns, folds)``, the walk-forward
    validation loss of a lightly regularised fit on ``columns`` of the standardised design
    (``columns`` empty: the intercept alone); ``name`` goes into the reasons, ``key``
    into the path."""

    score: Callable[[np.ndarray, np.ndarray, Sequence[int], int], float]
    name: str
    key: str


MSE = Criterion(walk_forward_mse, "MSE", "cv_mse")


def select(X: np.ndarray, y: np.ndarray, names: Sequence[str], *,
           duplicate_corr: float = DUPLICATE_CORR, min_gain: float = MIN_GAIN,
           folds: int = 5, criterion: Criterion = MSE) -> Selection:
    """Which features to keep, and why each of the others was dropped.

    ``y`` is whatever ``criterion.score`` reads: the target for :data:`MSE`, class
    codes for a classifier's log loss; the constant and near-duplicate rules read X only."""
    names = list(names)
    dropped: list[dict[str, Any]] = []
    spread = X.std(axis=0)
    candidates: list[int] = []
    for j, name in enumerate(names):
        if not spread[j] > 1e-12 * max(1.0, abs(float(X[:, j].mean()))):
            dropped.append({"feature": name, "reason": "constant: no spread in the "
                                                       "training rows"})
            continue
        Xs = (X[:, j] - X[:, j].mean()) / spread[j]
        twin = next((k for k in candidates
                     if abs(float(np.mean(Xs * (X[:, k] - X[:, k].mean()) / spread[k])))
                     >= duplicate_corr), None)
        if twin is not None:
            r = float(np.corrcoef(X[:, j], X[:, twin])[0, 1])
            dropped.append({"feature": name, "reason": f"near-duplicate of {names[twin]} "
                                                       f"(r = {r:.3f})"})
            continue
        candidates.append(j)
    Xs = (X - X.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    chosen: list[int] = []
    score, key = criterion.score, criterion.key
    current = score(Xs, y, chosen, folds)
    path: list[dict[str, Any]] = [{"feature": None, key: current}]
    gains: dict[int, float] = {}
    while len(chosen) < len(candidates):
        trials = {j: score(Xs, y, chosen + [j], folds) for j in candidates if j not in chosen}
        best = min(trials, key=lambda j: (trials[j], j))
        for j, loss in trials.items():
            gains[j] = 1.0 - loss / current if current > 0 else 0.0
        if not current > 0 or gains[best] <= min_gain:
            break
        chosen.append(best)
        current = trials[best]
        path.append({"feature": names[best], key: current})
    for j in candidates:
        if j not in chosen:
            dropped.append({"feature": names[j], "reason": (
                f"not selected: adding it changes the walk-forward CV {criterion.name} by "
                f"{-gains.get(j, 0.0):+.2%} (needs below {-min_gain:.1%})")})
    order = {n: i for i, n in enumerate(names)}
    dropped.sort(key=lambda d: order[d["feature"]])
    return Selection([names[j] for j in sorted(chosen)], dropped, path, criterion.name)


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
        # Imported here: classifier_training imports this module (select, Criterion).
        from driftline.models import classifier_training as clf

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
