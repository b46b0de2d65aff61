"""Multivariate drift by PCA reconstruction error (NannyML's method, on a stream).

On the version's first ``reference_size`` predictions: a standardisation of every
feature and a PCA keeping the fewest components that explain ``variance`` of it.
Each later row is standardised, projected onto the components and back; its
reconstruction error is the distance between the two. A change in how the features
move *together* (a correlation that flips) leaves every marginal, and so every PSI,
unchanged, but the rows leave the reference's principal subspace and their error
grows.

The reference's error is measured on the ``window`` rows *after* those the PCA was fitted
on: on its own fitting rows a PCA's error is biased low (it chose the components that
minimise it there), which made stationary streams look drifted. Then, every
``check_every`` rows, the mean error of the last ``window`` rows is compared with it:
``z`` is the difference in standard errors (the row-error spread over sqrt(window),
for the window's mean and for the reference's).

>>> rng = np.random.default_rng(0)
>>> cov = lambda r: [[1, r], [r, 1]]
>>> d = PCADrift(MultivariateConfig(reference_size=1000, window=500, check_every=500))
>>> _ = d.extend(rng.multivariate_normal([0, 0], cov(0.8), 1500))
>>> d.components
1
>>> [abs(c.z) < 4 for c in d.extend(rng.multivariate_normal([0, 0], cov(0.8), 500))]
[True]
>>> [c.z > 20 for c in d.extend(rng.multivariate_normal([0, 0], cov(-0.8), 500))]
[True]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from driftline.agents.monitor.config import MultivariateConfig


@dataclass
class MultivariateCheck:
    """One check, after ``position`` rows of the batch."""

    position: int
    error: float   # mean reconstruction error of the window
    z: float       # its distance from the reference's, in standard errors


class PCADrift:
    def __init__(self, config: MultivariateConfig) -> None:
        self.config = config
        self._reference: list[np.ndarray] = []
        self._reference_rows = 0
        self._mu = self._sd = np.empty(0)
        self._basis = np.empty((0, 0))
        self.reference_error: float | None = None
        self._spread = 0.0
        self._calibration: list[np.ndarray] = []  # errors of the rows after the fit
        self._calibrated = 0
        self._errors = np.empty(0)  # of the window
        self._since_check = 0
        self.last: MultivariateCheck | None = None

    @property
    def ready(self) -> bool:
        return self.reference_error is not None

    @property
    def fitted(self) -> bool:
        return bool(self._basis.size)

    @property
    def components(self) -> int:
        return int(np.shape(self._basis)[-1]) if self.fitted else 0

    def extend(self, rows: np.ndarray) -> list[MultivariateCheck]:
        """Rows (events x features, NaN = missing) in order; returns the checks that ran."""
        start = 0
        if not self.fitted:
            need = self.config.reference_size - self._reference_rows
            self._reference.append(rows[:need].copy())  # a view would pin the batch
            self._reference_rows += len(rows[:need])
            start = min(need, len(rows))
            if self._reference_rows >= self.config.reference_size:
                self._fit(np.concatenate(self._reference))
                self._reference = []
        if start >= len(rows) or not self.fitted:
            return []
        errors = self.errors(rows[start:])
        if not self.ready:
            need = self.config.window - self._calibrated
            self._calibration.append(errors[:need])
            self._calibrated += len(errors[:need])
            start += min(need, len(errors))
            errors = errors[need:]
            if self._calibrated >= self.config.window:
                calibration = np.concatenate(self._calibration)
                self.reference_error = float(calibration.mean())
                self._spread = float(calibration.std())
                self._calibration = []
        checks = []
        every, window = self.config.check_every, self.config.window
        position = 0
        while position < len(errors):
            take = min(every - self._since_check, len(errors) - position)
            self._errors = np.concatenate((self._errors,
                                           errors[position:position + take]))[-window:]
            self._since_check += take
            position += take
            if self._since_check == every:
                self._since_check = 0
                if len(self._errors) >= window:
                    self.last = self._check(start + position - 1)
                    checks.append(self.last)
        return checks

    def _fit(self, reference: np.ndarray) -> None:
        with np.errstate(invalid="ignore"):
            self._mu = np.nan_to_num(np.nanmean(reference, axis=0))
            sd = np.nan_to_num(np.nanstd(reference, axis=0))
        self._sd = np.where(sd > 0, sd, 1.0)
        z = self._standardise(reference)
        _, s, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
        share = np.cumsum(s ** 2) / max(float(np.sum(s ** 2)), 1e-300)
        keep = int(np.searchsorted(share, self.config.variance) + 1)
        self._basis = vt[:min(keep, len(s))].T

    def _standardise(self, rows: np.ndarray) -> np.ndarray:
        z = np.asarray((rows - self._mu) / self._sd)
        np.copyto(z, 0.0, where=np.isnan(z))  # missing: the mean
        return z

    def errors(self, rows: np.ndarray) -> np.ndarray:
        """Reconstruction error of each row: the distance from the row to its projection
        on the components, ``|z|^2 - |z B|^2`` under the root (the basis is orthonormal),
        which saves projecting back."""
        z = self._standardise(rows)
        kept = z @ self._basis
        squared = np.einsum("ij,ij->i", z, z) - np.einsum("ij,ij->i", kept, kept)
        return np.asarray(np.sqrt(np.maximum(squared, 0.0)))

    def _check(self, position: int) -> MultivariateCheck:
        assert self.reference_error is not None
        error = float(self._errors.mean())
        se = self._spread * math.sqrt(2 / self.config.window)
        z = (error - self.reference_error) / se if se > 0 else 0.0
        return MultivariateCheck(position, error, z)
