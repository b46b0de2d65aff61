"""The Population Stability Index: the one formula the PSI checks and their calibration share.

:class:`~driftline.agents.monitor.drift.PSIDrift` computes it over a window's bin counts;
:func:`~driftline.agents.monitor.calibration.psi_null` over bootstrapped ones, to set the
limits those checks use. Both need the same epsilon floor, so it lives here, below both.

>>> shares(np.array([[3, 1, 0, 9]]), bins=3).tolist()     # the last count: missing values
[[0.75, 0.25, 0.0001]]
>>> float(psi_of_shares(np.array([0.5, 0.5]), np.array([0.5, 0.5])))
0.0
"""

from __future__ import annotations

import numpy as np

EPS = 1e-4  # the floor of a bin's share: an empty bin would make the PSI infinite


def psi_of_shares(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """PSI over the last axis of bin shares, each floored at :data:`EPS`."""
    actual, expected = np.maximum(actual, EPS), np.maximum(expected, EPS)
    return np.asarray(np.sum((actual - expected) * np.log(actual / expected), axis=-1), float)


def shares(counts: np.ndarray, bins: int) -> np.ndarray:
    """Columns x bins shares of columns x (bins + 1) counts (the last, the missing, left
    out), floored at :data:`EPS`."""
    present = counts[:, :bins].astype(float)
    totals = present.sum(axis=1, keepdims=True)
    out: np.ndarray = np.maximum(
        np.divide(present, totals, out=np.zeros_like(present), where=totals > 0), EPS)
    return out
