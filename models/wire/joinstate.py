"""The join-state topic's records (``driftline.join-state``, compacted), written and read
only here; versions and :class:`~driftline.models.wire.internal.FormatError` as for every
internal record (:mod:`driftline.models.wire.internal`).

Keys ``d:<seq>`` (a delta: ``{"v": 1, "r": [[prediction_id, record | null], ...], "c":
checkpoint?}``), ``s:<seq>:<k>`` (chunk k of the snapshot as of delta seq: ``{"v": 3, "r":
[[prediction_id, record], ...]}``, or frozen done ids ``{"v": 3, "r": [], "h": hashes,
"t": seen, "k": "murmur64a"}``, both base64 of little-endian arrays, uint64 and float64,
``k`` the hash (:mod:`driftline.keyhash`; format 2 had blake2b hashes and no ``k``, format
1 no frozen ids, a bare array before versions) and ``h`` (the head:
``{"v": 1, "seq", "chunks", "c"}``). A record is ``{"s": "p" |
"l" | "d", "t": seen, "e": event?}``: a waiting prediction or label (with the event)
or a done id.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import numpy as np

from driftline.models.wire.codec import LABEL, PREDICTION, encode
from driftline.models.wire.events import Label, Prediction
from driftline.models.wire.internal import CHUNK_FORMAT, FORMAT, check_format

DELTA, SNAPSHOT, HEAD = b"d:", b"s:", b"h"
PENDING_PREDICTION, PENDING_LABEL, DONE = "p", "l", "d"


class StateRecord(msgspec.Struct, gc=False):
    """The state of one prediction id; ``e``, the waiting event, is decoded (and validated)
    by :meth:`event`."""

    s: Literal["p", "l", "d"]
    t: float
    e: msgspec.Raw = msgspec.Raw()  # empty for a done id

    def event(self) -> Prediction | Label:
        if not self.e:
            raise ValueError(f"a {self.s!r} join-state record has no event")
        return (PREDICTION if self.s == PENDING_PREDICTION else LABEL).decode_one(bytes(self.e))

    def as_tuple(self) -> tuple[str, float, Prediction | Label | None]:
        """(state, seen, waiting event or None): what the join's state holds."""
        return self.s, self.t, None if self.s == DONE else self.event()


class Delta(msgspec.Struct, gc=False):
    r: list[tuple[str, StateRecord | None]]
    c: int | None = None
    v: int = 1


class Chunk(msgspec.Struct, gc=False):
    r: list[tuple[str, StateRecord]]
    v: int = 1
    h: bytes = b""  # frozen done ids: 64-bit hashes, and when each was scored
    t: bytes = b""
    k: Literal["murmur64a", "blake2b"] = "blake2b"  # the hash (format 2: blake2b)

    @property
    def legacy(self) -> bool:
        """Whether its frozen ids are blake2b hashes (written before format 3)."""
        return self.k == "blake2b"

    def frozen(self) -> tuple[np.ndarray, np.ndarray]:
        h, t = np.frombuffer(self.h, "<u8"), np.frombuffer(self.t, "<f8")
        if len(h) != len(t):
            raise ValueError(f"a join-state chunk with {len(h)} hashes and {len(t)} times")
        return h, t


class Head(msgspec.Struct, gc=False):
    seq: int
    chunks: int
    c: int
    v: int = 1


_delta = msgspec.json.Decoder(Delta)
_chunk = msgspec.json.Decoder(Chunk)
_legacy_chunk = msgspec.json.Decoder(list[tuple[str, StateRecord]])  # before versions
_head = msgspec.json.Decoder(Head)


def state_item(pid: str, state: str, seen: float,
               event: Prediction | Label | None = None) -> list[Any]:
    """``[pid, record]`` of a delta or snapshot chunk, to encode (many in one list:
    :func:`~driftline.agents.join.arrays.filled`)."""
    record: dict[str, Any] = {"s": state, "t": seen}
    if event is not None:
        record["e"] = event
    return [pid, record]


def deleted_item(pid: str) -> list[Any]:
    return [pid, None]


def delta_value(entries: bytes, checkpoint: int | None) -> bytes:
    """A delta of ``entries`` (a JSON array of them); the last delta of a batch carries the
    checkpoint (an offset of the partition's ``scored`` topic; see the join agent)."""
    body = b'{"v":%d,"r":' % FORMAT + entries
    return body + (b"}" if checkpoint is None else b',"c":%d}' % checkpoint)


def chunk_value(entries: bytes) -> bytes:
    """Chunk k of a snapshot: ``entries`` (a JSON array of them) of the whole state."""
    return b'{"v":%d,"r":' % CHUNK_FORMAT + entries + b"}"


FROZEN_PER_CHUNK = 12_000  # 16 bytes an id, base64: a chunk stays under ARRAY_BYTES


def frozen_chunk_values(h: np.ndarray, t: np.ndarray, legacy: bool = False) -> list[bytes]:
    """Chunks of a snapshot holding frozen done ids (hashes and seen times, aligned;
    ``legacy``: blake2b hashes, restored from an older snapshot)."""
    return [encode(Chunk([], CHUNK_FORMAT, h[i:i + FROZEN_PER_CHUNK].astype("<u8").tobytes(),
                         t[i:i + FROZEN_PER_CHUNK].astype("<f8").tobytes(),
                         "blake2b" if legacy else "murmur64a"))
            for i in range(0, len(h), FROZEN_PER_CHUNK)]


def delta_key(seq: int) -> bytes:
    return DELTA + b"%d" % seq


def snapshot_key(seq: int, chunk: int) -> bytes:
    return SNAPSHOT + b"%d:%d" % (seq, chunk)


def head_value(seq: int, chunks: int, checkpoint: int) -> bytes:
    return encode(Head(seq, chunks, checkpoint, FORMAT))


def decode_delta(value: bytes) -> Delta:
    delta = _delta.decode(value)
    check_format("join-state delta", delta.v)
    return delta


def decode_chunk(value: bytes) -> Chunk:
    if value[:1] == b"[":
        return Chunk(_legacy_chunk.decode(value))
    chunk = _chunk.decode(value)
    check_format("join-state snapshot chunk", chunk.v, CHUNK_FORMAT)
    return chunk


def decode_head(value: bytes) -> Head:
    head = _head.decode(value)
    check_format("join-state head", head.v)
    return head


def parse_snapshot_key(key: bytes) -> tuple[int, int]:
    seq, chunk = key[len(SNAPSHOT):].split(b":")
    return int(seq), int(chunk)


def parse_delta_key(key: bytes) -> int:
    return int(key[len(DELTA):])
