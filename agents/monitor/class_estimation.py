"""A multiclass model's performance before its labels: NannyML's multiclass CBPE, on a stream.

On the version's first ``reference_pairs`` labelled pairs whose prediction sent class
probabilities, each class's probability is calibrated one-vs-rest by histogram binning
(:data:`BINS` equal-frequency bins, a Jeffreys prior in each), and the calibrated rows are
normalised to sum to 1. A prediction's calibrated probability of its own predicted class is
then its expected accuracy: the window's mean is the estimated accuracy, and the expected
confusion counts (for class k: E[TP] = the calibrated P(k) summed over the predictions of
k, E[FP] = the predictions of k less that, E[FN] = the calibrated P(k) elsewhere) give the
estimated macro F1. A prediction without probabilities counts its predicted class's
precision on the reference.

The interface is :class:`~.estimation.Estimation`'s, so the ``estimated_degradation`` rule
runs on it as it does on DLE and binary CBPE: its "expected squared error" is the expected
0/1 error, ``1 - expected accuracy``.

>>> est = ClassEstimation(window=4, size=6)
>>> p = np.array([[.8, .2], [.7, .3], [.3, .7], [.2, .8], [.9, .1], [.4, .6]])
>>> est.add_reference(p, np.array([0., 0, 1, 1, 0, 1]), np.array([0., 0, 1, 0, 0, 1]))
True
>>> est.fitted, est.update(p[:2], np.array([0., 0])).tolist()
(True, [nan, nan])
"""

from __future__ import annotations

import math

import numpy as np

from driftline.agents.monitor.columns import widen
from driftline.agents.monitor.window import Ring, RollingMean

BINS = 10


