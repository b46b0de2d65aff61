"""Classifiers in numpy, stored as pickle-free ``.npz`` with a JSON header (model kinds
``logistic`` and ``softmax``, :mod:`driftline.models.kinds`).

Both score standardised features, ``z = ((x - mean) / scale) @ coef.T + intercept``:

* :class:`LogisticModel` (task ``binary``): ``predict`` is P(class 1), what a binary
  model sends as its ``prediction``; ``predict_class`` applies a threshold.
* :class:`SoftmaxModel` (task ``multiclass``): ``predict`` is the most probable class,
  ``predict_proba`` one probability per class (a dict row gets ``{class: p}``, what a
  multiclass model sends as its ``probabilities``).

>>> m = SoftmaxModel([[1.0], [-1.0], [0.0]], [0.0, 0.0, 0.0], ["x"], ["cat", "dog", "eel"])
>>> m.predict({"x": 2.0}), round(m.predict_proba({"x": 2.0})["cat"], 3)
('cat', 0.867)
>>> SoftmaxModel.from_bytes(m.to_bytes()) == m
True
>>> b = LogisticModel([2.0], 0.0, ["x"])
>>> round(b.predict({"x": 1.0}), 3), b.predict_class([[1.0], [-1.0]]).tolist()
(0.881, [1, 0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from driftline.errors import ArtifactError
from driftline.models import kinds
from driftline.models.linear import as_rows


class _Scored:
    """The parts both classifiers share: features, standardisation, the linear score."""

    kind = ""
    task = ""
    FORMAT = ""

    def __init__(self, coef: Any, intercept: Any, feature_names: Sequence[str] | None,
                 mean: Any = None, scale: Any = None) -> None:
        self.coef = _finite(coef, "coef")
        self.intercept = _finite(intercept, "intercept")
        d = self.coef.shape[-1]
        names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(d)]
        if len(names) != d or len(set(names)) != d or not all(
                isinstance(n, str) and n for n in names):
            raise ArtifactError(f"feature_names must be {d} distinct non-empty strings")
        self.feature_names = names
        self.mean = None if mean is None else _finite(mean, "mean", (d,))
        self.scale = None if scale is None else _finite(scale, "scale", (d,))
        if self.scale is not None and np.any(self.scale <= 0):
            raise ArtifactError("scale must be positive")
        self.version: int | None = None
        self.meta: dict[str, Any] = {}

    def _scores(self, X: np.ndarray) -> np.ndarray:
        d = len(self.feature_names)
        if X.ndim != 2 or X.shape[1] != d:
            raise ValueError(f"expected {d} features per row, got shape {X.shape}")
        if self.mean is not None:
            X = X - self.mean
        if self.scale is not None:
            X = X / self.scale
        scores: np.ndarray = X @ self.coef.T + self.intercept
        return scores

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {"coef": self.coef, "intercept": self.intercept}
        if self.mean is not None:
            arrays["mean"] = self.mean
        if self.scale is not None:
            arrays["scale"] = self.scale
        return arrays

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Scored)
        return (self.feature_names == other.feature_names
                and getattr(self, "classes", None) == getattr(other, "classes", None)
                and all(_same(a, b) for a, b in zip(
                    (self.coef, self.intercept, self.mean, self.scale),
                    (other.coef, other.intercept, other.mean, other.scale))))

    def __repr__(self) -> str:
        version = f" v{self.version}" if self.version is not None else ""
        return (f"<{type(self).__name__}{version} {len(self.feature_names)} features, "
                f"{len(getattr(self, 'classes', ()))} classes>")


class LogisticModel(_Scored):
    """P(class 1) = sigmoid(score); ``coef`` (d), ``intercept`` (a number)."""

    kind = "logistic"
    task = "binary"
    FORMAT = "driftline.logistic/1"
    classes = [0, 1]

    def __init__(self, coef: Any, intercept: Any = 0.0,
                 feature_names: Sequence[str] | None = None, *, mean: Any = None,
                 scale: Any = None) -> None:
        super().__init__(coef, intercept, feature_names, mean, scale)
        if self.coef.ndim != 1 or self.intercept.shape != ():
            raise ArtifactError(f"a logistic model has a coef vector and one intercept, got "
                                f"shapes {self.coef.shape} and {self.intercept.shape}")

    def predict(self, X: Any) -> Any:
        """P(class 1): a float for one row, an array for many."""
        rows, one = as_rows(X, self.feature_names)
        p = _sigmoid(self._scores(rows))
        return float(p[0]) if one else p

    def predict_proba(self, X: Any) -> Any:
        """``[P(0), P(1)]`` per row; ``{0: P(0), 1: P(1)}`` for a dict row."""
        rows, one = as_rows(X, self.feature_names)
        p = _sigmoid(self._scores(rows))
        both = np.column_stack([1.0 - p, p])
        if one and not isinstance(X, (np.ndarray, list, tuple)):
            return {0: float(both[0, 0]), 1: float(both[0, 1])}
        return both[0] if one else both

    def predict_class(self, X: Any, threshold: float = 0.5) -> Any:
        p = self.predict(X)
        return int(p >= threshold) if isinstance(p, float) else (p >= threshold).astype(int)

    def to_bytes(self) -> bytes:
        return kinds.write_npz(self.FORMAT, {"feature_names": self.feature_names},
                               self._arrays())

    @classmethod
    def from_bytes(cls, data: bytes) -> LogisticModel:
        header, arrays = kinds.read_npz(data, cls.FORMAT, {"coef", "intercept"},
                                        {"mean", "scale"})
        return cls(arrays["coef"], arrays["intercept"], _names(header), mean=arrays.get("mean"),
                   scale=arrays.get("scale"))


class SoftmaxModel(_Scored):
    """P(class k) = softmax(scores)_k; ``coef`` (k x d), ``intercept`` (k), ``classes``
    (k distinct strings, the names the model's predictions and labels use)."""

    kind = "softmax"
    task = "multiclass"
    FORMAT = "driftline.softmax/1"

    def __init__(self, coef: Any, intercept: Any, feature_names: Sequence[str] | None,
                 classes: Sequence[str], *, mean: Any = None, scale: Any = None) -> None:
        super().__init__(coef, intercept, feature_names, mean, scale)
        names = list(classes)
        k = len(names)
        if (self.coef.ndim != 2 or self.coef.shape[0] != k or self.intercept.shape != (k,)
                or k < 2):
            raise ArtifactError(f"a softmax model of {k} classes has coef (k x d) and k "
                                f"intercepts, got shapes {self.coef.shape} and "
                                f"{self.intercept.shape}")
        if len(set(names)) != k or not all(isinstance(c, str) and c for c in names):
            raise ArtifactError("classes must be distinct non-empty strings")
        self.classes = names

    def predict_proba(self, X: Any) -> Any:
        """One probability per class, in ``classes`` order; ``{class: p}`` for a dict row."""
        rows, one = as_rows(X, self.feature_names)
        scores = self._scores(rows)
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=1, keepdims=True)
        if one and not isinstance(X, (np.ndarray, list, tuple)):
            return dict(zip(self.classes, p[0].tolist()))
        return p[0] if one else p

    def predict(self, X: Any) -> Any:
        """The most probable class: a string for one row, an array of strings for many."""
        rows, one = as_rows(X, self.feature_names)
        best = np.argmax(self._scores(rows), axis=1)
        picked = np.array(self.classes)[best]
        return str(picked[0]) if one else picked

    predict_class = predict

    def to_bytes(self) -> bytes:
        return kinds.write_npz(self.FORMAT, {"feature_names": self.feature_names,
                                             "classes": self.classes}, self._arrays())

    @classmethod
    def from_bytes(cls, data: bytes) -> SoftmaxModel:
        header, arrays = kinds.read_npz(data, cls.FORMAT, {"coef", "intercept"},
                                        {"mean", "scale"})
        classes = header.get("classes")
        if not isinstance(classes, list):
            raise ArtifactError(f"{cls.FORMAT}: the header has no list of classes")
        return cls(arrays["coef"], arrays["intercept"], _names(header), classes,
                   mean=arrays.get("mean"), scale=arrays.get("scale"))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.exp(-np.logaddexp(0.0, -z))
    return out


def _names(header: dict[str, Any]) -> list[str]:
    names = header.get("feature_names")
    if not isinstance(names, list):
        raise ArtifactError("the header has no list of feature_names")
    return names


def _finite(values: Any, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    try:
        arr = np.array(values, dtype=float)
    except (TypeError, ValueError):
        raise ArtifactError(f"{name} must be numbers") from None
    if shape is not None and arr.shape != shape:
        raise ArtifactError(f"{name} must have shape {shape}, got {arr.shape}")
    if arr.ndim and arr.shape[-1] == 0:
        raise ArtifactError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ArtifactError(f"{name} must be finite")
    return arr


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
