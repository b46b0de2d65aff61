"""The ids a join partition has scored, remembered for the dedupe window in ~16 bytes each.

A later copy of a prediction or label whose id was scored within the dedupe window
(default 24 h) is a duplicate. At tens of thousands of predictions a second that is
hundreds of millions of ids, so a dict of id strings (about 130 bytes an id) will not do.

:class:`DoneIds` keeps the newest ids exactly, in a dict of id -> seen time, and freezes
them in batches of :data:`FREEZE` into *generations*: the ids' 64-bit hashes (blake2b),
sorted, in a numpy array, with the time each was scored beside it: 16 bytes an id.
Generations merge as they grow, the way a log-structured merge tree's levels do, so a
lookup searches O(log n) sorted arrays. An id removed from a generation (forgotten at the
end of its window, or restored to a waiting state) is marked dead in place, and dead
entries are dropped when a generation is merged or is half dead.

A frozen id is known by its hash only: a new id whose 64-bit hash equals one of the n
remembered ones is taken for a duplicate, with probability n / 2**64 (5.4e-12 with 100
million ids remembered). Ids in the dict are compared exactly.

>>> done = DoneIds()
>>> done.add("a", 1.0); done.add("b", 2.0)
>>> done.freeze(min_size=1)          # the join freezes on drain, FREEZE ids at a time
>>> "a" in done, "c" in done, len(done), done.seen("b")
(True, False, 2, 2.0)
>>> done.frozen_many(["c", "b"])
[False, True]
>>> done.discard("a"); done.expire(cutoff=5.0), len(done)
(([], 1), 0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from hashlib import blake2b
from typing import Any

import numpy as np

FREEZE = 16_384  # ids the dict holds before they are frozen into a generation
DEAD = -np.inf   # the seen time of a removed entry


def older_than(entries: dict[str, Any], cutoff: float, key: Callable[[Any], float]) -> list[str]:
    """Keys of ``entries`` (in arrival order) up to the first whose time is after ``cutoff``."""
    old = []
    for pid, value in entries.items():
        if key(value) > cutoff:
            break
        old.append(pid)
    return old


def fullest_due(recent: dict[int, int], size: int | None = None) -> int | None:
    """The partition whose newest done ids (``recent``: how many, per partition) should
    freeze now: the fullest of those holding ``size`` (:data:`FREEZE`) or more.

    >>> fullest_due({0: 20_000, 1: 17_000, 2: 5}), fullest_due({0: 3}), fullest_due({})
    (0, None, None)
    """
    size = FREEZE if size is None else size
    due = {p: n for p, n in recent.items() if n >= size}
    return max(due, key=due.__getitem__) if due else None


def id_hash(pid: str) -> int:
    """The 64-bit hash a frozen id is known by (stable across processes and restarts)."""
    return int.from_bytes(blake2b(pid.encode(), digest_size=8).digest(), "little")


def hashes(pids: list[str]) -> np.ndarray:
    """:func:`id_hash` of each id: the digests read as one little-endian buffer (8.5
    against 13 ms for 16,384 ids, one int per id not built)."""
    digests = b"".join([blake2b(pid.encode(), digest_size=8).digest() for pid in pids])
    return np.frombuffer(digests, "<u8").astype(np.uint64)


class _Generation:
    """Sorted hashes and, aligned, the time each id was scored (``DEAD`` once removed)."""

    __slots__ = ("h", "t", "live", "oldest")

    def __init__(self, h: np.ndarray, t: np.ndarray, *, ordered: bool = False) -> None:
        if not ordered:
            order = np.argsort(h, kind="stable")
            h, t = h[order], t[order]
        self.h, self.t = h, t
        alive = t != DEAD
        self.live = int(np.count_nonzero(alive))
        self.oldest = float(t[alive].min()) if self.live else np.inf

    def find(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found, index) of each hash, counting live entries only."""
        at = np.minimum(np.searchsorted(self.h, h), len(self.h) - 1)
        return (self.h[at] == h) & (self.t[at] != DEAD), at

    def kill(self, index: np.ndarray) -> None:
        self.t[index] = DEAD
        alive = self.t != DEAD
        self.live = int(np.count_nonzero(alive))
        self.oldest = float(self.t[alive].min()) if self.live else np.inf


