"""Training a challenger with numpy: ridge regression, closed form or mini-batch SGD.

Pure functions, no Kafka or Redis: the training worker (issue 5) feeds them scored
pairs and stores the result in the registry.

>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(500, 2)); y = X @ [3.0, -2.0] + 1.0 + rng.normal(0, 0.1, 500)
>>> fit = train_ridge(X, y, ["a", "b"])
>>> np.round(fit.model.predict([[1.0, 1.0]]), 1).tolist()
[2.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftline.models.linear import LinearModel
from driftline.models.losses import NAMES, model_losses
from driftline.models.wire.features import number_or_nan

DEFAULT_ALPHAS = (0.0, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)


def rows_to_arrays(pairs: Sequence[dict[str, Any]], feature_names: Sequence[str],
                   task: str = "regression") -> tuple[np.ndarray, np.ndarray, int]:
    """Scored pairs -> (X in ``feature_names`` order, labels, rows dropped).

    A row missing a feature, with null or a category where a number belongs, or with a
    non-finite value anywhere, is dropped; so is a label that does not fit ``task``: a
    class (a string) for a regression or a binary model (whose labels are 0/1), a number
    for a multiclass one (whose labels, an object array, are class names)."""
    X = np.array([[number_or_nan(p["features"].get(n)) for n in feature_names] for p in pairs],
                 dtype=float).reshape(len(pairs), len(feature_names))
    y, fits = labels(pairs, task)
    keep = np.isfinite(X).all(axis=1) & fits
    return X[keep], y[keep], int((~keep).sum())


def labels(pairs: Sequence[dict[str, Any]], task: str) -> tuple[np.ndarray, np.ndarray]:
    """The pairs' labels (floats; a multiclass model's class names, objects) and which of
    them fit ``task`` (a number for a regression, 0 or 1 for a binary model, a class name
    for a multiclass one)."""
    if task == "multiclass":
        y = np.array([p["label"] if type(p["label"]) is str else None for p in pairs],
                     dtype=object)
        return y, y != None  # noqa: E711 (elementwise)
    y = np.array([number_or_nan(p["label"]) for p in pairs], dtype=float)
    fits = np.isfinite(y) & ((y == 0) | (y == 1) if task == "binary" else True)
    return y, np.asarray(fits, dtype=bool)


def standardisation(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales (a constant column gets scale 1, not a division by 0)."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    return mean, np.where(scale > 0, scale, 1.0)


def ridge_closed_form(Xs: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """argmin ||Xs w + b - y||^2 + alpha ||w||^2 (intercept not penalised).

    Solved with ``lstsq`` on the augmented system [Xs 1; sqrt(alpha) I 0] [w; b] = [y; 0],
    which stays well-behaved when Xs is rank-deficient."""
    n, d = Xs.shape
    A = np.vstack([np.hstack([Xs, np.ones((n, 1))]),
                   np.hstack([math.sqrt(alpha) * np.eye(d), np.zeros((d, 1))])])
    target = np.concatenate([y, np.zeros(d)])
    solution, *_ = np.linalg.lstsq(A, target, rcond=None)
    return solution[:d], float(solution[d])


def ridge_sgd(Xs: np.ndarray, y: np.ndarray, alpha: float, *, epochs: int = 200,
              batch_size: int = 256, learning_rate: float = 0.05, seed: int = 0
              ) -> tuple[np.ndarray, float]:
    """The same objective as :func:`ridge_closed_form`, by mini-batch gradient *descent*.

    Per sample the objective is (x.w + b - y)^2 + (alpha / n) ||w||^2, whose gradient is
    2 r x + 2 (alpha / n) w with r = x.w + b - y; each step moves *against* the mean
    gradient of a batch. For windows too large for one lstsq: only a batch is dense."""
    n, d = Xs.shape
    rng = np.random.default_rng(seed)
    # The gradient is Lipschitz with constant 2 (lambda_max(X'X/n) + alpha/n), plus 2 for
    # the intercept; a step above 1/L diverges (correlated features make lambda_max large).
    sample = Xs[rng.choice(n, size=min(n, 20_000), replace=False)]
    lam = float(np.linalg.eigvalsh(sample.T @ sample / len(sample))[-1]) if d else 0.0
    learning_rate = min(learning_rate, 0.5 / (max(lam, 1.0) + alpha / n))
    w, b = np.zeros(d), float(y.mean())
    for epoch in range(epochs):
        rate = learning_rate / (1.0 + epoch / 20.0)
        for idx in np.array_split(rng.permutation(n), max(1, n // batch_size)):
            Xb = Xs[idx]
            residual = Xb @ w + b - y[idx]
            grad_w = 2.0 * Xb.T @ residual / len(idx) + 2.0 * alpha / n * w
            grad_b = 2.0 * float(residual.mean())
            w -= rate * grad_w
            b -= rate * grad_b
    if not (np.all(np.isfinite(w)) and math.isfinite(b)):
        raise ValueError("gradient descent diverged (non-finite weights)")
    return w, b


def cv_alpha(Xs: np.ndarray, y: np.ndarray, alphas: Sequence[float] = DEFAULT_ALPHAS,
             folds: int = 5) -> tuple[float, dict[float, float]]:
    """The alpha with the lowest mean validation MSE, walking forward through time: the
    rows (in time order) are cut into ``folds`` blocks, and each block after the first is
    predicted by a model trained on all the blocks before it - never on its future."""
    n = len(y)
    folds = max(2, min(folds, n // 2))
    bounds = np.linspace(0, n, folds + 1).astype(int)
    scores: dict[float, float] = {}
    for alpha in alphas:
        errors = []
        for lo, hi in zip(bounds[1:], bounds[2:]):
            w, b = ridge_closed_form(Xs[:lo], y[:lo], alpha)
            errors.append(float(np.mean((Xs[lo:hi] @ w + b - y[lo:hi]) ** 2)))
        scores[alpha] = float(np.mean(errors))
    best = min(scores, key=lambda a: (scores[a], a))
    return best, scores


@dataclass
class Fit:
    model: LinearModel
    alpha: float
    method: str
    cv_mse: dict[float, float] = field(default_factory=dict)


def train_ridge(X: np.ndarray, y: np.ndarray, feature_names: Sequence[str], *,
                alphas: Sequence[float] = DEFAULT_ALPHAS, folds: int = 5,
                max_closed_form_rows: int = 200_000) -> Fit:
    """Standardise, pick alpha by walk-forward CV, fit; SGD above ``max_closed_form_rows``."""
    if len(y) < 2 * max(folds, 2):
        raise ValueError(f"need at least {2 * max(folds, 2)} rows to train, got {len(y)}")
    mean, scale = standardisation(X)
    Xs = (X - mean) / scale
    cv_rows = min(len(y), max_closed_form_rows)
    alpha, scores = cv_alpha(Xs[-cv_rows:], y[-cv_rows:], alphas, folds)
    if len(y) <= max_closed_form_rows:
        w, b, method = *ridge_closed_form(Xs, y, alpha), "closed_form"
    else:
        w, b, method = *ridge_sgd(Xs, y, alpha), "sgd"
    model = LinearModel(w, b, list(feature_names), mean=mean, scale=scale)
    return Fit(model, alpha, method, scores)


def time_holdout(n: int, fraction: float = 0.2) -> tuple[slice, slice]:
    """Train on the oldest rows, hold out the most recent ``fraction`` (rows are in time order)."""
    if not 0 < fraction < 1:
        raise ValueError("fraction must be between 0 and 1")
    cut = n - max(1, int(round(n * fraction)))
    return slice(0, cut), slice(cut, n)


@dataclass(frozen=True)
class Decision:
    promote: bool
    challenger_loss: float
    champion_loss: float | None
    reason: str
    metric: str = "mse"


def decide(challenger: Any, champion: Any | None, X_holdout: Any, y_holdout: np.ndarray,
           margin: float = 0.02, metric: str = "mse", threshold: float = 0.5) -> Decision:
    """Promote when the challenger's mean holdout loss (``metric``, :mod:`.losses`: ``mse``
    for a regression, ``log_loss``, ``brier`` or ``error_rate`` for a classifier) beats the
    champion's by ``margin`` (a fraction: 0.02 = at least 2 % lower), both scored on the
    same holdout rows (those the champion can score: ``X_holdout`` may be raw feature
    dicts, see :func:`~driftline.models.losses.model_losses`). A binary model's
    ``error_rate`` counts P(1) at or above ``threshold`` (its ``decision_threshold``) as a
    1. A champion of another task (a regression replaced by a classifier) is not
    comparable: the challenger is promoted on its own."""
    name = NAMES.get(metric, metric)
    mine = model_losses(challenger, X_holdout, y_holdout, metric, threshold)
    challenger_loss = float(np.mean(mine))
    if not math.isfinite(challenger_loss):
        return Decision(False, challenger_loss, None,
                        f"challenger's holdout {name} is not finite", metric)
    if champion is None:
        return Decision(True, challenger_loss, None, "no champion yet", metric)
    if champion.task != challenger.task:
        return Decision(True, challenger_loss, None,
                        f"the champion is a {champion.task} model, not comparable with a "
                        f"{challenger.task} one", metric)
    theirs = model_losses(champion, X_holdout, y_holdout, metric, threshold)
    both = np.isfinite(theirs)  # a champion that cannot score a row (a category where it
    if not both.all():          # takes numbers, a missing value): compared where it can
        if not both.any():
            return Decision(True, challenger_loss, None, "the champion cannot score any "
                            "holdout row (its features are missing or categories there)",
                            metric)
        challenger_loss = float(np.mean(mine[both]))
    champion_loss = float(np.mean(theirs[both]))
    limit = champion_loss * (1.0 - margin)
    if challenger_loss < limit:
        return Decision(True, challenger_loss, champion_loss,
                        f"holdout {name} {challenger_loss:.4g} beats the champion's "
                        f"{champion_loss:.4g} by more than {margin:.0%}", metric)
    return Decision(False, challenger_loss, champion_loss,
                    f"holdout {name} {challenger_loss:.4g} is not {margin:.0%} below the "
                    f"champion's {champion_loss:.4g}", metric)
