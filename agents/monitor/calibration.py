"""The false-alarm budget: one number per model, split over its tests, turned into thresholds.

``false_alarm_budget`` (monitoring TOML, default 1) is the expected number of false alarms
per 1,000,000 predictions across all of a model's tests. It is split evenly
(Bonferroni) over the tests that run on each prediction, :func:`count_tests`, into a
false-alarm rate per test and per prediction, :func:`per_test_rate`. Each detector
then sets its threshold so that it breaches at most that often on a stationary stream:

* PSI (data and prediction drift), checked every ``check_every`` predictions: a check
  may breach with probability ``rate * check_every``; the threshold is that upper
  quantile of the column's PSI under no drift, bootstrapped from the version's
  reference window (:func:`psi_thresholds`). A fire needs a breach, so the expected
  fires are at most the expected breaches.
* ADWIN, which tests for a cut every ``clock`` pairs with its ``delta`` as the bound on
  a false cut per test: ``delta = rate * clock`` (:func:`adwin_delta`), with a clock of
  :data:`ADWIN_CLOCK` unless one is configured.

Versions need no share of their own: the rate is per prediction and each prediction
is scored by one version, so versions split the budget by their share of the traffic.

>>> f"{per_test_rate(1.0, count_tests(features=10)):.3g}"   # 10 features: 23 tests
'4.35e-08'
>>> f"{adwin_delta(per_test_rate(1.0, 23), clock=32):.3g}"
'1.39e-06'

The data-quality checks of a feature (:mod:`~driftline.agents.monitor.rules.quality`)
share one test's rate: missing share and type mismatch by Fisher's exact test on their
counts (:func:`rise_p`), values out of the reference's range by the beta-binomial law of
values beyond a sample's extremes (:func:`out_of_range_limit`), a category the reference
never saw by a bound that holds for any distribution (:func:`unseen_limit`), a feature
that stopped arriving by the chance that a whole check misses it (:func:`absent_p`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from scipy import stats

from driftline.agents.monitor import psi

PER = 1_000_000          # the budget counts false alarms per this many predictions
BOOTSTRAP_SAMPLES = 4000  # per column; the tail beyond what they show is a fitted chi-square
ADWIN_CLOCK = 16         # pairs between two of ADWIN's tests when its delta is calibrated
RESOLVE_RATIO = 0.4       # psi_resolve = this x psi_threshold, the ratio of the old defaults
# A column constant over its reference has a PSI of 0 under no drift; its limit is this,
# about 0.3% of the window taking a value the reference never had.
MIN_LIMIT = 0.01
_TAIL_SAMPLES = 20        # an empirical quantile needs this many samples beyond it


def count_tests(features: int, segments: int = 1, extra: int = 0) -> int:
    """The tests that run on a prediction of one version: a drift test per feature (PSI,
    or chi-square for a categorical one), a PSI of the prediction, the error detector, the
    metric threshold and ``extra`` detectors (estimated degradation, multivariate drift),
    at each of ``segments`` levels (2 with segments on: the model-wide tests and those of
    the prediction's own segment; each prediction is in one segment, so segments, like
    versions, split by traffic); and one data-quality test per feature, model-wide, whose
    share its :data:`QUALITY_CHECKS` checks split.

    >>> count_tests(10), count_tests(10, segments=2), count_tests(10, extra=1), count_tests(0)
    (23, 36, 24, 3)
    """
    if features < 0 or segments < 1 or extra < 0:
        raise ValueError(f"need features >= 0, segments >= 1 and extra >= 0, got {features}, "
                         f"{segments}, {extra}")
    return (features + 1 + 2 + extra) * segments + features


def per_test_rate(budget: float, tests: int) -> float:
    """False alarms per prediction allowed to each of ``tests`` tests, for ``budget``
    false alarms per million predictions in all."""
    if budget <= 0 or tests < 1:
        raise ValueError(f"need budget > 0 and tests >= 1, got {budget}, {tests}")
    return budget / PER / tests


def adwin_delta(rate: float, clock: int = ADWIN_CLOCK) -> float:
    """ADWIN's ``delta`` for ``rate`` false alarms per pair: it tests every ``clock`` pairs."""
    return min(rate * clock, 0.5)