class DoneIds:
    """Scored ids of one join partition and when each was scored; see the module docstring."""

    def __init__(self) -> None:
        self.recent: dict[str, float] = {}  # newest ids, in arrival order
        self._generations: list[_Generation] = []  # sizes decreasing

    def __len__(self) -> int:
        return len(self.recent) + sum(g.live for g in self._generations)

    def __contains__(self, pid: str) -> bool:
        return self.seen(pid) is not None

    def seen(self, pid: str) -> float | None:
        """When ``pid`` was scored, or None if it is not remembered."""
        t = self.recent.get(pid)
        if t is not None:
            return t
        where = self._frozen_at(pid)
        return None if where is None else float(where[0].t[where[1]])

    def frozen_many(self, pids: list[str]) -> list[bool] | None:
        """For each id, whether a generation holds it, with one search of each generation
        for all of them; None when there are no generations (nothing to hash)."""
        if not self._generations:
            return None
        h = hashes(pids)
        found = np.zeros(len(pids), bool)
        for g in self._generations:
            found |= g.find(h)[0]
        return found.tolist()

    def add(self, pid: str, seen: float) -> None:
        """Remember ``pid`` (not already remembered: the join checks first)."""
        self.recent[pid] = seen

    def discard(self, pid: str) -> None:
        if self.recent.pop(pid, None) is not None:
            return
        where = self._frozen_at(pid)
        if where is not None:
            where[0].kill(np.array([where[1]]))

    def _frozen_at(self, pid: str) -> tuple[_Generation, int] | None:
        """The generation holding ``pid`` live, and its index there."""
        if not self._generations:
            return None
        h = np.array([id_hash(pid)], np.uint64)
        for g in self._generations:
            found, at = g.find(h)
            if found[0]:
                return g, int(at[0])
        return None

    def expire(self, cutoff: float) -> tuple[list[str], int]:
        """Forget every id scored at or before ``cutoff``: the ids forgotten from the dict
        (known by name, so the join can write their tombstones) and how many more were
        forgotten from the generations."""
        old = older_than(self.recent, cutoff, key=lambda t: t)
        for pid in old:
            del self.recent[pid]
        frozen = 0
        for g in self._generations:
            if g.oldest > cutoff:
                continue
            stale = np.flatnonzero((g.t <= cutoff) & (g.t != DEAD))
            frozen += len(stale)
            g.kill(stale)
        self._generations = [g if g.live * 2 >= len(g.h) else _compact(g)
                             for g in self._generations if g.live]
        return old, frozen

    def freeze(self, min_size: int | None = None) -> None:
        """Move the dict's ids into a generation once it holds ``min_size`` of them
        (:data:`FREEZE` by default)."""
        if len(self.recent) < (FREEZE if min_size is None else min_size):
            return
        pids = list(self.recent)
        t = np.fromiter(self.recent.values(), float, len(pids))
        self.recent = {}
        self._push(_Generation(hashes(pids), t))

    def add_frozen(self, h: np.ndarray, t: np.ndarray) -> None:
        """Restore a generation written by :meth:`frozen` (a snapshot's)."""
        if len(h):
            self._push(_Generation(h.astype(np.uint64, copy=True), t.astype(float, copy=True)))

    def frozen(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Live (hashes, seen times) of each generation, for a snapshot."""
        for g in self._generations:
            live = g.t != DEAD
            yield g.h[live], g.t[live]

    @property
    def generations(self) -> int:
        return len(self._generations)

    def nbytes(self) -> int:
        """Bytes the generations' arrays hold (the dict's ids are not counted)."""
        return sum(g.h.nbytes + g.t.nbytes for g in self._generations)

    def _push(self, new: _Generation) -> None:
        gens = self._generations
        gens.append(new)
        while len(gens) > 1 and len(gens[-2].h) <= 2 * len(gens[-1].h):
            b, a = gens.pop(), gens.pop()
            gens.append(_merged(a, b))


def _compact(g: _Generation) -> _Generation:
    live = g.t != DEAD
    return _Generation(g.h[live], g.t[live], ordered=True)


def _merged(a: _Generation, b: _Generation) -> _Generation:
    """One generation of the live entries of both."""
    a_live, b_live = a.t != DEAD, b.t != DEAD
    return _Generation(np.concatenate([a.h[a_live], b.h[b_live]]),
                       np.concatenate([a.t[a_live], b.t[b_live]]))
