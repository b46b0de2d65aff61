"""The join-state log of one partition: where it stands, its records, its replay into a join.

The log's byte formats are :mod:`driftline.models.wire.internal`'s; this module holds
what the join does with them, without Kafka: :class:`StateLog` is where the writer
stands (its sequence numbers and the latest snapshot) and makes the records of its
deltas and snapshots, which the agent sends in the order its docstring gives;
:class:`StateLogReplay` applies records read back, in order, to a fresh
:class:`~driftline.agents.join.state.PartitionJoin`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from driftline.agents.join.arrays import filled
from driftline.agents.join.state import PartitionJoin, StateRecord
from driftline.errors import SchemaError
from driftline.models.wire.joinstate import (
    DELTA,
    HEAD,
    SNAPSHOT,
    chunk_value,
    decode_chunk,
    decode_delta,
    decode_head,
    deleted_item,
    delta_key,
    delta_value,
    frozen_chunk_values,
    head_value,
    parse_delta_key,
    parse_snapshot_key,
    snapshot_key,
    state_item,
)

log = logging.getLogger(__name__)


@dataclass
class StateLog:
    """Where a partition's ``join-state`` log stands."""

    seq: int = 0                # of the last delta written
    snapshot_seq: int = 0       # delta the latest snapshot includes (0: none yet)
    snapshot_chunks: int = 0
    since_snapshot: int = 0     # records in the deltas written since

    def deltas(self, records: dict[str, StateRecord],
               checkpoint: int) -> list[tuple[bytes, bytes]]:
        """The delta messages (key, value) of one drain's ``records``, numbered on from
        the last; the last one carries ``checkpoint``, a ``scored`` offset before which
        every pair is on monitor-input."""
        self.since_snapshot += len(records)
        runs = [run for _, _, run in filled([item(pid, r) for pid, r in records.items()])]
        messages = []
        for k, run in enumerate(runs):
            self.seq += 1
            messages.append((delta_key(self.seq),
                             delta_value(run, checkpoint if k == len(runs) - 1 else None)))
        return messages

    def snapshot(self, part: PartitionJoin) -> list[tuple[bytes, bytes]]:
        """The chunks (key, value) of a snapshot of ``part`` as of the last delta: its
        records, then its frozen done ids."""
        values = [chunk_value(run)
                  for _, _, run in filled([item(pid, r) for pid, r in part.records()])]
        for frozen in part.done.frozen():
            values.extend(frozen_chunk_values(*frozen))
        return [(snapshot_key(self.seq, k), value) for k, value in enumerate(values)]

    @staticmethod
    def head(seq: int, chunks: int, checkpoint: int) -> tuple[bytes, bytes]:
        """The head (key, value) that makes the snapshot as of delta ``seq``, of ``chunks``
        chunks, the one to restore from."""
        return HEAD, head_value(seq, chunks, checkpoint)

    def replaced(self, seq: int) -> list[bytes]:
        """The keys of the deltas and chunks a snapshot as of delta ``seq`` replaces."""
        return ([delta_key(d) for d in range(self.snapshot_seq + 1, seq + 1)]
                + [snapshot_key(self.snapshot_seq, k) for k in range(self.snapshot_chunks)])

    def snapshot_written(self, seq: int, chunks: int) -> None:
        """The snapshot as of delta ``seq``, of ``chunks`` chunks, and its head are on
        the log."""
        self.snapshot_seq, self.snapshot_chunks, self.since_snapshot = seq, chunks, 0


def item(pid: str, record: StateRecord) -> list[Any]:
    """A state record as the entry of a delta or a snapshot chunk, to encode."""
    return deleted_item(pid) if record is None else state_item(pid, *record)


class StateLogReplay:
    """Records of one partition's ``join-state`` log, applied in offset order.

    Every delta is applied, except that a head replaces the state with its snapshot,
    whose chunks were buffered as they came. On an uncompacted log (Tansu) that snapshot
    equals the state already built; on a compacted one (Kafka) the deltas before it may
    be gone, and the snapshot is what holds their effect. A tombstone only removes what a
    snapshot replaced, so it is skipped."""

    def __init__(self, new_part: Callable[[], PartitionJoin], partition: int) -> None:
        self.new_part = new_part
        self.partition = partition
        self.part = new_part()
        self.log = StateLog()
        self.checkpoint = 0  # the next offset of the partition's ``scored`` topic
        self._chunks_seq = -1
        self._chunks: dict[int, bytes] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None or key is None:
            return
        if key.startswith(DELTA):
            delta = decode_delta(value)
            self.part.restore_many([(pid, _restored(record)) for pid, record in delta.r])
            self.log.seq = parse_delta_key(key)
            self.log.since_snapshot += len(delta.r)
            if delta.c is not None:
                self.checkpoint = delta.c
        elif key.startswith(SNAPSHOT):
            seq, k = parse_snapshot_key(key)
            if seq > self._chunks_seq:
                self._chunks_seq, self._chunks = seq, {}
            if seq == self._chunks_seq:
                self._chunks[k] = value
        elif key == HEAD:
            self._restore_snapshot(value)

    def _restore_snapshot(self, value: bytes) -> None:
        head = decode_head(value)
        if head.seq != self._chunks_seq or len(self._chunks) < head.chunks:
            raise RuntimeError(
                f"join-state partition {self.partition}: the snapshot at delta {head.seq} is "
                f"incomplete ({len(self._chunks)} of {head.chunks} chunks); refusing to guess "
                f"the state")
        self.part = self.new_part()
        for k in range(head.chunks):
            chunk = decode_chunk(self._chunks[k])
            self.part.restore_many([(pid, _restored(entry)) for pid, entry in chunk.r])
            if chunk.h:
                self.part.done.add_frozen(*chunk.frozen(), legacy=chunk.legacy)
        self.log.seq = max(self.log.seq, head.seq)
        self.log.snapshot_seq, self.log.snapshot_chunks = head.seq, head.chunks
        self.log.since_snapshot = 0
        self.checkpoint = head.c
        self._chunks_seq, self._chunks = -1, {}


def _restored(record: Any) -> StateRecord:
    """A join-state record as read back, in the shape :meth:`PartitionJoin.restore` takes.

    A waiting event that no longer validates (written before its broker timestamp was
    checked) is dropped, loudly: a partition that cannot be rebuilt would stop the join."""
    if record is None:
        return None
    try:
        return record.as_tuple()  # type: ignore[no-any-return]
    except SchemaError as exc:
        log.error("join-state: a waiting %s that does not validate is dropped (%s)",
                  "prediction" if record.s == "p" else "label", exc)
        return None
