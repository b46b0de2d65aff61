"""Concept drift as a change point: a one-sided likelihood-ratio test on binned errors.

The error detector ``glr`` (the default; ``adwin`` and ``page_hinkley`` remain). Why not ADWIN on
the raw errors: ADWIN's bound assumes values in [0, 1], and squared errors are unbounded and
skewed, so its real false-alarm rate was far above its ``delta`` (``bench/detection.py``: 7 per
million pairs with normal noise, 152-265 with Student t or log-normal noise, where the budget
allowed 0.04 to this test). Counts of errors in bins are multinomial whatever the errors'
distribution, so a test on them can be calibrated once, for any model:

* **Bins.** A regression's squared errors are binned at its version's first
  :data:`REFERENCE` errors' quantiles :data:`QUANTILES` and their largest value (five bins:
  the local drifts of ``bench/detection.py`` show up as errors beyond the reference's
  largest), or a reference profile's labelled rows' (``warm``); those first errors then
  begin the history. A classifier's 0/1 error is its own two bins from the first pair.
* **Blocks.** Every :data:`CLOCK` pairs the counts of the block are added to the history
  (cumulative counts since the history began, at most :data:`HISTORY` blocks).
* **The test**, at the end of each block: for each recent window of ``w`` blocks on a
  geometric grid (:func:`window_grid`) with at least :data:`MIN_BEFORE` blocks before it,
  the generalised likelihood ratio of "the window's bin shares differ from those before it"
  against "one set of shares" (the G statistic over two, an exact function of integer counts,
  so a stream gives the same detections however it is batched, live or in replay). A rise
  (the window's mean bin above the earlier one) over the threshold is a detection, and the
  history starts afresh; a fall over it keeps only the window, so a later rise is measured
  from the lower level (as :class:`~driftline.agents.monitor.drift.ErrorDrift`'s ADWIN does).
* **Threshold** from the false-alarm rate per pair this test is allowed
  (:func:`~driftline.agents.monitor.calibration.glr_threshold`), by bins; ``threshold`` in
  ``[concept_drift.params]`` wins.
"""

from __future__ import annotations

import numpy as np

from driftline.agents.monitor import calibration

QUANTILES = (0.5, 0.9, 0.99)  # bin edges of a regression's squared error, and its largest
REFERENCE = 200               # a regression's first errors, which set the edges
CLOCK = 16                    # pairs per block: the test runs at the end of each
HISTORY = 1024                # blocks of history at most (16,384 pairs)
MIN_BEFORE = 4                # blocks before a window, at least

Rise = tuple[int, float, float]  # (position in the batch, mean error before, mean after)


def window_grid(history: int = HISTORY) -> np.ndarray:
    """Window lengths in blocks: every one to 8, then about 1.2 times the last (35 lengths,
    up to 1,024)."""
    sizes = set(range(1, 9))
    w = 8.0
    while w < history:
        w *= 1.2
        sizes.add(min(int(round(w)), history))
    return np.array(sorted(sizes), np.int64)


_GRID = window_grid()
# x ln x of every count a history can hold, so the statistic is table lookups and sums.
_XLOGX = np.arange(HISTORY * CLOCK + 1, dtype=float)
_XLOGX[1:] *= np.log(_XLOGX[1:])


