"""Training classifiers with numpy and L-BFGS: L2-penalised logistic and softmax regression.

The counterpart of :mod:`driftline.models.training` for task ``binary``
(:class:`~driftline.models.classifiers.LogisticModel`) and ``multiclass``
(:class:`~driftline.models.classifiers.SoftmaxModel`). Pure functions, no Kafka or Redis.

* **Objective**, on standardised features, in ridge's sum form: the *sum* of the rows' log
  losses plus ``alpha * ||W||^2`` (the intercepts are not penalised), so one alpha weighs
  the same against the data here as in :func:`~driftline.models.training.ridge_closed_form`.
  It is minimised with scipy's L-BFGS-B and the analytic gradient (divided by the row count
  inside, which changes the scale the stopping rule sees, not the minimiser).
* **Separable data**: at ``alpha = 0`` the weights have no finite minimiser; L-BFGS stops
  once the gradient is below its tolerance (at most :data:`MAX_ITER` iterations), which
  leaves them large but finite. A candidate whose solution is not finite fails: its CV loss
  is ``inf``, and the final fit falls back to the next-best alpha.
* **alpha by walk-forward CV**, as :func:`~driftline.models.training.cv_alpha`: the rows (in
  time order) are cut into ``folds`` blocks, each block after the first scored by a model
  trained on all the blocks before it, by the mean log loss with probabilities clipped to
  [1e-12, 1 - 1e-12]. A validation row whose class has no row in the fold's training rows
  is scored with probability 1e-12 (the same for every candidate, so it shifts the losses
  without changing their order).
* **Feature selection** (``select_features=True``, what
  :func:`~driftline.models.selection.train_selected` asks for): the rules of
  :func:`~driftline.models.selection.select`, forward selection minimising the walk-forward
  log loss of a lightly penalised fit (:data:`SELECTION_ALPHA`). The model keeps every
  feature, the dropped ones with coefficient 0; if none is kept, it is the intercept alone
  (the base rate, or the class frequencies).
* **Cost**: CV (for alpha and for selection) reads the most recent ``max_cv_rows`` rows
  (20,000 for logistic, 10,000 for softmax), the final fit all of them. Selection, CV and
  fit of 20,000 rows x 10 features took 0.25 s (binary) and 1.3 s (10 classes) on 2
  cores with ``OPENBLAS_NUM_THREADS=1``; OpenBLAS's own threads only slow these small
  products (0.3 to 5 s for the binary case while another process held a core).

>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(600, 2)); y = (X @ [2.0, -1.0] + rng.logistic(size=600) > 0) * 1.0
>>> fit = train_logistic(X, y, ["a", "b"])
>>> np.sign(fit.model.coef).tolist(), round(fit.model.predict({"a": 1.0, "b": -1.0}), 2)
([1.0, -1.0], 0.92)
>>> labels = np.array(["lo", "mid", "hi"])[np.digitize(X[:, 0], [-0.5, 0.5])]
>>> multi = train_softmax(X, labels, ["a", "b"])
>>> multi.model.classes, multi.model.predict([[-2.0, 0.0], [2.0, 0.0]]).tolist()
(['hi', 'lo', 'mid'], ['lo', 'hi'])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from driftline.models.classifiers import LogisticModel, SoftmaxModel
from driftline.models.forward import Criterion, Selection, select
from driftline.models.training import DEFAULT_ALPHAS, standardisation

EPS = 1e-12            # probabilities are clipped to [EPS, 1 - EPS] in the log loss
MAX_ITER = 500         # L-BFGS iterations per fit
SELECTION_ALPHA = 1e-3  # forward selection's light penalty (sum form: negligible beside n)
MAX_CV_ROWS = 20_000    # train_logistic's; train_softmax's is 10,000 (k times the cost)


@dataclass
class ClassifierFit:
    """What a classifier trainer returns; the retrain worker reads ``model``, ``alpha``,
    ``method`` and ``selection`` (its ``describe()`` goes into the registry metadata)."""

    model: LogisticModel | SoftmaxModel
    alpha: float
    method: str
    cv_log_loss: dict[float, float] = field(default_factory=dict)
    selection: Selection | None = None


# --- objectives: value and gradient of sum(log loss) + alpha ||W||^2 -----------------------

def logistic_objective(params: np.ndarray, Xs: np.ndarray, y: np.ndarray, alpha: float
                       ) -> tuple[float, np.ndarray]:
    """``params = [w (d), b]``; ``y`` holds 0/1."""
    w, b = params[:-1], params[-1]
    z = Xs @ w + b
    # log(1 + e^z) and sigmoid(z) from one exp(-|z|): stable, and 5x faster than logaddexp
    e = np.exp(-np.abs(z))
    loss = float(np.sum(np.maximum(z, 0.0) + np.log1p(e) - y * z)) + alpha * float(w @ w)
    residual = np.where(z >= 0, 1.0, e) / (1.0 + e) - y
    grad = np.empty_like(params)
    grad[:-1] = Xs.T @ residual + 2.0 * alpha * w
    grad[-1] = residual.sum()
    return loss, grad


def softmax_objective(params: np.ndarray, Xs: np.ndarray, y: np.ndarray, alpha: float,
                      k: int) -> tuple[float, np.ndarray]:
    """``params = [W (k x d) row-major, b (k)]``; ``y`` holds class codes 0..k-1."""
    n, d = Xs.shape
    W, b = params[:k * d].reshape(k, d), params[k * d:]
    # Scores as k x n, not n x k: numpy reduces a short last axis slowly (10x here), and
    # X @ W.T with a transposed W misses BLAS.
    Z = W @ Xs.T + b[:, None]
    Z -= Z.max(axis=0)
    E = np.exp(Z)
    total = E.sum(axis=0)
    rows = np.arange(n)
    loss = float(np.sum(np.log(total)) - Z[y, rows].sum()) + alpha * float(np.sum(W * W))
    P = E / total
    P[y, rows] -= 1.0
    grad = np.concatenate([(P @ Xs + 2.0 * alpha * W).ravel(), P.sum(axis=1)])
    return loss, grad


def _lbfgs(objective: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray,
           n: int) -> np.ndarray | None:
    """Minimise objective/n; None when the solution is not finite."""
    def scaled(p: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = objective(p)
        return value / n, grad / n

    with np.errstate(over="ignore", invalid="ignore"):
        result = minimize(scaled, x0, method="L-BFGS-B", jac=True,
                          options={"maxiter": MAX_ITER})
    x: np.ndarray = result.x
    return x if np.all(np.isfinite(x)) and math.isfinite(float(result.fun)) else None


# --- the two families: fit, probability of the true class, intercept-only -------------------

class _Binary:
    """Logistic regression on 0/1 labels: params ``[w, b]``."""

    def fit(self, Xs: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray | None:
        rate = min(max(float(y.mean()), EPS), 1.0 - EPS)
        x0 = np.zeros(Xs.shape[1] + 1)
        x0[-1] = math.log(rate / (1.0 - rate))
        if Xs.shape[1] == 0 or y.min() == y.max():  # one class: the (clipped) base rate
            return x0
        return _lbfgs(lambda p: logistic_objective(p, Xs, y, alpha), x0, len(y))

    def fold_loss(self, Xtr: np.ndarray, ytr: np.ndarray, Xva: np.ndarray, yva: np.ndarray,
                  alpha: float) -> float:
        params = self.fit(Xtr, ytr, alpha)
        if params is None:
            return math.inf
        p = np.exp(-np.logaddexp(0.0, -(Xva @ params[:-1] + params[-1])))  # sigmoid
        p = np.clip(p, EPS, 1.0 - EPS)
        return float(-np.mean(yva * np.log(p) + (1.0 - yva) * np.log1p(-p)))


class _Multinomial:
    """Softmax regression on class codes 0..k-1: params ``[W (k x d), b (k)]``. A fit reads
    only the classes its rows have (``present``): absent ones would push intercepts to
    -inf."""

    def __init__(self, k: int) -> None:
        self.k = k

    def fit(self, Xs: np.ndarray, y: np.ndarray, alpha: float, k: int | None = None
            ) -> np.ndarray | None:
        k = self.k if k is None else k
        d = Xs.shape[1]
        counts = np.bincount(y, minlength=k)
        x0 = np.zeros(k * d + k)
        x0[k * d:] = np.log(np.maximum(counts, 1) / len(y))
        x0[k * d:] -= x0[k * d:].mean()
        if d == 0 or k == 1:
            return x0
        params = _lbfgs(lambda p: softmax_objective(p, Xs, y, alpha, k), x0, len(y))
        if params is not None:  # the intercepts are free up to a shift: centre them
            params[k * d:] -= params[k * d:].mean()
        return params

    def fold_loss(self, Xtr: np.ndarray, ytr: np.ndarray, Xva: np.ndarray, yva: np.ndarray,
                  alpha: float) -> float:
        present, local = np.unique(ytr, return_inverse=True)
        k, d = len(present), Xtr.shape[1]
        params = self.fit(Xtr, local, alpha, k)
        if params is None:
            return math.inf
        Z = params[:k * d].reshape(k, d) @ Xva.T + params[k * d:, None]
        Z -= Z.max(axis=0)
        P = np.exp(Z)
        P /= P.sum(axis=0)
        pos = np.minimum(np.searchsorted(present, yva), k - 1)
        seen = present[pos] == yva
        p = np.where(seen, P[pos, np.arange(len(yva))], EPS)
        return float(-np.mean(np.log(np.clip(p, EPS, 1.0 - EPS))))


_Family = _Binary | _Multinomial


def walk_forward_log_loss(family: _Family, Xs: np.ndarray, y: np.ndarray, alpha: float,
                          folds: int = 5) -> float:
    """Mean validation log loss walking forward in time (each block scored by a fit on the
    blocks before it), as ``cv_alpha`` and ``walk_forward_mse`` cut them."""
    n = len(y)
    folds = max(2, min(folds, n // 2))
    bounds = np.linspace(0, n, folds + 1).astype(int)
    return float(np.mean([family.fold_loss(Xs[:lo], y[:lo], Xs[lo:hi], y[lo:hi], alpha)
                          for lo, hi in zip(bounds[1:], bounds[2:])]))


def _criterion(family: _Family, max_rows: int) -> Criterion:
    def score(Xs: np.ndarray, y: np.ndarray, columns: Sequence[int], folds: int) -> float:
        return walk_forward_log_loss(family, Xs[-max_rows:, list(columns)], y[-max_rows:],
                                     SELECTION_ALPHA, folds)
    return Criterion(score, "log loss", "cv_loss")


def cv_alpha_log_loss(family: _Family, Xs: np.ndarray, y: np.ndarray,
                      alphas: Sequence[float] = DEFAULT_ALPHAS, folds: int = 5
                      ) -> tuple[float, dict[float, float]]:
    """The alpha with the lowest walk-forward mean validation log loss (ties: the smaller,
    as ``cv_alpha``), and every candidate's loss (``inf``: a fit of it failed)."""
    scores = {alpha: walk_forward_log_loss(family, Xs, y, alpha, folds) for alpha in alphas}
    return min(scores, key=lambda a: (scores[a], a)), scores