# log(false alarms per pair) = a - b * threshold of the concept-drift test (BinnedGLR), by
# its bins: a classifier's 0/1 error (2) and a regression's squared error (5; 3 or 4 where
# the reference's quantiles tie, which have fewer false alarms at a threshold, so the
# 5-bin fit is on their safe side). bench/glr_null.py counted the detections of i.i.d.
# streams (20,000,000 pairs a point; normal, Student t and log-normal residuals alike, as
# counts in bins are): 15.5, 3.4 and 0.4 per million at thresholds 12, 14 and 16 with 5
# bins, 3.2 and 0.1 at 10 and 12 with 2. Each line lies on or above every point and is
# flatter than the tail's slope, which tends to 1 (a likelihood ratio's chi-square tail),
# so extrapolating it to the budget's rates overstates them: the threshold errs high.
GLR_FIT = {2: (-3.15, 0.95), 5: (-0.55, 0.858)}


def glr_threshold(rate: float, bins: int) -> float:
    """The concept-drift test's threshold for ``rate`` false alarms per pair, with ``bins``."""
    a, b = GLR_FIT[2 if bins <= 2 else 5]
    return max((a - math.log(rate)) / b, 1.0)


QUALITY_CHECKS = 4  # missing share, type mismatch, out of range or unseen, absent


def check_alpha(rate: float, check_every: int) -> float:
    """The share of PSI checks that may breach: ``rate`` per prediction, a check every
    ``check_every`` predictions."""
    return min(rate * check_every, 0.5)