class BinnedGLR:
    """Rises of a stream of per-pair errors, by a two-sample G test on binned counts."""

    name = "glr"

    def __init__(self, rate: float, bounded: bool, threshold: float | None = None,
                 reference: int = REFERENCE) -> None:
        """``rate``: false alarms per pair allowed; ``bounded``: the errors are 0/1;
        ``threshold`` (else from the rate and the bins) and ``reference`` (a regression's
        errors that set the edges) as configured."""
        self.rate = rate
        self.configured = threshold
        self.threshold = float("inf")  # until the bins are known
        self.reference = reference
        self.detections = 0
        self.params: dict[str, float] = {"clock": CLOCK, "history": HISTORY * CLOCK,
                                         "reference": 0 if bounded else reference}
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        # A classifier's 0/1 error needs no reference: its bins are 0 and 1.
        self.edges: np.ndarray | None = np.array([0.5]) if bounded else None
        self._start(2 if bounded else None)

    @property
    def bins(self) -> int | None:
        return None if self.edges is None else len(self.edges) + 1

    def _start(self, bins: int | None) -> None:
        k = bins or 1
        if bins is not None:
            self.threshold = (self.configured if self.configured is not None
                              else calibration.glr_threshold(self.rate, bins))
            self.params.update(threshold=self.threshold, bins=bins)
        self._cum = np.zeros((1, k), np.int64)  # rows: counts before block off + row
        self._raw = np.zeros(1)                  # the same for the errors' sum
        self._off = 0          # block number of row 0
        self._base = 0         # block where the history begins (after a rise or a fall)
        self._part = np.zeros(k, np.int64)
        self._part_raw = 0.0
        self._part_n = 0

    def update_many(self, errors: np.ndarray) -> list[Rise]:
        """Feed errors in order; returns (position, mean before, mean after) of each rise."""
        errors = np.asarray(errors, float)
        start = 0
        if self.edges is None:
            need = self.reference - self._buffered
            self._buffer.append(errors[:need].copy())
            self._buffered += len(self._buffer[-1])
            if self._buffered < self.reference:
                return []
            # The reference's errors begin the history: a change soon after them is found.
            start = min(need, len(errors))
            reference = np.concatenate(self._buffer)
            self._buffer, self._buffered = [], 0
            self.warm(reference)
            if self.edges is None:  # no finite error among them (the monitor refuses those)
                return []
            errors = np.concatenate((reference, errors[start:]))
            start -= len(reference)
        if not len(errors):
            return []
        # A rise within the reference (of earlier batches) is found in this one: at its start.
        return [(max(start + i, 0), before, after)
                for i, before, after in self._blocks(errors)]

    def warm(self, reference: np.ndarray) -> None:
        """Set a regression's bins from ``reference`` errors (its first ones, or a reference
        profile's labelled rows), if they are not set yet."""
        reference = np.asarray(reference, float)
        reference = reference[np.isfinite(reference)]
        if self.edges is not None or not len(reference):
            return
        self.edges = np.unique(np.append(np.quantile(reference, QUANTILES), reference.max()))
        self._start(len(self.edges) + 1)

    def _blocks(self, errors: np.ndarray) -> list[Rise]:
        assert self.edges is not None
        k = len(self.edges) + 1
        before = self._part_n  # pairs of the partial block before this batch
        codes = np.searchsorted(self.edges, errors, "left")
        codes[np.isnan(errors)] = k - 1  # no error is larger
        slot = (np.arange(len(errors)) + self._part_n) // CLOCK  # the block each pair ends in
        blocks = int(slot[-1]) + 1
        counts = np.bincount(slot * k + codes, minlength=blocks * k).reshape(blocks, k)
        finite = errors if np.isfinite(errors).all() else np.nan_to_num(errors, nan=0.0,
                                                                         posinf=1e300)
        raw = np.bincount(slot, weights=finite, minlength=blocks)
        counts[0] += self._part
        raw[0] += self._part_raw
        full = (self._part_n + len(errors)) // CLOCK
        self._part_n = (self._part_n + len(errors)) % CLOCK
        self._part = counts[full] if full < blocks else np.zeros(k, np.int64)
        self._part_raw = float(raw[full]) if full < blocks else 0.0
        if not full:
            return []
        first = self._off + len(self._cum)  # the block count after the first full block
        self._cum = np.concatenate((self._cum, self._cum[-1] + np.cumsum(counts[:full], 0)))
        self._raw = np.concatenate((self._raw, self._raw[-1] + np.cumsum(raw[:full])))
        ends = np.arange(1, full + 1) * CLOCK - 1 - before  # the full blocks' last pairs
        rises = self._test(first, first + full, ends)
        self._compact(first + full)
        return rises

    def _test(self, first: int, stop: int, ends: np.ndarray) -> list[Rise]:
        """Tests at block counts first..stop-1 (ends: each one's position in the batch)."""
        rises: list[Rise] = []
        t = first
        while t < stop:
            ticks = np.arange(t, stop)
            lo = np.maximum(self._base, ticks - HISTORY)
            span = ticks - lo
            w = _GRID[None, :]
            ok = w <= (span[:, None] - MIN_BEFORE)
            if not ok.any():
                return rises
            w = np.where(ok, w, 1)
            row = ticks[:, None] - self._off
            now, cut, old = self._cum[row], self._cum[row - w], self._cum[(lo - self._off)[:, None]]
            x1, x0 = now - cut, cut - old
            n1, n0, n = w * CLOCK, (span[:, None] - w) * CLOCK, span[:, None] * CLOCK
            # G / 2 = sum x ln x over the window's and the earlier bins, less over both
            # together, less n ln n of each part, plus of the whole (x1 + x0 = now - old).
            g = ((_XLOGX[x1] + _XLOGX[x0]).sum(-1) - _XLOGX[now - old].sum(-1)
                 - _XLOGX[n1] - _XLOGX[n0] + _XLOGX[n])
            g = np.where(ok, g, 0.0)
            k = np.arange(x1.shape[-1])
            up = (x1 @ k) * n0 > (x0 @ k) * n1
            over = g > self.threshold
            hit = np.flatnonzero(over.any(axis=1))
            if not len(hit):
                return rises
            i = int(hit[0])
            rising = np.where(over[i] & up[i], g[i], -1.0)
            tick = int(ticks[i])
            if rising.max() > 0:
                wj = int(_GRID[int(rising.argmax())])
                r, o = tick - self._off, int(lo[i]) - self._off
                c = r - wj
                before = (self._raw[c] - self._raw[o]) / max((c - o) * CLOCK, 1)
                after = (self._raw[r] - self._raw[c]) / (wj * CLOCK)
                rises.append((int(ends[tick - first]), float(before), float(after)))
                self.detections += 1
                self._base = tick
            else:  # a fall: keep the window that fell
                falling = np.where(over[i] & ~up[i], g[i], -1.0)
                self._base = tick - int(_GRID[int(falling.argmax())])
            t = tick + 1
        return rises

    def _compact(self, blocks: int) -> None:
        """Drop the rows no later test reads (before the history's start)."""
        keep = max(self._base, blocks - HISTORY) - self._off
        if keep > HISTORY // 4:  # at most 1,280 rows; a copy of 1,024 every 256 blocks
            self._cum = self._cum[keep:].copy()
            self._raw = self._raw[keep:].copy()
            self._off += keep
