"""Segments: which of a version's per-segment monitors an event goes to.

The first ``max_segments`` segment names seen (in input order, so a replay names the
same ones) get a monitor each; every later name is pooled as ``"_other"``. Events
without a segment go to none of them (the version-wide monitor sees every event).

>>> seg = Segments(max_segments=2)
>>> groups = seg.split([{"segment": "de"}, {}, {"segment": "fr"}, {"segment": "it"},
...                     {"segment": "de"}])
>>> {name: len(events) for name, events in groups.items()}
{'de': 2, 'fr': 1, '_other': 1}
>>> seg.names
['de', 'fr']
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

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

    def split(self, events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """The events of each segment (pooled past the cap), in their order."""
        segments = [ev.get("segment") for ev in events]
        seen = list(dict.fromkeys(segments))  # in order of first appearance
        if len(seen) == 1:
            return {} if seen[0] is None else {self.name(seen[0]): events}
        names = {s: self.name(s) for s in seen if s is not None}
        # Group with numpy (a stable sort of small integer codes), not an append per event.
        code = {name: k for k, name in enumerate(dict.fromkeys(names.values()))}
        codes = np.fromiter((code[names[s]] if s is not None else -1 for s in segments),
                            np.int64, len(segments))
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(code) + 1))
        groups: dict[str, list[dict[str, Any]]] = {}
        for name, k in code.items():
            idx = order[bounds[k]:bounds[k + 1]].tolist()
            groups[name] = ([events[idx[0]]] if len(idx) == 1
                            else list(operator.itemgetter(*idx)(events)))
        return groups
