"""A linear model in numpy, stored as a pickle-free ``.npz``.

>>> m = LinearModel([2.0, -1.0], 0.5, ["rooms", "age"])
>>> m.predict([[1.0, 1.0], [2.0, 0.0]]).tolist()
[1.5, 4.5]
>>> m.predict({"rooms": 1.0, "age": 1.0})
1.5
>>> LinearModel.from_bytes(m.to_bytes()) == m
True
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from driftline.errors import ArtifactError

FORMAT = "driftline.linear/1"
_REQUIRED = {"format", "coef", "intercept", "feature_names"}
_OPTIONAL = {"mean", "scale"}


class LinearModel:
    """``y = ((x - mean) / scale) @ coef + intercept``; ``mean``/``scale`` are optional.

    ``version`` and ``meta`` are filled in by the registry when it loads a model.
    """

    kind = "linear"       # a model kind (driftline.models.kinds)
    task = "regression"

    def __init__(self, coef: Sequence[float] | np.ndarray, intercept: float = 0.0,
                 feature_names: Sequence[str] | None = None, *,
                 mean: Sequence[float] | np.ndarray | None = None,
                 scale: Sequence[float] | np.ndarray | None = None) -> None:
        self.coef = _vector(coef, "coef")
        d = len(self.coef)
        try:
            self.intercept = float(intercept)
        except (TypeError, ValueError):
            raise ArtifactError(f"intercept must be a number, got {intercept!r}") from None
        if not np.isfinite(self.intercept):
            raise ArtifactError("intercept must be finite")
        names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(d)]
        if len(names) != d or len(set(names)) != d or not all(
                isinstance(n, str) and n for n in names):
            raise ArtifactError(f"feature_names must be {d} distinct non-empty strings")
        self.feature_names = names
        self.mean = None if mean is None else _vector(mean, "mean", d)
        self.scale = None if scale is None else _vector(scale, "scale", d)
        if self.scale is not None and np.any(self.scale <= 0):
            raise ArtifactError("scale must be positive")
        self.version: int | None = None
        self.meta: dict[str, Any] = {}

    def predict(self, X: Any) -> Any:
        """Predict for an array (n x d, or one row of d), a dict row or a list of dict rows."""
        rows, one = as_rows(X, self.feature_names)
        predicted = self._predict(rows)
        return float(predicted[0]) if one else predicted

    def _predict(self, X: np.ndarray) -> np.ndarray:
        if X.ndim != 2 or X.shape[1] != len(self.coef):
            raise ValueError(f"expected {len(self.coef)} features per row, got shape {X.shape}")
        if self.mean is not None:
            X = X - self.mean
        if self.scale is not None:
            X = X / self.scale
        predicted: np.ndarray = X @ self.coef + self.intercept
        return predicted

    def to_bytes(self) -> bytes:
        arrays = {"format": np.array(FORMAT), "coef": self.coef,
                  "intercept": np.array(self.intercept),
                  "feature_names": np.array(self.feature_names, dtype=str)}
        if self.mean is not None:
            arrays["mean"] = self.mean
        if self.scale is not None:
            arrays["scale"] = self.scale
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub misreads **kwargs
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LinearModel:
        """Parse an artifact; refuses object arrays (pickles), unknown or missing parts."""
        from driftline.models.kinds import open_npz  # (kinds names this class by string)

        arrays = open_npz(data, "driftline linear model", _REQUIRED, _OPTIONAL)
        if arrays["format"].dtype.kind != "U" or str(arrays["format"]) != FORMAT:
            raise ArtifactError(f"unknown artifact format {arrays['format']!r}")
        for name in ("coef", "intercept", "mean", "scale"):
            if name in arrays and arrays[name].dtype.kind not in "fi":
                raise ArtifactError(f"{name} must be numeric, got dtype {arrays[name].dtype}")
        if arrays["feature_names"].dtype.kind != "U" or arrays["feature_names"].ndim != 1:
            raise ArtifactError("feature_names must be a 1-d array of strings")
        if arrays["intercept"].shape != ():
            raise ArtifactError("intercept must be a scalar")
        return cls(arrays["coef"], float(arrays["intercept"]),
                   arrays["feature_names"].tolist(), mean=arrays.get("mean"),
                   scale=arrays.get("scale"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LinearModel):
            return NotImplemented
        return (np.array_equal(self.coef, other.coef) and self.intercept == other.intercept
                and self.feature_names == other.feature_names
                and _same(self.mean, other.mean) and _same(self.scale, other.scale))

    def __repr__(self) -> str:
        version = f" v{self.version}" if self.version is not None else ""
        return f"<LinearModel{version} {len(self.coef)} features>"


def as_rows(X: Any, feature_names: Sequence[str]) -> tuple[np.ndarray, bool]:
    """An array (n x d, or one row of d), a dict row or a list of dict rows -> (n x d
    floats in ``feature_names`` order, whether it was one row)."""
    if isinstance(X, Mapping):
        return _row(X, feature_names)[None, :], True
    if isinstance(X, Sequence) and X and isinstance(X[0], Mapping):
        return np.array([_row(r, feature_names) for r in X]), False
    arr = np.asarray(X, dtype=float)
    if arr.ndim == 1:
        return arr[None, :], True
    return arr, False


def _row(row: Mapping[str, float], feature_names: Sequence[str]) -> np.ndarray:
    missing = [n for n in feature_names if n not in row]
    if missing:
        raise ValueError(f"missing feature(s) {', '.join(missing)}; this model needs "
                         f"{', '.join(feature_names)}")
    return np.array([row[n] for n in feature_names], dtype=float)


def _vector(values: Any, name: str, size: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ArtifactError(f"{name} must be numbers") from None
    if arr.ndim != 1 or len(arr) == 0 or (size is not None and len(arr) != size):
        want = f"{size} numbers" if size is not None else "a non-empty 1-d array"
        raise ArtifactError(f"{name} must be {want}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ArtifactError(f"{name} must be finite")
    return arr.copy()


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
