"""Rolling error metrics over the last ``window`` scored pairs, vectorised with numpy;
a version's baseline MSE; the event-time span of its pairs; the label-delay histogram.

The numbers are River's: ``rolling_mse`` after each pair equals
``river.utils.Rolling(river.metrics.MSE(), window)`` (a test checks it to 1e-9),
but a batch of pairs costs a few numpy calls instead of one Python call per pair.

>>> w = RollingErrors(window=3)
>>> w.extend(np.array([1.0, 2, 3, 4]), np.array([0.0, 0, 0, 0])).tolist()
[1.0, 2.5, 4.666666666666667, 9.666666666666666]
>>> w.count, round(w.report()["rolling_mae"], 6)
(4, 3.0)
"""

from __future__ import annotations

import math

import numpy as np

from driftline.agents.monitor.window import Ring


class RollingErrors:
    """The last ``window`` (prediction, label) pairs and the cumulative count."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._pairs = Ring(window, (3,))  # prediction, label, squared error
        self._sum = 0.0                   # of the window's squared errors
        self.count = 0

    @property
    def predictions(self) -> np.ndarray:
        return self._pairs.values()[:, 0]

    @property
    def labels(self) -> np.ndarray:
        return self._pairs.values()[:, 1]

    def extend(self, predictions: np.ndarray, labels: np.ndarray,
               squared: np.ndarray | None = None) -> np.ndarray:
        """Add pairs in order (``squared``: their squared errors, if the caller has them);
        returns the rolling MSE after each of them."""
        n, window = len(predictions), self.window
        sq = (predictions - labels) ** 2 if squared is None else squared
        rows = np.column_stack((predictions, labels, sq))
        if self.count >= window and n < window:  # the common case: a full window already
            rolling = (self._sum + np.cumsum(sq - self._pairs.push(rows)[:, 2])) / window
        else:
            held = self._pairs.ordered()[:, 2]
            self._pairs.push(rows)
            cumulative = np.cumsum(np.concatenate(([0.0], held, sq)))
            ends = np.arange(len(held) + 1, len(held) + 1 + n)
            sizes = np.minimum(np.arange(self.count + 1, self.count + 1 + n), window)
            rolling = (cumulative[ends] - cumulative[ends - sizes]) / sizes
        self._sum = float(self._pairs.values()[:, 2].sum())  # afresh: no rounding carried
        self.count += n
        return np.asarray(rolling)

    def mse(self) -> float | None:
        if self.count == 0:
            return None
        return float(np.mean(self._pairs.values()[:, 2]))

    def report(self, classes: bool = False) -> dict[str, float | None]:
        """Rolling MSE, RMSE, MAE and R^2 over the window (None before any pair).

        ``classes``: the pairs are a multiclass model's class codes, numbered in the order
        the monitor first saw each class, and their squared errors its 0/1 errors. The MSE
        (the error rate) and RMSE are then still numbers of the classes; the MAE and R^2
        of the codes are not (a worker rebuilt after a kill, or a replay, that saw the
        classes come in another order, would report others): None."""
        if self.count == 0:
            return {"rolling_mse": None, "rolling_rmse": None, "rolling_mae": None,
                    "rolling_r2": None}
        mse = float(np.mean(self._pairs.values()[:, 2]))
        if classes:
            return {"rolling_mse": mse, "rolling_rmse": math.sqrt(mse), "rolling_mae": None,
                    "rolling_r2": None}
        err = self.predictions - self.labels
        total = float(np.sum((self.labels - self.labels.mean()) ** 2))
        return {"rolling_mse": mse, "rolling_rmse": math.sqrt(mse),
                "rolling_mae": float(np.mean(np.abs(err))),
                "rolling_r2": 1.0 - float(np.sum(err ** 2)) / total if total > 0 else None}


class Baseline:
    """A version's baseline MSE: given, or the mean squared error of its first ``pairs``.

    >>> b = Baseline(pairs=3)
    >>> b.update(np.array([1.0, 2.0])).mse is None, b.applies_from
    (True, 2)
    >>> b.update(np.array([3.0, 100.0])).mse, b.applies_from   # set by the 3rd pair
    (2.0, 1)
    >>> Baseline(pairs=3, mse=0.5).update(np.array([9.0])).applies_from
    0
    """

    def __init__(self, pairs: int, mse: float | None = None) -> None:
        self.pairs = pairs
        self._mse = mse
        self._sum = 0.0
        self._n = 0
        self.applies_from = 0  # position in the last batch from which the baseline is set

    @property
    def mse(self) -> float | None:
        return self._mse

    def update(self, squared: np.ndarray) -> Baseline:
        """Squared errors of a batch of pairs, in order."""
        if self._mse is not None:
            self.applies_from = 0
            return self
        take = squared[:self.pairs - self._n]
        self._sum += float(take.sum())
        self._n += len(take)
        if self._n == self.pairs:
            self._mse = self._sum / self._n
            self.applies_from = len(take)
        else:
            self.applies_from = len(squared)
        return self


class EventSpan:
    """The label times of the scored pairs a version's metrics cover, the first and the
    newest (a metrics record's place on the event-time axis, issue 36), and its trail:
    the rolling metric every ``every`` pairs with the label time of the pair it was taken
    at, since the trail was last taken (the points a metrics record adds between two
    records: a burst of 20,000 pairs within one metrics interval was one point). At most
    ``size`` samples: when full, every other one goes and the step doubles, so any
    number of pairs fits.

    >>> span = EventSpan(every=2, size=3)
    >>> span.add(np.array([5.0, np.nan, 3.0]), np.array([1.0, 2.0, 3.0]), scored=0).report()
    {'label_ts_first': 3.0, 'label_ts_max': 5.0}
    >>> span.take()
    [[2, 5.0, 2.0]]
    >>> span.add(np.arange(10.0, 19.0), np.arange(4.0, 13.0), scored=3).every
    4
    >>> span.take(), span.take(), span.every
    ([[4, 10.0, 4.0], [8, 14.0, 8.0], [12, 18.0, 12.0]], [], 2)
    """

    def __init__(self, every: int = 250, size: int = 64) -> None:
        self.first: float | None = None
        self.newest: float | None = None
        self.base = self.every = every
        self.size = size
        self.samples: list[list[float]] = []  # [n_scored, label_ts, rolling]

    def add(self, label_ts: np.ndarray, rolling: np.ndarray, scored: int) -> EventSpan:
        """Pairs ``scored + 1``... with their label times and the rolling metric after each;
        a sample is placed at the newest label time so far (labels come out of order)."""
        known = label_ts[np.isfinite(label_ts)]
        if len(known) and self.first is None:
            self.first = float(known.min())
        newest = np.maximum.accumulate(np.concatenate((
            [-np.inf if self.newest is None else self.newest],
            np.where(np.isfinite(label_ts), label_ts, -np.inf))))[1:]
        if len(newest) and np.isfinite(newest[-1]):
            self.newest = float(newest[-1])
        n = scored + np.arange(1, len(rolling) + 1)
        for i in np.flatnonzero((n % self.every == 0) & np.isfinite(newest)).tolist():
            if n[i] % self.every:  # the step doubled within this batch
                continue
            self.samples.append([int(n[i]), float(newest[i]), float(rolling[i])])
            if len(self.samples) > self.size:
                self.every *= 2
                self.samples = [s for s in self.samples if s[0] % self.every == 0]
        return self

    def take(self) -> list[list[float]]:
        """The trail since it was last taken (the step back to ``every``)."""
        out, self.samples, self.every = self.samples, [], self.base
        return out

    def report(self) -> dict[str, float | None]:
        return {"label_ts_first": self.first, "label_ts_max": self.newest}


# Label delay buckets, seconds: a second to a week.
DELAY_BUCKETS = np.array([1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400,
                          3 * 86400, 7 * 86400], dtype=float)


class LabelDelays:
    """A histogram of label time - prediction time (Prometheus ``le`` buckets).

    >>> d = LabelDelays()
    >>> d.add(np.array([0.5, 3.0, 3.0, 1e7]), newest_label_ts=100.0)
    >>> d.buckets()[:3], d.buckets()[-1], d.total
    ([('1.0', 1), ('5.0', 3), ('15.0', 3)], ('+Inf', 4), 10000006.5)
    """

    def __init__(self) -> None:
        self.counts = np.zeros(len(DELAY_BUCKETS) + 1, dtype=np.int64)
        self.total = 0.0
        self.newest_label_ts: float | None = None

    def add(self, delays: np.ndarray, newest_label_ts: float | None) -> None:
        delays = delays[np.isfinite(delays)]
        self.counts += np.bincount(np.searchsorted(DELAY_BUCKETS, delays, side="left"),
                                   minlength=len(self.counts))
        self.total += float(delays.sum())
        if newest_label_ts is not None and (self.newest_label_ts is None
                                            or newest_label_ts > self.newest_label_ts):
            self.newest_label_ts = newest_label_ts

    def buckets(self) -> list[tuple[str, int]]:
        cumulative = np.cumsum(self.counts).tolist()
        return [(str(b), c) for b, c in zip(DELAY_BUCKETS.tolist(), cumulative)] + [
            ("+Inf", cumulative[-1])]
