"""driftline's own topics: their byte formats, written and read only here.

**Model header.** The join writes scored and expired pairs as arrays of one model's
events, and names the model in the ``model`` header, so the route agent forwards a
message without decoding it.

**monitor-input elements** (``driftline.monitor-input``, keyed by nothing, on the
model's partition). A message is a JSON array of elements; an element is the events of
one source message that go to one monitor partition, with where they came from::

    {"k": "s" | "p" | "x", "s": [source partition, source offset], "e": [event, ...]}

``k`` is the source: scored pairs, predictions (for data drift) or expirations.

**join-state records** (``driftline.join-state``, compacted). Keys ``d:<seq>`` (a
delta: ``{"r": [[prediction_id, record | null], ...], "c": checkpoint?}``),
``s:<seq>:<k>`` (chunk k of the snapshot as of delta seq: ``[[prediction_id, record],
...]``) and ``h`` (the head: ``{"seq", "chunks", "c"}``). A record is ``{"s": "p" |
"l" | "d", "t": seen, "e": event?}``: a waiting prediction or label (with the event)
or a done id.

>>> v = element(SCORED, 2, 41, [b'{"prediction_id":"a"}'])
>>> v
b'{"k":"s","s":[2,41],"e":[{"prediction_id":"a"}]}'
>>> [(e.k, e.s, e.e) for e in decode_elements(b"[" + v + b"]")]
[('s', (2, 41), [{'prediction_id': 'a'}])]
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from driftline.models.wire.codec import LABEL, PREDICTION, array, encode
from driftline.models.wire.events import Label, Prediction

MODEL_HEADER = "model"  # on scored/expired arrays that hold one model's events

# --- monitor-input ------------------------------------------------------------------

SCORED, PREDICTIONS, EXPIRED = "s", "p", "x"
ElementKind = Literal["s", "p", "x"]


class Element(msgspec.Struct, gc=False):
    """One monitor-input element: its source kind, (partition, offset), and events."""

    k: ElementKind
    s: tuple[int, int]
    e: list[dict[str, Any]]


_elements = msgspec.json.Decoder(list[Element])


def element(kind: str, partition: int, offset: int, events: list[bytes]) -> bytes:
    """An element of encoded events (those of one source message that go to one
    monitor-input partition, in their order)."""
    return element_of_array(kind, partition, offset, array(events))


def element_of_array(kind: str, partition: int, offset: int, events_array: bytes) -> bytes:
    """An element around a JSON array of events as it came (the route forwards the join's
    arrays without decoding them)."""
    return b'{"k":"%s","s":[%d,%d],"e":%s}' % (kind.encode(), partition, offset, events_array)


def decode_elements(value: bytes) -> list[Element]:
    """A monitor-input message; raises ``msgspec.DecodeError`` / ``ValidationError`` on
    bytes driftline did not write."""
    return _elements.decode(value)


# --- join-state ---------------------------------------------------------------------

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


class Head(msgspec.Struct, gc=False):
    seq: int
    chunks: int
    c: int


_delta = msgspec.json.Decoder(Delta)
_chunk = msgspec.json.Decoder(list[tuple[str, StateRecord]])
_head = msgspec.json.Decoder(Head)


def state_entry(pid: str, state: str, seen: float,
                event: Prediction | Label | None = None) -> bytes:
    """``[pid, record]`` of a delta or snapshot chunk."""
    record: dict[str, Any] = {"s": state, "t": seen}
    if event is not None:
        record["e"] = event
    return encode([pid, record])


def deleted_entry(pid: str) -> bytes:
    return encode([pid, None])


def delta_value(entries: list[bytes], checkpoint: int | None) -> bytes:
    """A delta of encoded entries; the last delta of a batch carries the checkpoint (the
    next offset of the partition's ``scored`` topic)."""
    body = b'{"r":' + array(entries)
    return body + (b"}" if checkpoint is None else b',"c":%d}' % checkpoint)


def delta_key(seq: int) -> bytes:
    return DELTA + b"%d" % seq


def snapshot_key(seq: int, chunk: int) -> bytes:
    return SNAPSHOT + b"%d:%d" % (seq, chunk)


def head_value(seq: int, chunks: int, checkpoint: int) -> bytes:
    return encode(Head(seq, chunks, checkpoint))


def decode_delta(value: bytes) -> Delta:
    return _delta.decode(value)


def decode_chunk(value: bytes) -> list[tuple[str, StateRecord]]:
    return _chunk.decode(value)


def decode_head(value: bytes) -> Head:
    return _head.decode(value)


def parse_snapshot_key(key: bytes) -> tuple[int, int]:
    seq, chunk = key[len(SNAPSHOT):].split(b":")
    return int(seq), int(chunk)


def parse_delta_key(key: bytes) -> int:
    return int(key[len(DELTA):])
