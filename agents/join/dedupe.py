"""The ids a join partition has scored, remembered for the dedupe window in ~16 bytes each.

A later copy of a prediction or label whose id was scored within the dedupe window
(default 24 h) is a duplicate. At tens of thousands of predictions a second that is
hundreds of millions of ids, so a dict of id strings (about 130 bytes an id) will not do.

:class:`DoneIds` keeps the newest ids exactly, in a dict of id -> seen time, and freezes
them in batches of :data:`FREEZE` into *generations*: the ids' 64-bit hashes
(MurmurHash64A, :mod:`driftline.keyhash`, hashed a batch at a time with the partitions),
sorted, in a numpy array, with the time each was scored beside it: 16 bytes an id.
Generations merge as they grow, the way a log-structured merge tree's levels do, so a
lookup searches O(log n) sorted arrays. A merge is a merge of sorted arrays done in
bounded steps (:mod:`.generations`), one each time the join drains, its sources searched
until it ends. An id removed from a generation (forgotten at the end of its window, or
restored to a waiting state) is marked dead in place, and dead entries are dropped when a
generation is merged or, half dead, compacted (a merge of one).

A frozen id is known by its hash only: a new id whose 64-bit hash equals one of the n
remembered ones is taken for a duplicate, with probability n / 2**64 (5.4e-12 with 100
million ids remembered). Ids in the dict are compared exactly.

Snapshots written before format 3 hold blake2b hashes: restored, they are *legacy*
generations, searched by their own hash until their ids age out of the window, never
merged, and written back as they are (``k`` of :class:`~driftline.models.wire.joinstate.Chunk`).

>>> done = DoneIds()
>>> done.add("a", 1.0); done.add("b", 2.0)
>>> done.freeze(min_size=1)          # the join freezes on drain, FREEZE ids at a time
>>> "a" in done, "c" in done, len(done), done.seen("b")
(True, False, 2, 2.0)
>>> done.frozen_many(["c", "b"])
[False, True]
>>> done.discard_many(["a"]); done.expire(cutoff=5.0), len(done)
(([], 1), 0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from hashlib import blake2b
from typing import Any

import numpy as np

from driftline.agents.join.generations import (
    DEAD,
    EXPIRE_STEP,
    MERGE_STEP,
    Generation,
    Merge,
    expire_budget,
)
from driftline.keyhash import id_hash, key_hashes

FREEZE = 16_384  # ids the dict holds before they are frozen into a generation


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


def hashes(pids: list[str]) -> np.ndarray:
    """The 64-bit hash each id is known by once frozen (:func:`driftline.keyhash.id_hash`),
    stable across processes and restarts."""
    return key_hashes([pid.encode() for pid in pids], None)[1]


def legacy_hashes(pids: list[str]) -> np.ndarray:
    """The blake2b hashes of snapshots before format 3 (:class:`DoneIds`' legacy
    generations): the digests read as one little-endian buffer."""
    digests = b"".join([blake2b(pid.encode(), digest_size=8).digest() for pid in pids])
    return np.frombuffer(digests, "<u8").astype(np.uint64)


class DoneIds:
    """Scored ids of one join partition and when each was scored; see the module docstring."""

    def __init__(self) -> None:
        self.recent: dict[str, float] = {}  # newest ids, in arrival order
        self._generations: list[Generation] = []  # sizes decreasing
        self._merges: list[Merge] = []  # in progress, on disjoint generations
        self._legacy: list[Generation] = []  # blake2b hashes (restored, see the docstring)

    def __len__(self) -> int:
        return len(self.recent) + sum(g.live for g in self._generations + self._legacy)

    def __contains__(self, pid: str) -> bool:
        return self.seen(pid) is not None

    def seen(self, pid: str) -> float | None:
        """When ``pid`` was scored, or None if it is not remembered."""
        t = self.recent.get(pid)
        if t is not None:
            return t
        where = self._frozen_at(pid)
        return None if where is None else float(where[0].t[where[1]])

    def frozen_many(self, pids: list[str], h: np.ndarray | None = None) -> list[bool] | None:
        """For each id, whether a generation holds it, with one search of each generation
        for all of them (``h``: their :func:`hashes`, when the caller has them already);
        None when there are no generations (nothing to hash)."""
        if not self._generations and not self._legacy:
            return None
        found = np.zeros(len(pids), bool)
        if self._generations:
            h = hashes(pids) if h is None else h
            for g in self._generations:
                found |= g.find(h)[0]
        if self._legacy:
            old = legacy_hashes(pids)
            for g in self._legacy:
                found |= g.find(old)[0]
        return found.tolist()

    def add(self, pid: str, seen: float) -> None:
        """Remember ``pid`` (not already remembered: the join checks first)."""
        self.recent[pid] = seen

    def discard_many(self, pids: list[str]) -> None:
        """Forget each id, wherever it is remembered, the frozen ones hashed and searched
        at once (a restore applies a delta's records this way)."""
        rest = [pid for pid in pids if self.recent.pop(pid, None) is None]
        if not rest:
            return
        for gens, hash_ in ((self._generations, hashes), (self._legacy, legacy_hashes)):
            if not gens:
                continue
            key = hash_(rest)
            for g in gens:
                found, at = g.find(key)
                for i in at[found].tolist():
                    for m in self._merges:
                        if g.busy and (g is m.a or g is m.b):
                            m.kill(g, i)
                    g.kill(np.array([i]))

    def _frozen_at(self, pid: str) -> tuple[Generation, int] | None:
        """The generation holding ``pid`` live, and its index there."""
        for gens, h in ((self._generations, id_hash), (self._legacy, None)):
            if not gens:
                continue
            key = (np.array([h(pid.encode())], np.uint64) if h is not None
                   else legacy_hashes([pid]))
            for g in gens:
                found, at = g.find(key)
                if found[0]:
                    return g, int(at[0])
        return None

    def expire(self, cutoff: float) -> tuple[list[str], int]:
        """Forget the ids scored at or before ``cutoff``: the ids forgotten from the dict
        (known by name, so the join can write their tombstones) and how many more were
        forgotten from the generations. A generation larger than
        :data:`.generations.EXPIRE_STEP` forgets its share over several calls (32 at
        most), each reading a bounded slice (:meth:`.Generation.expire`): an id may be
        remembered a little longer than the window, never less."""
        old = older_than(self.recent, cutoff, key=lambda t: t)
        for pid in old:
            del self.recent[pid]
        frozen = 0
        for g in self._generations + self._legacy:
            if g.oldest <= cutoff:
                frozen += g.expire(cutoff, expire_budget(len(g.t), EXPIRE_STEP))
        self._legacy = [g for g in self._legacy if g.live]
        for m in self._merges:
            m.expire(cutoff, expire_budget(m.filled, EXPIRE_STEP))
        # A merge's sources stay as they are until it ends; of the others, the empty go
        # and the half dead are compacted.
        self._generations = [g for g in self._generations if g.live or g.busy]
        for g in self._generations:
            if not g.busy and g.live * 2 < len(g.h):
                self._merges.append(Merge(g))
        return old, frozen

    def freeze(self, min_size: int | None = None) -> None:
        """Move the dict's ids into a generation once it holds ``min_size`` of them
        (:data:`FREEZE` by default), then take a :meth:`merge_step`."""
        if len(self.recent) >= (FREEZE if min_size is None else min_size):
            pids = list(self.recent)
            t = np.fromiter(self.recent.values(), float, len(pids))
            self.recent = {}
            self._push(Generation(hashes(pids), t))
        self.merge_step()

    def add_frozen(self, h: np.ndarray, t: np.ndarray, legacy: bool = False) -> None:
        """Restore a generation written by :meth:`frozen` (a snapshot's; ``legacy``: of
        blake2b hashes), then take a :meth:`merge_step`."""
        if len(h):
            g = Generation(h.astype(np.uint64, copy=True), t.astype(float, copy=True))
            if legacy:
                self._legacy.append(g)
            else:
                self._push(g)
        self.merge_step()

    def frozen(self) -> Iterator[tuple[np.ndarray, np.ndarray, bool]]:
        """Live (hashes, seen times, legacy?) of each generation, for a snapshot (a
        merge's sources, not its partial copy: each id once)."""
        for gens, legacy in ((self._generations, False), (self._legacy, True)):
            for g in gens:
                live = g.t != DEAD
                yield g.h[live], g.t[live], legacy

    @property
    def generations(self) -> int:
        return len(self._generations) + len(self._legacy)

    @property
    def merging(self) -> int:
        """Source entries the merges in progress have still to read."""
        return sum(m.remaining for m in self._merges)

    def nbytes(self) -> int:
        """Bytes the generations' arrays hold, and the merges' copies (the dict's ids
        are not counted)."""
        return sum(g.h.nbytes + g.t.nbytes for g in self._generations + self._legacy) + \
            sum(m.h.nbytes + m.t.nbytes for m in self._merges)

    def merge_step(self, budget: int | None = None) -> int:
        """Advance the merges in progress, the smallest first, by ``budget`` source
        entries in all (:data:`.generations.MERGE_STEP` by default); a merge that ends
        replaces its sources in one assignment. How many entries were read."""
        budget = MERGE_STEP if budget is None else budget
        spent = 0
        for m in sorted(self._merges, key=lambda m: m.remaining):
            if spent >= budget:
                break
            spent += m.step(budget - spent)
            if m.done:
                self._finish(m)
        return spent

    def settle(self) -> None:
        """Run every merge to its end (tests, benchmarks: not on the event loop)."""
        while self._merges:
            self.merge_step(budget=1 << 62)

    def _push(self, new: Generation) -> None:
        self._generations.append(new)
        self._schedule()

    def _finish(self, m: Merge) -> None:
        self._merges.remove(m)
        gens = self._generations
        at = next(i for i, g in enumerate(gens) if g is m.a)
        merged = m.result()
        gens[at:at + (2 if any(g is m.b for g in gens) else 1)] = [merged] if merged.live else []
        self._schedule()

    def _schedule(self) -> None:
        """Start merging each two neighbours, from the newest, where the older holds at
        most twice the newer's entries (so sizes keep decreasing and there are O(log n))."""
        gens = self._generations
        i = len(gens) - 1
        while i > 0:
            a, b = gens[i - 1], gens[i]
            if not a.busy and not b.busy and len(a.h) <= 2 * len(b.h):
                self._merges.append(Merge(a, b))
                i -= 2
            else:
                i -= 1
