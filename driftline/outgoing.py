"""The Publisher's events not handed to Kafka yet: per partition, oldest first, and which
of them fit one message.

>>> out = Outgoing(max_batch=2, max_bytes=100)
>>> for e in (b"a", b"bb", b"ccc"): out.add(("t", 0), e)
>>> out.full(("t", 0), 1), out.take(("t", 0)), out.take(("t", 0)), bool(out)
(True, [b'a', b'bb'], [b'ccc'], False)
"""

from __future__ import annotations

from collections.abc import Iterator

Slot = tuple[str, int]  # (topic, partition)


class Outgoing:
    """Encoded events by partition, each partition's oldest first, with their size as one
    JSON array (an event and its comma)."""

    def __init__(self, max_batch: int, max_bytes: int) -> None:
        self.max_batch = max_batch  # events in one message
        self.max_bytes = max_bytes  # bytes of one message
        self._events: dict[Slot, list[bytes]] = {}
        self._bytes: dict[Slot, int] = {}

    def __bool__(self) -> bool:
        return bool(self._events)

    def __iter__(self) -> Iterator[Slot]:
        """The partitions with events waiting."""
        return iter(list(self._events))

    def add(self, slot: Slot, event: bytes) -> None:
        self._events.setdefault(slot, []).append(event)
        self._bytes[slot] = self._bytes.get(slot, 0) + len(event) + 1

    def full(self, slot: Slot, extra: int) -> bool:
        """Whether ``slot``'s waiting events make a message that an event of ``extra``
        bytes would not fit."""
        events = self._events.get(slot)
        if not events:
            return False
        return len(events) >= self.max_batch or self._bytes[slot] + extra + 1 > self.max_bytes

    def take(self, slot: Slot) -> list[bytes]:
        """The oldest events of ``slot`` that fit one message (at least one)."""
        events = self._events.get(slot)
        if not events:
            return []
        n, size = 0, 0
        while n < len(events) and n < self.max_batch and (
                n == 0 or size + len(events[n]) + 1 <= self.max_bytes):
            size += len(events[n]) + 1
            n += 1
        taken = events[:n]
        del events[:n]
        self._bytes[slot] -= size
        if not events:
            del self._events[slot], self._bytes[slot]
        return taken

    def restore(self, slot: Slot, events: list[bytes]) -> None:
        """Put events back at the head of their partition's (they are older than what is
        there)."""
        if not events:
            return
        self._events.setdefault(slot, [])[:0] = events
        self._bytes[slot] = self._bytes.get(slot, 0) + sum(len(e) + 1 for e in events)
