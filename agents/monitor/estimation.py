"""Estimated performance before the labels arrive: DLE for regression, CBPE for
classification (NannyML's methods, on a stream, in numpy).

Both are fitted once, on a version's first ``reference_pairs`` labeled pairs, and
then turn every prediction into its *expected squared error*:

* **DLE** (direct loss estimation): a ridge regression of the squared error on the
  standardised features, their squares, the prediction and its square. Where traffic
  moves into a region where the reference's errors were larger, the estimate rises,
  days before the labels say so.
* **CBPE** (confidence-based performance estimation): the predicted probabilities are
  calibrated on the reference by histogram binning (equal-frequency bins of the
  prediction, the share of positive labels in each); a prediction ``p`` with calibrated
  probability ``c`` then has expected Brier score ``c(1-p)^2 + (1-c)p^2``, and the
  window's expected confusion matrix at the model's ``decision_threshold`` (``p`` at or
  above it is a 1, as in the realised metrics) gives accuracy, precision, recall and F1.

The rolling mean of the expected squared error over the last ``window`` predictions is
``estimated_mse`` (for a classifier that is the expected Brier score, the same number
driftline's ``rolling_mse`` is for one); its *baseline* is its mean over the reference.

>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(2000, 1)); p = 2 * X[:, 0]
>>> y = p + rng.normal(size=2000) * np.where(X[:, 0] > 1, 3.0, 1.0)
>>> est = Estimation(window=500, classification=False)
>>> round(est.fit(X, p, y).baseline, 1)
2.1
>>> bool(est.expected(X + 1.5, 2 * (X[:, 0] + 1.5)).mean() > 2 * est.baseline)
True
"""

from __future__ import annotations

import math

import numpy as np

from driftline.agents.monitor.window import Ring, RollingMean

RIDGE = 1.0          # ridge penalty of DLE, on standardised inputs
Z_CLIP = 8.0         # standardised inputs are clipped here: a wild value must not explode
CALIBRATION_BINS = 20


class Reference:
    """The first ``size`` labeled pairs of a version: feature rows, predictions, labels."""

    def __init__(self, size: int, width: int) -> None:
        self.size = size
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.count = 0
        self.width = width

    @property
    def full(self) -> bool:
        return self.count >= self.size

    def add(self, rows: np.ndarray, predictions: np.ndarray, labels: np.ndarray) -> bool:
        """Take what the reference still needs of a batch; True once it is full."""
        if self.full:
            return True
        need = self.size - self.count
        self._parts.append((rows[:need].copy(), predictions[:need].copy(), labels[:need].copy()))
        self.count += min(need, len(labels))
        return self.full

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._parts:
            return np.empty((0, self.width)), np.empty(0), np.empty(0)
        rows, preds, labels = (np.concatenate(a) for a in zip(*self._parts))
        self._parts = [(rows, preds, labels)]
        return rows, preds, labels


