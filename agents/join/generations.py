"""The frozen generations of :mod:`.dedupe`, and their merge in bounded steps.

A :class:`Generation` is sorted 64-bit id hashes with, aligned, the time each id was
scored (``DEAD`` once removed). A :class:`Merge` builds one generation of the live entries
of two (or, compacting, of one) by merging the sorted arrays, never sorting them again,
at most ``budget`` source entries a :meth:`~Merge.step`: a merge of 10 million ids is
many steps of a few milliseconds instead of one re-sort of a second or more on the
event loop (issue 37). Its sources stay searchable until the merged generation replaces
them, and entries removed from them meanwhile are removed from it too.

>>> a = Generation(np.array([1, 3, 5], np.uint64), np.array([1.0, 3.0, 5.0]))
>>> b = Generation(np.array([2, 3], np.uint64), np.array([2.0, DEAD]))
>>> m = Merge(a, b)
>>> m.step(budget=2), m.done, m.step(budget=2), m.step(budget=2), m.done
(2, False, 2, 1, True)
>>> g = m.result(); g.h.tolist(), g.t.tolist(), g.live
([1, 2, 3, 5], [1.0, 2.0, 3.0, 5.0], 4)
"""

from __future__ import annotations

import numpy as np

DEAD = -np.inf       # the seen time of a removed entry
MERGE_STEP = 1 << 17  # source entries a merge step reads at most (~3 ms on a busy core)
# An expiry sweep reads of each generation (and merge copy) the larger of EXPIRE_STEP
# entries and 1 / EXPIRE_PASSES of it: a pass over any generation takes at most
# EXPIRE_PASSES sweeps, so an id is forgotten at most that many sweeps late.
EXPIRE_STEP = 1 << 17
EXPIRE_PASSES = 32
# A generation of SAMPLE_MIN entries or more is searched through every SAMPLE_EVERY-th
# hash first (a 32nd of the array, which stays in cache), then within that block: a plain
# binary search of 10 million hashes takes ~1.4 µs a new id, nearly all of it cache
# misses, this ~0.35 (the dedupe of a long-running worker: bench/pair_floor.py
# --remembered).
SAMPLE_EVERY = 32
SAMPLE_MIN = 1 << 20
_BLOCK = np.arange(SAMPLE_EVERY + 1)


