"""Forward feature selection by walk-forward CV, for any loss (:class:`Criterion`).

The mechanism of :mod:`driftline.models.selection` (regression, by MSE) and of
:mod:`driftline.models.classifier_training` (by log loss): both import it, neither
imports the other's trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftline.models.training import ridge_closed_form

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