class Estimation:
    """The fitted estimator of one (model, version[, segment]) and its rolling estimate."""

    def __init__(self, window: int, classification: bool, threshold: float = 0.5) -> None:
        self.window = window
        self.classification = classification
        self.threshold = threshold  # classification: P(1) at or above it is a 1
        self.method = "cbpe" if classification else "dle"
        self.baseline: float | None = None   # mean expected squared error on the reference
        self._rolling = RollingMean(window)  # expected squared errors of the window
        self._probs = Ring(window, (2,))     # classification: (p, calibrated p) of the window
        # DLE
        self._mu = self._sd = self._weights = np.empty(0)
        # CBPE
        self._edges = self._calibrated = np.empty(0)

    @property
    def fitted(self) -> bool:
        return self.baseline is not None

    def fit(self, rows: np.ndarray, predictions: np.ndarray, labels: np.ndarray) -> Estimation:
        if self.classification:
            qs = np.linspace(0, 1, CALIBRATION_BINS + 1)[1:-1]
            self._edges = np.unique(np.quantile(predictions, qs))
            bins = np.searchsorted(self._edges, predictions, side="right")
            n = np.bincount(bins, minlength=len(self._edges) + 1)
            pos = np.bincount(bins, weights=labels, minlength=len(self._edges) + 1)
            self._calibrated = (pos + 0.5) / (n + 1.0)  # a Jeffreys prior: no bin at 0 or 1
        else:
            inputs = np.column_stack((rows, predictions))
            with np.errstate(invalid="ignore"):
                self._mu = np.nan_to_num(np.nanmean(inputs, axis=0)) if len(inputs) else \
                    np.zeros(inputs.shape[1])
                sd = np.nan_to_num(np.nanstd(inputs, axis=0))
            self._sd = np.where(sd > 0, sd, 1.0)
            design = self._design(rows, predictions)
            target = (predictions - labels) ** 2
            # einsum, not BLAS: a 1000 x 23 product, where a threaded BLAS on a busy
            # machine took 20 ms instead of 1 (bench/monitor_speed.py).
            gram = np.einsum("ij,ik->jk", design, design) + RIDGE * np.eye(design.shape[1])
            gram[0, 0] -= RIDGE  # the intercept is not penalised
            self._weights = np.linalg.solve(gram, design.T @ target)
        self.baseline = float(self.expected(rows, predictions).mean())
        return self

    def _standardised(self, rows: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        z = (np.column_stack((rows, predictions)) - self._mu) / self._sd
        np.clip(z, -Z_CLIP, Z_CLIP, out=z)
        np.copyto(z, 0.0, where=np.isnan(z))  # missing: the reference mean
        return z

    def _design(self, rows: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        z = self._standardised(rows, predictions)
        return np.column_stack((np.ones(len(z)), z, z * z))

    def calibrate(self, predictions: np.ndarray) -> np.ndarray:
        return np.asarray(self._calibrated[np.searchsorted(self._edges, predictions,
                                                           side="right")])

    def expected(self, rows: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """Expected squared error of each prediction (fitted estimators only)."""
        if self.classification:
            c = self.calibrate(predictions)
            return np.asarray(c * (1 - predictions) ** 2 + (1 - c) * predictions ** 2)
        # The design's product with the weights, without building the design per batch.
        z, w, k = self._standardised(rows, predictions), self._weights, len(self._mu)
        return np.asarray(np.maximum(w[0] + z @ w[1:k + 1] + (z * z) @ w[k + 1:], 0.0))

    def update(self, rows: np.ndarray, predictions: np.ndarray,
               expected: np.ndarray | None = None) -> np.ndarray:
        """Predictions in order (``expected``: their expected squared errors, if the caller
        has them, :class:`Stacked`); the rolling estimate after each (NaN until the window
        of estimated predictions is full, and before the fit)."""
        if not self.fitted:
            return np.full(len(predictions), math.nan)
        values = self.expected(rows, predictions) if expected is None else expected
        rolling = self._rolling.extend(values)
        if self.classification:
            self._probs.push(np.column_stack((predictions, self.calibrate(predictions))))
        return rolling

    @property
    def count(self) -> int:
        """Predictions estimated since the fit."""
        return self._rolling.count

    def report(self) -> dict[str, float | None]:
        """The estimated metrics over the window (None before the fit)."""
        names = ["estimated_mse", "estimated_rmse", "estimated_baseline_mse"]
        if self.classification:
            names += ["estimated_accuracy", "estimated_precision", "estimated_recall",
                      "estimated_f1", "estimated_brier"]
        if not self.fitted or not self._rolling.count:
            return {name: (self.baseline if name == "estimated_baseline_mse" else None)
                    for name in names}
        mse = self._rolling.mean()
        out: dict[str, float | None] = {"estimated_mse": mse, "estimated_rmse": math.sqrt(mse),
                                        "estimated_baseline_mse": self.baseline}
        if self.classification:
            probs = self._probs.values()
            p, c = probs[:, 0], probs[:, 1]
            yes = p >= self.threshold
            tp, fp = float(c[yes].sum()), float((1 - c[yes]).sum())
            fn, tn = float(c[~yes].sum()), float((1 - c[~yes]).sum())
            precision = tp / (tp + fp) if tp + fp else 0.0
            recall = tp / (tp + fn) if tp + fn else 0.0
            out.update(estimated_accuracy=(tp + tn) / len(p), estimated_precision=precision,
                       estimated_recall=recall, estimated_brier=mse,
                       estimated_f1=(2 * precision * recall / (precision + recall)
                                     if precision + recall else 0.0))
        return out


class Stacked:
    """Fitted DLE estimators of the groups of one batch (a version's segments, each a run
    of rows): their :meth:`Estimation.expected` in one pass over the batch, gathering each
    row's group's standardisation and weights. numpy's cost per call is then paid once,
    not once per group: 70 against 210 µs for 10 segments of 50 rows (the same values to
    rounding, ``tests/test_monitor_estimate.py``). A fit is final, so each estimator's
    parameters are stacked once, when it is first seen."""

    def __init__(self) -> None:
        self._of: list[Estimation] = []     # the estimators stacked, in rows of the arrays
        self._row: dict[int, int] = {}      # id of an estimator in _of -> its row
        self._mu = self._sd = self._weights = np.empty((0, 0))

    def _rows(self, estimations: list[Estimation]) -> list[int]:
        new = [e for e in estimations if id(e) not in self._row]
        if new:
            for e in new:
                self._row[id(e)] = len(self._of)
                self._of.append(e)  # kept: an id stays its estimator's
            self._mu = np.stack([e._mu for e in self._of])
            self._sd = np.stack([e._sd for e in self._of])
            self._weights = np.stack([e._weights for e in self._of])
        return [self._row[id(e)] for e in estimations]

    def expected(self, estimations: list[Estimation], rows: np.ndarray,
                 predictions: np.ndarray, bounds: list[tuple[int, int]]) -> list[np.ndarray]:
        """Expected squared errors of rows ``bounds[k]`` by ``estimations[k]`` (fitted,
        regression)."""
        lengths = [end - start for start, end in bounds]
        group = np.repeat(self._rows(estimations), lengths)
        if bounds[0][0] == 0 and all(a[1] == b[0] for a, b in zip(bounds, bounds[1:])):
            end = bounds[-1][1]
            rows, predictions = rows[:end], predictions[:end]
        else:
            at = np.concatenate([np.arange(start, end) for start, end in bounds])
            rows, predictions = rows[at], predictions[at]
        z = np.column_stack((rows, predictions))
        z -= self._mu[group]
        z /= self._sd[group]
        np.clip(z, -Z_CLIP, Z_CLIP, out=z)
        np.copyto(z, 0.0, where=np.isnan(z))  # missing: the reference mean
        w, k = self._weights[group], z.shape[1]
        values = (w[:, 0] + np.einsum("ij,ij->i", z, w[:, 1:k + 1])
                  + np.einsum("ij,ij->i", z * z, w[:, k + 1:]))
        return np.split(np.maximum(values, 0.0), np.cumsum(lengths)[:-1])
