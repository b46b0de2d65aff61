"""Which features explain a rise of the error: the error by feature quantile bins.

For each feature, the squared errors are grouped by the feature's decile bins (edges
from the reference) and the *share of their variance between the bins* is taken
(the correlation ratio, eta squared): how much of the error the feature's value
explains. A feature's attribution is how much that share grew from the reference
(the version's first labeled pairs) to the recent window; the shares are scaled down
to sum to at most 1, and only those of at least ``MIN_SHARE`` are named, largest first.

>>> rng = np.random.default_rng(0)
>>> ref = rng.normal(size=(2000, 3)); ref_sq = rng.normal(size=2000) ** 2
>>> now = rng.normal(size=(2000, 3))
>>> now_sq = rng.normal(size=2000) ** 2 * np.where(now[:, 1] > 0.5, 9.0, 1.0)
>>> [a["feature"] for a in attribute(["x0", "x1", "x2"], ref, ref_sq, now, now_sq)]
['x1']
"""

from __future__ import annotations

import numpy as np

BINS = 10
MIN_SHARE = 0.02
TOP = 5


def explained(rows: np.ndarray, values: np.ndarray, edges: list[np.ndarray]) -> np.ndarray:
    """Per column: the share of ``values``' variance between the column's bins."""
    out = np.zeros(rows.shape[1])
    total = float(np.sum((values - values.mean()) ** 2)) if len(values) else 0.0
    if total <= 0:
        return out
    mean = values.mean()
    for j, e in enumerate(edges):
        col = rows[:, j]
        seen = ~np.isnan(col)
        bins = np.searchsorted(e, col[seen], side="right")
        n = np.bincount(bins, minlength=len(e) + 1)
        sums = np.bincount(bins, weights=values[seen], minlength=len(e) + 1)
        means = np.divide(sums, n, out=np.full(len(n), mean), where=n > 0)
        out[j] = float(np.sum(n * (means - mean) ** 2)) / total
    return out


def attribute(names: list[str], ref_rows: np.ndarray, ref_sq: np.ndarray, rows: np.ndarray,
              sq: np.ndarray) -> list[dict[str, float | str]]:
    """``[{"feature", "share"}]``, largest first, shares summing to at most 1."""
    if not names or len(ref_sq) < BINS or len(sq) < BINS:
        return []
    qs = np.linspace(0, 1, BINS + 1)[1:-1]
    edges = []
    for j in range(ref_rows.shape[1]):
        col = ref_rows[:, j]
        col = col[~np.isnan(col)]
        edges.append(np.unique(np.quantile(col, qs)) if len(col) else np.empty(0))
    excess = np.maximum(explained(rows, sq, edges) - explained(ref_rows, ref_sq, edges), 0.0)
    shares = excess / max(1.0, float(excess.sum()))
    order = np.argsort(-shares, kind="stable")
    return [{"feature": names[j], "share": round(float(shares[j]), 4)}
            for j in order[:TOP] if shares[j] >= MIN_SHARE]


def describe(attribution: list[dict[str, float | str]]) -> str:
    """`` Most of the rise is explained by x1 (31%), x0 (4%).`` or empty."""
    if not attribution:
        return ""
    named = ", ".join(f"{a['feature']} ({float(a['share']):.0%})" for a in attribution)
    return f" The rise of the error is best explained by {named}."