def psi_null(expected: np.ndarray, reference_size: int, window: int,
             samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> np.ndarray:
    """PSI of each column under no drift: ``samples`` x columns draws.

    ``expected`` (columns x bins, shares of the binned reference) stands for the
    column's distribution; each draw resamples a reference of ``reference_size`` and a
    window of ``window`` from it (a bootstrap of the reference, drawn as multinomial bin
    counts, which is the same thing for binned values) and takes their PSI, with the
    same epsilon floor as :class:`~driftline.agents.monitor.drift.PSIDrift`
    (:mod:`~driftline.agents.monitor.psi`).
    """
    rng = np.random.default_rng(seed)
    # Drawn from the shares before their floor: a bin the reference left empty stays empty.
    p = np.where(expected > psi.EPS, expected, 0.0)
    p[p.sum(axis=1) == 0] = 1.0  # a column the reference never saw: any shares will do
    p = p / p.sum(axis=1, keepdims=True)
    ref = rng.multinomial(reference_size, p, size=(samples, len(p))) / reference_size
    cur = rng.multinomial(window, p, size=(samples, len(p))) / window
    return psi.psi_of_shares(cur, ref)


def upper_quantile(null: np.ndarray, alpha: float) -> np.ndarray:
    """Per column, the value a draw of ``null`` (samples x columns) exceeds with
    probability ``alpha``: the empirical quantile where the samples reach that far,
    else the quantile of a chi-square scaled to their mean and variance (PSI is about
    a chi-square over the sample size when there is no drift; Satterthwaite's fit)."""
    if len(null) * alpha >= _TAIL_SAMPLES:
        return np.asarray(np.quantile(null, 1 - alpha, axis=0), float)
    mean, var = null.mean(axis=0), null.var(axis=0)
    varies = (mean > 0) & (var > 0)  # else every draw is 0: a column that never varied
    mean, var = np.where(varies, mean, 1.0), np.where(varies, var, 1.0)
    scale, dof = var / (2 * mean), 2 * mean ** 2 / var
    return np.asarray(np.where(varies, scale * stats.chi2.isf(alpha, dof), 0.0), float)


def psi_thresholds(expected: np.ndarray, reference_size: int, window: int, alpha: float,
                   seed: int = 0) -> np.ndarray:
    """A PSI threshold per column that a stationary check breaches with probability
    ``alpha``. Columns with the same reference shares share one bootstrap (quantile bins
    of continuous values give every column the same shares, 1/bins each), the others
    are bootstrapped a few at a time to bound the memory.

    >>> limits = psi_thresholds(np.full((500, 10), 0.1), 1000, 1000, 2e-5)
    >>> limits.shape, bool(np.all(limits == limits[0])), bool(0.05 < limits[0] < 0.12)
    ((500,), True, True)
    """
    shares, inverse = np.unique(np.round(expected, 12), axis=0, return_inverse=True)
    limits = _limits_of_unique(shares.tobytes(), shares.shape, reference_size, window, alpha,
                               seed)
    out: np.ndarray = np.maximum(np.asarray(limits[np.ravel(inverse)], float), MIN_LIMIT)
    return out


@functools.lru_cache(maxsize=256)
def _limits_of_unique(shares_bytes: bytes, shape: tuple[int, int], reference_size: int,
                      window: int, alpha: float, seed: int) -> np.ndarray:
    """:func:`psi_thresholds` of distinct share rows. A function of its arguments only (the
    bootstrap's seed is one of them), so it is cached: the prediction's PSI and every
    segment's features, quantile-binned, have the shares of the version's features, and
    each bootstrap costs ~8 ms."""
    shares = np.frombuffer(shares_bytes).reshape(shape)
    step = max(1, 2_000_000 // (BOOTSTRAP_SAMPLES * shape[1]))
    limits = np.concatenate([
        upper_quantile(psi_null(shares[j:j + step], reference_size, window, seed=seed + j),
                       alpha) for j in range(0, len(shares), step)])
    limits.setflags(write=False)  # shared by every caller
    return limits


def rise_p(reference: np.ndarray, window: np.ndarray, n_reference: int,
           n_window: int) -> np.ndarray:
    """One-sided Fisher's exact p-values of a rise of a count's share, from ``reference``
    of ``n_reference`` events to ``window`` of ``n_window`` (hypergeometric: under no
    change, the window holds its share of the two together).

    >>> rise_p(np.array([20, 20]), np.array([20, 200]), 1000, 1000).round(4).tolist()
    [0.5633, 0.0]
    """
    out = np.ones(len(window))
    some = np.flatnonzero(window > 0)
    if len(some):  # scipy's call costs ~60 us: none where no column has a count
        out[some] = stats.hypergeom.sf(window[some] - 1, n_reference + n_window,
                                       reference[some] + window[some], n_window)
    return out


def absent_p(present: np.ndarray, n_reference: int, period: int) -> np.ndarray:
    """The chance, under no change, that ``period`` events in a row lack a feature the
    reference had ``present`` times in ``n_reference``.

    >>> absent_p(np.array([1000, 500, 0]), 1000, 250).round(6).tolist()
    [0.0, 0.0, 1.0]
    """
    out: np.ndarray = stats.hypergeom.pmf(0, n_reference + period, present, period)
    return out


@functools.lru_cache(maxsize=256)
def out_of_range_limit(present: int, window: int, alpha: float) -> int:
    """The least count of a window's values outside a reference's range that a stationary
    window reaches with probability at most ``alpha``: a continuous value falls outside the
    extremes of ``present`` values with a chance p ~ Beta(2, present - 1), so the window's
    count is beta-binomial (ties only make it rarer).

    >>> out_of_range_limit(1000, 1000, 1e-5), out_of_range_limit(1000, 1000, 0.05)
    (20, 7)
    """
    if present < 2:
        return window + 1
    return int(stats.betabinom.isf(alpha, window, 2, present - 1)) + 1


@functools.lru_cache(maxsize=256)
def unseen_limit(present: int, window: int, alpha: float) -> int:
    """The least count c such that, whatever the distribution, a window of ``window``
    has a category the ``present`` reference values never had c times or more with
    probability at most ``alpha``.

    A category of share p is missing from the reference with probability
    (1 - p)^present, and then reaches c in the window with P(Bin(window, p) >= c); the
    shares sum to 1, so the sum over all categories is at most
    sup_p (1 - p)^present P(Bin(window, p) >= c) / p.

    >>> unseen_limit(1000, 1000, 1.8e-5)
    20
    """
    p = np.geomspace(1e-7, 0.5, 600)[:, None]
    j = np.arange(window + 1)[None, :]
    tail = stats.binom.sf(j - 1, window, p)             # P(Bin >= j)
    bound = (np.exp(present * np.log1p(-p)) * tail / p).max(axis=0)
    below = np.flatnonzero(bound <= alpha)
    return int(below[0]) if len(below) else window + 1


def of_version(vm: Any) -> dict[str, Any]:
    """The budget's split and the thresholds it gave (config values where set)."""
    limits = {**(vm.data_drift.limits_by_column() if vm.data_drift else {}),
              **vm.prediction_drift.limits_by_column()}
    chi2 = ({"chi2_limits": vm.categorical_drift.limits_by_column()}
            if vm.categorical_drift is not None else {})
    return {"false_alarm_budget": vm.config.false_alarm_budget, "tests": vm.tests,
            "rate_per_test": vm.rate, "psi_limits": limits, **chi2,
            "detector_params": {k: v for k, v in vm.concept.detector.params.items()
                                if isinstance(v, (int, float))}}
