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

from typing import Any

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
        groups: dict[str, list[dict[str, Any]]] = {}
        for ev in events:
            segment = ev.get("segment")
            if segment is not None:
                groups.setdefault(self.name(segment), []).append(ev)
        return groups
