"""Which features explain a rise of the error: the error by feature quantile bins.

The recent window is cut to the pairs since the error began to rise
(:func:`since_change`). A feature explains the rise in two ways, and its share adds them:

* **traffic moved** along it into bins where the reference's error was already higher
  (a covariate shift): ``sum (w_b - v_b) r_b`` over the rise, where ``w_b`` and ``v_b``
  are the window's and the reference's shares of rows in bin b and ``r_b`` the
  reference's mean error there, counted when it is ``SIGNIFICANT`` times its sampling
  error;
* **the rise depends on it** (a concept drift confined to a region of it), for the rest
  of the rise: for each feature, the squared errors and the reference's (the
version's first labeled pairs) are grouped by the feature's quintile bins (edges from
the reference), and the *rise* of the mean error is taken per bin, ``d_b``. A rise
that does not depend on the feature is the same in every bin; one confined to a region
of it (``x1 > 0.5``) is large in some bins and zero in the others. A feature's share is
the part of the rise that varies between its bins, ``sum w_b (d_b - mean d)^2``, over the
size of the rise, ``sum w_b d_b^2``, after
taking off what sampling noise alone gives (each bin mean's squared standard error);
a feature whose spread is under ``SIGNIFICANT`` times that noise gets no share (at a
concept-drift alert, a few dozen pairs after the change, the noise of ten bins of a
thousand pairs is of the order of the signal).
The shares are scaled down to sum to at most 1; those of at least ``MIN_SHARE`` are
named, largest first.

>>> rng = np.random.default_rng(0)
>>> ref = rng.normal(size=(2000, 3)); ref_sq = rng.normal(size=2000) ** 2
>>> now = rng.normal(size=(2000, 3))
>>> now_sq = rng.normal(size=2000) ** 2 * np.where(now[:, 1] > 0.5, 9.0, 1.0)
>>> [a["feature"] for a in attribute(["x0", "x1", "x2"], ref, ref_sq, now, now_sq)]
['x1']
"""

from __future__ import annotations

import numpy as np

BINS = 5
MIN_ROWS = 30      # at least this many recent pairs since the change are compared
MIN_SHARE = 0.05
SIGNIFICANT = 3.0  # a feature counts once the spread of the rise is 3x what noise gives
TOP = 5


def _bin_stats(col: np.ndarray, values: np.ndarray,
               edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: count, mean and squared standard error of the mean of ``values``."""
    seen = ~np.isnan(col)
    bins = np.searchsorted(edges, col[seen], side="right")
    v = values[seen]
    k = len(edges) + 1
    n = np.bincount(bins, minlength=k).astype(float)
    sums = np.bincount(bins, weights=v, minlength=k)
    squares = np.bincount(bins, weights=v * v, minlength=k)
    mean = np.divide(sums, n, out=np.zeros(k), where=n > 0)
    var = np.divide(squares, n, out=np.zeros(k), where=n > 0) - mean ** 2
    se2 = np.divide(np.maximum(var, 0), n, out=np.zeros(k), where=n > 0)
    return n, mean, se2


def since_change(sq: np.ndarray, reference_mean: float) -> int:
    """Where the recent rise of the error most likely began: the start of the most
    significant elevated tail, ``argmax (mean(sq[s:]) - reference) * sqrt(len)``, leaving
    at least ``MIN_ROWS`` pairs (the window "since the drift point")."""
    n = len(sq)
    if n <= MIN_ROWS:
        return 0
    tail_sums = np.cumsum((sq - reference_mean)[::-1])[::-1]  # sum of sq[s:] - reference
    lengths = n - np.arange(n)
    score = tail_sums / np.sqrt(lengths)
    return int(np.argmax(score[:n - MIN_ROWS + 1]))


def attribute(names: list[str], ref_rows: np.ndarray, ref_sq: np.ndarray, rows: np.ndarray,
              sq: np.ndarray) -> list[dict[str, float | str]]:
    """``[{"feature", "share"}]``, largest first, shares summing to at most 1."""
    if not names or len(ref_sq) < BINS or len(sq) < BINS or sq.mean() <= ref_sq.mean():
        return []
    start = since_change(sq, float(ref_sq.mean()))
    rows, sq = rows[start:], sq[start:]
    total = float(sq.mean() - ref_sq.mean())  # the rise to explain
    if total <= 0:
        return []
    qs = np.linspace(0, 1, BINS + 1)[1:-1]
    scores = np.zeros(len(names))
    for j in range(len(names)):
        ref_col = ref_rows[:, j]
        ref_col = ref_col[~np.isnan(ref_col)]
        if not len(ref_col):
            continue
        edges = np.unique(np.quantile(ref_col, qs))
        n, mean, se2 = _bin_stats(rows[:, j], sq, edges)
        n_ref, mean_ref, se2_ref = _bin_stats(ref_rows[:, j], ref_sq, edges)
        if not n.sum() or not n_ref.sum():
            continue
        # (1) Traffic moved to bins where the reference's error was higher.
        v, w_all = n_ref / n_ref.sum(), n / n.sum()
        centred = mean_ref - np.sum(v * mean_ref)
        moved = float(np.sum((w_all - v) * mean_ref))
        moved_se = float(np.sqrt(np.sum(v * (1 / n.sum() + 1 / n_ref.sum()) * centred ** 2)))
        moved_share = min(moved / total, 1.0) if moved > SIGNIFICANT * moved_se else 0.0
        # (2) Within the bins, the rise depends on the bin.
        both = (n > 0) & (n_ref > 0)
        w = n[both] / n[both].sum()
        rise = mean[both] - mean_ref[both]
        size = float(np.sum(w * rise ** 2))
        varying = 0.0
        if size > 0:
            spread = float(np.sum(w * (rise - np.sum(w * rise)) ** 2))
            expected = float(np.sum(w * (se2[both] + se2_ref[both])))  # noise alone
            if spread > SIGNIFICANT * expected:
                varying = (spread - expected) / size
        scores[j] = max(moved_share, 0.0) + varying * (1.0 - max(moved_share, 0.0))
    shares = scores / max(1.0, float(scores.sum()))
    order = np.argsort(-shares, kind="stable")
    return [{"feature": names[j], "share": round(float(shares[j]), 4)}
            for j in order[:TOP] if shares[j] >= MIN_SHARE]


def describe(attribution: list[dict[str, float | str]]) -> str:
    """`` The rise of the error is best explained by x1 (62%).``, or empty."""
    if not attribution:
        return ""
    named = ", ".join(f"{a['feature']} ({float(a['share']):.0%})" for a in attribution)
    return f" The rise of the error is best explained by {named}."
