"""The one hysteresis every alert rule shares: runs of breaches and runs of clears.

A rule fires after ``needed`` breaches in a row and resolves after ``needed`` clears
in a row; a value that is neither (between the fire and the resolve limits) ends both
runs. One scalar path for rules checked now and then (PSI, label starvation) and one
vectorised path for rules checked on every scored pair (the metric threshold), over
the same counters, so a batch's boundaries change nothing.

>>> h = Hysteresis(needed=2)
>>> h.update(breach=True, clear=False).breached
False
>>> h.update(breach=True, clear=False).breached, h.breaches
(True, 2)
>>> h.update(breach=False, clear=False).breaches      # in between: both runs end
0
>>> h.update_many(np.array([True, True, True, False, True]), np.zeros(5, bool)).breached_at
[1]
>>> h.breaches                                        # the open run carries over
1
>>> h.update_many(np.array([True]), np.array([False])).breached_at
[0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Hysteresis:
    """Counts of breaches and of clears in a row, with the positions where a run of
    either reaches ``needed`` in the last :meth:`update_many`."""

    def __init__(self, needed: int) -> None:
        if needed < 1:
            raise ValueError(f"needed must be at least 1, got {needed}")
        self.needed = needed
        self.breaches = 0   # breaches in a row, up to now
        self.clears = 0     # clears in a row, up to now
        self.breached_at: list[int] = []
        self.cleared_at: list[int] = []

    @property
    def breached(self) -> bool:
        """``needed`` or more breaches in a row, the last one now."""
        return self.breaches >= self.needed

    @property
    def cleared(self) -> bool:
        """``needed`` or more clears in a row, the last one now."""
        return self.clears >= self.needed

    def update(self, breach: bool, clear: bool) -> Hysteresis:
        """One value: a breach, a clear, or neither (never both)."""
        self.breaches = self.breaches + 1 if breach else 0
        self.clears = self.clears + 1 if clear else 0
        return self

    def restart_clears(self) -> Hysteresis:
        """Forget the clears so far: the next resolve needs ``needed`` new ones."""
        self.clears = 0
        return self

    def update_many(self, breach: np.ndarray, clear: np.ndarray,
                    restart_clears: Sequence[int] = ()) -> Hysteresis:
        """Values in order, as two boolean arrays; ``restart_clears`` are positions before
        which the clears so far are forgotten. Sets :attr:`breached_at` and
        :attr:`cleared_at`: where a run *reaches* ``needed`` (once per run)."""
        self.breached_at, self.breaches = _run_ends(breach, self.breaches, self.needed, ())
        self.cleared_at, self.clears = _run_ends(clear, self.clears, self.needed,
                                                 restart_clears)
        return self


def _run_ends(flags: np.ndarray, carried: int, needed: int,
              resets: Sequence[int]) -> tuple[list[int], int]:
    """Positions where a run of True reaches ``needed`` (the run may have started
    ``carried`` items before ``flags``; a reset position starts a run afresh), and the
    length of the run still open at the end. Vectorised over runs, not items."""
    if not len(flags):
        return [], carried
    if not flags.any():  # the common case for breaches: every run ends here
        return [], 0
    if not resets and flags.all():  # ... and for clears: one run goes on
        end = carried + len(flags)
        return ([needed - carried - 1] if carried < needed <= end else []), end
    cuts = set((np.flatnonzero(flags[1:] != flags[:-1]) + 1).tolist()) | set(resets)
    bounds = sorted(cuts | {0, len(flags)})
    hits = []
    for s, e in zip(bounds, bounds[1:]):
        if s in resets:
            carried = 0
        if not flags[s]:
            carried = 0
            continue
        if carried < needed <= carried + (e - s):
            hits.append(s + needed - carried - 1)
        carried += e - s
    return hits, carried