def expire_budget(size: int, step: int = EXPIRE_STEP, passes: int = EXPIRE_PASSES) -> int:
    """Entries an expiry sweep reads of a generation (or copy) of ``size``.

    >>> expire_budget(1_000), expire_budget(10_000_000)
    (131072, 312500)
    """
    return max(step, -(-size // passes))


class Generation:
    """Sorted hashes and, aligned, the time each id was scored (``DEAD`` once removed).

    ``live`` counts the entries not dead; ``oldest`` is a lower bound of their times
    (exact when built, kept by removals, made exact again by each whole pass of
    :meth:`expire`: :meth:`DoneIds.expire` reads it to skip generations with nothing to
    forget)."""

    __slots__ = ("h", "t", "live", "oldest", "busy", "cursor", "pass_oldest", "_sample")

    def __init__(self, h: np.ndarray, t: np.ndarray, *, ordered: bool = False,
                 live: int | None = None, oldest: float | None = None) -> None:
        if not ordered:
            order = np.argsort(h, kind="stable")
            h, t = h[order], t[order]
        self.h, self.t = h, t
        self.busy = False  # a source of a merge in progress: kept as it is until it ends
        if live is None or oldest is None:
            alive = t != DEAD
            live = int(np.count_nonzero(alive))
            oldest = float(t[alive].min()) if live else np.inf
        self.live, self.oldest = live, oldest
        self.cursor, self.pass_oldest = 0, np.inf  # :meth:`expire`'s pass so far
        self._sample: np.ndarray | None = None  # every SAMPLE_EVERY-th hash, once searched

    def find(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found, index) of each hash: the first live entry of that hash."""
        if not len(self.h):
            return np.zeros(len(h), bool), np.zeros(len(h), np.intp)
        at = np.minimum(self.first_at_least(h), len(self.h) - 1)
        hit = self.h[at] == h
        found = hit & (self.t[at] != DEAD)
        # A dead entry may come before a live one of the same hash (rare: a hash kept twice).
        for i in np.flatnonzero(hit & ~found):
            end = int(np.searchsorted(self.h, h[i], "right"))
            live = np.flatnonzero(self.t[at[i]:end] != DEAD)
            if len(live):
                found[i], at[i] = True, at[i] + live[0]
        return found, at

    def first_at_least(self, h: np.ndarray) -> np.ndarray:
        """``np.searchsorted(self.h, h)``: for a large generation, a search of its sample,
        then a count within the block it names (the hashes never change once built)."""
        n = len(self.h)
        if n < SAMPLE_MIN or not n:
            return np.searchsorted(self.h, h)
        if self._sample is None:
            self._sample = self.h[::SAMPLE_EVERY].copy()
        # The last sampled hash below each one starts its block; the block and the next
        # sampled hash hold the first hash at least it.
        start = np.maximum(np.searchsorted(self._sample, h) - 1, 0) * SAMPLE_EVERY
        block = self.h[np.minimum(start[:, None] + _BLOCK, n - 1)]
        below: np.ndarray = np.count_nonzero(block < h[:, None], axis=1)
        first: np.ndarray = np.minimum(start + below, n)  # a block past the end repeats
        return first                                      # the last hash

    def kill(self, index: np.ndarray) -> int:
        """Mark the entries at ``index`` (distinct) dead; how many were live."""
        newly = int(np.count_nonzero(self.t[index] != DEAD))
        self.t[index] = DEAD
        self.live -= newly
        return newly

    def expire(self, cutoff: float, budget: int) -> int:
        """Kill the entries scored at or before ``cutoff`` among the next ``budget`` of a
        pass over the generation, which starts again once it reaches the end; how many were
        live. An id is forgotten within len / ``budget`` calls of its cutoff (with
        :func:`expire_budget`, 32 sweeps: 160 s at the default interval, of a 24 h
        window), each call reading at most ``budget`` times (issue 37: whole passes over
        10 million ids took 60-280 ms a sweep, a p99 step of their own)."""
        start = self.cursor
        end = min(len(self.t), start + budget)
        t = self.t[start:end]  # a view: kills write through
        stale = np.flatnonzero((t <= cutoff) & (t != DEAD))
        t[stale] = DEAD
        self.live -= len(stale)
        alive = t[t != DEAD]
        if len(alive):
            self.pass_oldest = min(self.pass_oldest, float(alive.min()))
        if end < len(self.t):
            self.cursor = end
        else:  # a whole pass: entries only die, so its minimum bounds what is left
            self.oldest, self.pass_oldest, self.cursor = self.pass_oldest, np.inf, 0
        return len(stale)


def _empty() -> Generation:
    return Generation(np.empty(0, np.uint64), np.empty(0), ordered=True)


class Merge:
    """One generation of the live entries of ``a`` and the newer ``b`` (none: ``a``
    compacted), built ``budget`` source entries a :meth:`step`; the result equals
    re-sorting both together, stably (an entry of ``a`` before an equal hash of ``b``).

    Entries of the sources killed once copied are killed in the copy too (:meth:`kill`,
    :meth:`expire`), so :meth:`result` holds exactly what the sources hold when it ends."""

    def __init__(self, a: Generation, b: Generation | None = None) -> None:
        self.a, self.b = a, b if b is not None else _empty()
        self.a.busy = self.b.busy = True
        size = a.live + self.b.live  # no more than that to copy: the sources only lose entries
        self.h, self.t = np.empty(size, np.uint64), np.empty(size)
        self.ia = self.ib = self.filled = 0  # read of a, of b; written
        self.killed = 0  # written entries killed since
        self.oldest = np.inf
        self.expired_to = 0  # :meth:`expire`'s pass over the copy so far

    @property
    def done(self) -> bool:
        return self.ia == len(self.a.h) and self.ib == len(self.b.h)

    @property
    def remaining(self) -> int:
        """Source entries still to read."""
        return len(self.a.h) - self.ia + len(self.b.h) - self.ib

    def step(self, budget: int = MERGE_STEP) -> int:
        """Read the next ``budget`` source entries (fewer at the end) into the merged
        arrays; how many were read."""
        k = min(budget, self.remaining)
        if k <= 0:
            return 0
        x = self._split(k)
        ha, ta = _live(self.a, self.ia, self.ia + x)
        hb, tb = _live(self.b, self.ib, self.ib + k - x)
        # Each entry's place is its rank in its own chunk plus the other chunk's entries
        # before it: those of b strictly less, those of a less or equal (a first on ties).
        at_a = np.arange(len(ha)) + np.searchsorted(hb, ha, "left")
        at_b = np.arange(len(hb)) + np.searchsorted(ha, hb, "right")
        n = len(ha) + len(hb)
        h, t = self.h[self.filled:self.filled + n], self.t[self.filled:self.filled + n]
        h[at_a], t[at_a] = ha, ta
        h[at_b], t[at_b] = hb, tb
        if n:
            self.oldest = min(self.oldest, float(t.min()))
        self.filled += n
        self.ia, self.ib = self.ia + x, self.ib + k - x
        return k

    def _split(self, k: int) -> int:
        """How many of the next ``k`` merged entries come from ``a`` (the co-rank of the
        merge path, by bisection: a few scalar comparisons)."""
        a, b, ia, ib = self.a.h, self.b.h, self.ia, self.ib
        lo, hi = max(0, k - (len(b) - ib)), min(k, len(a) - ia)
        while True:
            x = (lo + hi) // 2
            y = k - x
            if x > 0 and ib + y < len(b) and a[ia + x - 1] > b[ib + y]:
                hi = x - 1  # a's last taken belongs after b's next
            elif y > 0 and ia + x < len(a) and b[ib + y - 1] >= a[ia + x]:
                lo = x + 1  # a's next belongs before b's last taken
            else:
                return x

    def kill(self, source: Generation, index: int) -> None:
        """Entry ``index`` of a source is about to be killed: kill its copy, if made."""
        if index >= (self.ia if source is self.a else self.ib):
            return  # not read yet: dropped as dead when it is
        h, t = source.h[index], source.t[index]
        written = self.h[:self.filled]
        lo, hi = np.searchsorted(written, h, "left"), np.searchsorted(written, h, "right")
        same = np.flatnonzero(self.t[lo:hi] == t)  # the copy (an equal one, if duplicated)
        if len(same):
            self.t[lo + same[0]] = DEAD
            self.killed += 1

    def expire(self, cutoff: float, budget: int) -> None:
        """Kill the copies of entries scored at or before ``cutoff``, ``budget`` of the copy
        a call, in passes as :meth:`Generation.expire` (those the merge copies later come
        from sources that the same sweep expires)."""
        if self.oldest > cutoff:
            return
        start = self.expired_to
        end = min(self.filled, start + budget)
        t = self.t[start:end]
        stale = np.flatnonzero((t <= cutoff) & (t != DEAD))
        t[stale] = DEAD
        self.killed += len(stale)
        self.expired_to = end if end < self.filled else 0

    def result(self) -> Generation:
        """The merged generation (once :attr:`done`)."""
        return Generation(self.h[:self.filled], self.t[:self.filled], ordered=True,
                          live=self.filled - self.killed, oldest=self.oldest)


def _live(g: Generation, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    h, t = g.h[start:end], g.t[start:end]
    keep = t != DEAD
    return h[keep], t[keep]
