"""Segments: which of a version's per-segment monitors an event goes to.

The first ``max_segments`` segment names seen (in input order, so a replay names the
same ones) get a monitor each; every later name is pooled as ``"_other"``. Events
without a segment go to none of them (the version-wide monitor sees every event).

>>> seg = Segments(max_segments=2)
>>> order, groups = seg.split(["de", None, "fr", "it", "de"])
>>> order.tolist(), groups
([0, 4, 2, 3], {'de': (0, 2), 'fr': (2, 3), '_other': (3, 4)})
>>> seg.names
['de', 'fr']
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftline.agents.monitor.estimation import Estimation

OTHER = "_other"


class Segments:
    def __init__(self, max_segments: int) -> None:
        self.max_segments = max_segments
        self.names: list[str] = []          # the segments inside the cap, in order seen
        self._known: set[str] = set()

    def name(self, segment: str) -> str:
        if segment in self._known:
            return segment
        if len(self.names) < self.max_segments:
            self.names.append(segment)
            self._known.add(segment)
            return segment
        return OTHER

    def split(self, segments: list[str | None]
              ) -> tuple[np.ndarray | None, dict[str, tuple[int, int]]]:
        """The events in segment order (a stable sort of small integer codes, so each
        segment's events keep their order; None: they are in it already) and where each
        segment's run is in that order (pooled past the cap; events without a segment are
        in none)."""
        seen = list(dict.fromkeys(segments))  # in order of first appearance
        if len(seen) == 1:
            return None, {} if seen[0] is None else {self.name(seen[0]): (0, len(segments))}
        names = {s: self.name(s) for s in seen if s is not None}
        code = {name: k for k, name in enumerate(dict.fromkeys(names.values()))}
        of: dict[str | None, int] = {s: code[name] for s, name in names.items()}
        of[None] = -1  # no segment: none of the groups
        codes = np.fromiter(map(of.__getitem__, segments), np.int64, len(segments))
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(code) + 1)).tolist()
        first = bounds[0]  # the events without a segment sort first: left out
        return order[first:], {name: (bounds[k] - first, bounds[k + 1] - first)
                               for name, k in code.items()}


def segment_predictions(version: Any, batch: Any) -> list[Any]:
    """The segments' prediction rules of ``version`` (a version-wide monitor); the
    expected squared errors of the segments whose regression estimator is fitted come
    from one pass over the batch (:class:`~.estimation.Stacked`), not one per segment."""
    ordered, parts = version._by_segment(batch)
    fitted = [(k, vm.estimated.estimation) for k, (vm, _, _) in enumerate(parts)
              if vm.estimated is not None and vm.estimated.estimation.fitted]
    expected: list[np.ndarray | None] = [None] * len(parts)
    if len(fitted) > 1 and version.task == "regression":
        found = version._stacked.expected(
            [e for _, e in fitted if isinstance(e, Estimation)], ordered.rows,
            ordered.prediction,
            [parts[k][1:] for k, _ in fitted])
        for (k, _), values in zip(fitted, found):
            expected[k] = values
    out: list[Any] = []
    for (vm, start, end), given in zip(parts, expected):
        out.extend(vm.predictions(ordered.slice(start, end), given))
    return out