# --- the trainers -----------------------------------------------------------------------------

def _train(family: _Family, X: np.ndarray, y: np.ndarray, names: list[str],
           alphas: Sequence[float], folds: int, select_features: bool, max_cv_rows: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, str, dict[float, float],
                      Selection | None]:
    """(params over every feature, mean, scale, alpha, method, CV losses, selection)."""
    if X.ndim != 2 or X.shape != (len(y), len(names)):
        raise ValueError(f"X must be {len(y)} rows x {len(names)} features, got {X.shape}")
    if len(y) < 2 * max(folds, 2):
        raise ValueError(f"need at least {2 * max(folds, 2)} rows to train, got {len(y)}")
    if not alphas:
        raise ValueError("alphas is empty")
    mean, scale = standardisation(X)
    Xs = (X - mean) / scale
    selection = (select(X, y, names, folds=folds, criterion=_criterion(family, max_cv_rows))
                 if select_features else None)
    keep = ([names.index(n) for n in selection.kept] if selection is not None
            else list(range(len(names))))
    sub = Xs[:, keep]
    if not keep:
        return _expand(family, family.fit(sub, y, 0.0), keep, len(names)), mean, scale, 0.0, \
            "intercept_only", {}, selection
    best, scores = cv_alpha_log_loss(family, sub[-max_cv_rows:], y[-max_cv_rows:], alphas,
                                     folds)
    for alpha in sorted(scores, key=lambda a: (scores[a], a)):
        params = family.fit(sub, y, alpha)
        if params is not None:
            return _expand(family, params, keep, len(names)), mean, scale, alpha, "lbfgs", \
                scores, selection
    raise ValueError(f"no alpha of {list(alphas)} gave a finite fit")