class ClassEstimation:
    """The fitted multiclass estimator of one version (or segment) and its rolling estimate."""

    method = "cbpe"

    def __init__(self, window: int, size: int) -> None:
        self.window, self.size = window, size
        self.baseline: float | None = None  # mean expected 0/1 error on the reference
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._held = 0
        self._rolling = RollingMean(window)  # expected 0/1 errors of the window
        self._rows: Ring | None = None  # calibrated rows of the window, then the prediction
        self._edges: list[np.ndarray] = []
        self._rates: list[np.ndarray] = []
        self._precision = np.empty(0)  # per class, on the reference: P(right | predicted k)

    @property
    def fitted(self) -> bool:
        return self.baseline is not None

    @property
    def count(self) -> int:
        """Predictions estimated since the fit."""
        return self._rolling.count

    def add_reference(self, proba: np.ndarray, predictions: np.ndarray,
                      labels: np.ndarray) -> bool:
        """Labelled pairs (their probabilities by class code, NaN rows: none sent); True
        once ``size`` of them are in, and the estimator is fitted."""
        if self.fitted:
            return True
        need = self.size - self._held
        self._parts.append((proba[:need].copy(), predictions[:need].copy(),
                            labels[:need].copy()))
        self._held += len(labels[:need])
        if self._held >= self.size:
            width = max(p.shape[1] for p, _, _ in self._parts)  # classes grow
            proba = np.concatenate([widen(p, width) for p, _, _ in self._parts])
            preds, labels = (np.concatenate([part[i] for part in self._parts]) for i in (1, 2))
            self._parts = []
            self._fit(proba, preds.astype(np.int64), labels.astype(np.int64))
        return self.fitted

    def _fit(self, proba: np.ndarray, preds: np.ndarray, labels: np.ndarray) -> None:
        k = max(proba.shape[1], int(preds.max()) + 1, int(labels.max()) + 1)
        sent = ~np.isnan(proba).all(axis=1)
        qs = np.linspace(0, 1, BINS + 1)[1:-1]
        for c in range(k):
            p = np.nan_to_num(proba[sent, c]) if c < proba.shape[1] else np.zeros(sent.sum())
            # Equal-frequency bins over the predictions of c and over the others apart: the
            # first hold the probabilities an accuracy estimate reads, and would otherwise
            # share a top bin or two with everything else.
            mine = preds[sent] == c
            edges = np.unique(np.concatenate([np.quantile(part, qs) for part in (p[mine], p[~mine])
                                              if len(part)])) if len(p) else np.empty(0)
            bins = np.searchsorted(edges, p, side="right")
            n = np.bincount(bins, minlength=len(edges) + 1)
            hits = np.bincount(bins, weights=(labels[sent] == c), minlength=len(edges) + 1)
            self._edges.append(edges)
            self._rates.append((hits + 0.5) / (n + 1.0))
        right = np.bincount(preds[preds == labels], minlength=k)
        made = np.bincount(preds, minlength=k)
        self._precision = (right + 0.5) / (made + 1.0)
        self._rows = Ring(self.window, (k + 1,))
        self.baseline = float(self.expected(proba, preds.astype(float)).mean())

    def calibrated(self, proba: np.ndarray) -> np.ndarray:
        """Rows of calibrated class probabilities (normalised; NaN rows: none sent)."""
        k = len(self._edges)
        n = len(proba)
        out = np.zeros((n, k))
        for c in range(min(k, proba.shape[1])):
            column = np.nan_to_num(proba[:, c])
            out[:, c] = self._rates[c][np.searchsorted(self._edges[c], column, side="right")]
        total = out.sum(axis=1, keepdims=True)
        normalised: np.ndarray = np.divide(out, total, out=np.zeros_like(out), where=total > 0)
        normalised[np.isnan(proba).all(axis=1) if proba.shape[1] else np.ones(n, bool)] = np.nan
        return normalised

    def _accuracy(self, calibrated: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """Each prediction's expected accuracy: its calibrated P(predicted class), else
        that class's precision on the reference."""
        k = len(self._edges)
        pred = predictions.astype(np.int64)
        known = (pred >= 0) & (pred < k)
        out = np.zeros(len(pred))
        rows = np.flatnonzero(known)
        out[rows] = calibrated[rows, pred[rows]]
        missing = known & np.isnan(out)
        out[missing] = self._precision[pred[missing]]
        return out

    def expected(self, proba: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """Expected 0/1 error of each prediction (fitted estimators only)."""
        return 1.0 - self._accuracy(self.calibrated(proba), predictions)

    def update(self, proba: np.ndarray, predictions: np.ndarray,
               expected: np.ndarray | None = None) -> np.ndarray:
        """Predictions in order; the rolling estimate after each (NaN until the window of
        estimated predictions is full, and before the fit)."""
        if not self.fitted:
            return np.full(len(predictions), math.nan)
        assert self._rows is not None
        calibrated = self.calibrated(proba)
        rolling = self._rolling.extend(1.0 - self._accuracy(calibrated, predictions))
        self._rows.push(np.column_stack((np.nan_to_num(calibrated), predictions)))
        return rolling

    def report(self) -> dict[str, float | None]:
        """Estimated accuracy and macro F1 over the window (None before the fit)."""
        names = ("estimated_mse", "estimated_baseline_mse", "estimated_accuracy",
                 "estimated_macro_f1")
        if not self.fitted or self._rows is None or not self._rolling.count:
            return {name: (self.baseline if name == "estimated_baseline_mse" else None)
                    for name in names}
        rows = self._rows.values()
        c, pred = rows[:, :-1], rows[:, -1].astype(np.int64)
        k = c.shape[1]
        accuracy = 1.0 - self._rolling.mean()
        ours = (pred >= 0) & (pred < k)
        tp = np.bincount(pred[ours], weights=c[ours, pred[ours]], minlength=k)
        made = np.bincount(pred[ours], minlength=k).astype(float)
        truth = c.sum(axis=0)
        fp, fn = made - tp, truth - tp
        seen = (made > 0) | (truth > 0.5)
        f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(k), where=2 * tp + fp + fn > 0)
        return {"estimated_mse": 1.0 - accuracy, "estimated_baseline_mse": self.baseline,
                "estimated_accuracy": accuracy,
                "estimated_macro_f1": float(f1[seen].mean()) if seen.any() else None}