def _expand(family: _Family, params: np.ndarray | None, keep: list[int], d: int
            ) -> np.ndarray:
    """Params on the kept columns -> params on all ``d``, 0 for the dropped."""
    assert params is not None  # an intercept-only fit is closed-form
    k = family.k if isinstance(family, _Multinomial) else 1
    W = np.zeros((k, d))
    W[:, keep] = params[:-k].reshape(k, len(keep))
    return np.concatenate([W.ravel(), params[-k:]])


def train_logistic(X: np.ndarray, y: np.ndarray, feature_names: Sequence[str], *,
                   alphas: Sequence[float] = DEFAULT_ALPHAS, folds: int = 5,
                   select_features: bool = False, max_cv_rows: int = MAX_CV_ROWS
                   ) -> ClassifierFit:
    """Standardise, pick alpha by walk-forward CV log loss, fit P(y = 1) by L-BFGS.

    ``y`` holds 0/1 (both must occur); ``select_features`` runs forward selection first."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if y.ndim != 1 or not np.all((y == 0.0) | (y == 1.0)):
        raise ValueError("a binary label must be 0 or 1")
    if y.min() == y.max():
        raise ValueError(f"every training label is {y[0]:g}: a binary model needs both 0 and 1")
    names = list(feature_names)
    params, mean, scale, alpha, method, scores, selection = _train(
        _Binary(), X, y, names, alphas, folds, select_features, max_cv_rows)
    model = LogisticModel(params[:-1], float(params[-1]), names, mean=mean, scale=scale)
    return ClassifierFit(model, alpha, method, scores, selection)


def train_softmax(X: np.ndarray, y: np.ndarray, feature_names: Sequence[str], *,
                  alphas: Sequence[float] = DEFAULT_ALPHAS, folds: int = 5,
                  select_features: bool = False, max_cv_rows: int = 10_000) -> ClassifierFit:
    """Standardise, pick alpha by walk-forward CV log loss, fit multinomial logistic
    regression by L-BFGS.

    ``y`` holds class names (strings); the model's classes are the sorted distinct ones,
    at least 2. CV reads the most recent ``max_cv_rows`` rows (10,000 by default: a softmax
    fit costs about k times a logistic one, and forward selection makes dozens of them)."""
    X = np.asarray(X, dtype=float)
    labels = np.asarray(y, dtype=object)
    if labels.ndim != 1 or not all(isinstance(c, str) and c for c in set(labels.tolist())):
        raise ValueError("multiclass labels must be non-empty strings")
    classes, codes = np.unique(labels.astype(str), return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"the training rows have {len(classes)} class "
                         f"({', '.join(classes.tolist())}): a softmax model needs at least 2")
    k, names = len(classes), list(feature_names)
    params, mean, scale, alpha, method, scores, selection = _train(
        _Multinomial(k), X, codes, names, alphas, folds, select_features, max_cv_rows)
    d = len(names)
    model = SoftmaxModel(params[:k * d].reshape(k, d), params[k * d:], names,
                         classes.tolist(), mean=mean, scale=scale)
    return ClassifierFit(model, alpha, method, scores, selection)
