"""The monitor-input format: its elements, a model's partition, the order they land in.

The join writes every monitor-input element (its scored pairs, expirations and
predictions) and the monitor reads them (:mod:`driftline.agents.monitor.agent`); this
module builds them from what the join has (its predictions, the ``scored`` and
``expired`` arrays it wrote, those read back after a crash) and knows the monitor's
partitioning. The bytes of an element are :mod:`driftline.models.wire.internal`'s.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from driftline.agents.outbox import Outbox, SendFn
from driftline.kafka import partition_for
from driftline.models.wire import Prediction, ScoredPair, array, arrays, encode, unbatch
from driftline.models.wire.codec import ARRAY_BYTES
from driftline.models.wire.internal import (
    COLUMNAR_MIN,
    PREDICTIONS,
    columnar_element,
    element,
    element_of_array,
)

# A source message's predictions (for one monitor partition): its offset, its size in
# bytes, its predictions.
Predicted = tuple[int, int, list[Prediction]]


class Written(NamedTuple):
    """A ``scored`` or ``expired`` array the join queued: what its element is made of."""

    kind: str                        # SCORED or EXPIRED
    partition: int                   # of the join's input, and of the array's topic
    model: str                       # the one model of its events
    value: bytes                     # the JSON array, as written
    outbox_index: int                # on the batch's Outbox: its offset, once flushed
    pairs: list[ScoredPair] | None   # a scored array's pairs, for columns


async def send_in_order(send: SendFn, target: str, parts: dict[int, list[bytes]],
                        alongside: Outbox | None = None) -> None:
    """Elements to their monitor-input partitions as chunked JSON arrays, in order, and
    the records of ``alongside`` with the first chunks (one round trip fewer).

    The monitor drops what is not newer than the last position it applied from a
    source, so a partition's chunks must land in order: a retried first chunk landing
    after the second would be lost. Chunk k+1 waits for chunk k's ack."""
    rounds: list[Outbox] = [alongside] if alongside is not None else []
    for q, elements in parts.items():
        for k, run in enumerate(arrays(elements)):
            if k == len(rounds):
                rounds.append(Outbox())
            rounds[k].add(target, None, array(run), q)
    for out in rounds:
        await out.flush(send)


def elements_of(kind: str, partition: int, offset: int, value: bytes, model: str | None,
                home: Callable[[str], int]) -> dict[int, bytes]:
    """The monitor-input elements of one ``scored`` or ``expired`` message, by partition.

    A message of one model (``model``: its header) becomes one element around its bytes
    as they are, not decoded; anything else (a message without the header) is decoded
    and split by model. Raises ``ValueError`` on a message that is not JSON events.

    >>> home = {"a": 0, "b": 1}.__getitem__
    >>> elements_of("s", 2, 7, b'[{"model":"a"}]', "a", home)
    {0: b'{"v":1,"k":"s","s":[2,7],"e":[{"model":"a"}]}'}
    >>> sorted(elements_of("x", 2, 8, b'[{"model":"a"},{"model":"b"}]', None, home))
    [0, 1]
    """
    if model is not None and value[:1] == b"[":
        return {home(model): element_of_array(kind, partition, offset, value)}
    by_home: dict[int, list[bytes]] = defaultdict(list)
    for ev in unbatch(value):
        by_home[home(ev["model"])].append(encode(ev))
    return {q: element(kind, partition, offset, events) for q, events in by_home.items()}


def predictions_by_partition(predicted: dict[tuple[int, int], list[Predicted]]
                             ) -> dict[int, list[bytes]]:
    """A batch's predictions as monitor-input elements, by monitor partition (``predicted``:
    each source message's, by source partition and monitor partition, in order)."""
    elements: dict[int, list[bytes]] = defaultdict(list)
    for (source, q), messages in predicted.items():
        elements[q].extend(predictions_elements(source, messages))
    return elements


def predictions_elements(partition: int, messages: list[Predicted]) -> list[bytes]:
    """The monitor-input elements of one source partition's predictions for one monitor
    partition, in order; ``messages`` are (offset, size of the message, its predictions).

    Consecutive small messages of one model (single-event messages, mostly) share one
    element of columns with each event's offset (format 3), up to the bytes of one
    array of messages: an element each cost the join an encode and the monitor a decode
    and a dict per event. A message of many events keeps its own element, as do runs
    whose events name different features or are too few for columns."""
    out: list[bytes] = []
    run: list[tuple[int, list[Prediction]]] = []
    size = 0

    def flush() -> None:
        if len(run) > 1:
            events = [ev for _, evs in run for ev in evs]
            columns = columnar_element(PREDICTIONS, partition, run[-1][0], events[0].model,
                                       events, [o for o, evs in run for _ in evs])
            if columns is not None:
                out.append(columns)
                return
        out.extend(_message_element(partition, offset, events) for offset, events in run)

    for offset, nbytes, events in messages:
        model = events[0].model
        if len(events) >= COLUMNAR_MIN or any(ev.model != model for ev in events):
            flush()
            run, size = [], 0
            out.append(_message_element(partition, offset, events))
            continue
        if run and (run[0][1][0].model != model or size + nbytes > ARRAY_BYTES):
            flush()
            run, size = [], 0
        run.append((offset, events))
        size += nbytes
    flush()
    return out


def _message_element(partition: int, offset: int, events: list[Prediction]) -> bytes:
    """The monitor-input element of one source message's predictions for one partition:
    columns when they are of one model and name the same features, else the events."""
    model = events[0].model
    columns = (columnar_element(PREDICTIONS, partition, offset, model, events)
               if all(ev.model == model for ev in events) else None)
    return columns or element(PREDICTIONS, partition, offset, [encode(ev) for ev in events])


def written_elements(written: Iterable[Written], offsets: list[int],
                     home: Callable[[str], int],
                     into: dict[int, list[bytes]] | None = None) -> dict[int, list[bytes]]:
    """The elements of the arrays a batch wrote (``offsets``: of its Outbox's records),
    after those in ``into``, by monitor partition: in offset order per source partition
    (a retried array can land after a later one); pairs as columns (format 2) where they
    fit, expirations (few) as the array written."""
    elements = defaultdict(list, into or {})
    for w in sorted(written, key=lambda w: (w.kind, w.partition, offsets[w.outbox_index])):
        offset = offsets[w.outbox_index]
        columns = None if w.pairs is None else columnar_element(
            w.kind, w.partition, offset, w.model, w.pairs)
        elements[home(w.model)].append(
            columns or element_of_array(w.kind, w.partition, offset, w.value))
    return elements


def header(msg: Any, name: str) -> str | None:
    """The value of header ``name`` of a Kafka record (Faust's or aiokafka's), if any."""
    for key, value in getattr(msg, "headers", None) or ():
        if key == name:
            return bytes(value).decode()
    return None


class ModelPartitions:
    """A model's ``monitor-input`` partition, hashed once per model name."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._known: dict[str, int] = {}

    def __call__(self, model: str) -> int:
        q = self._known.get(model)
        if q is None:
            if len(self._known) > 100_000:  # model names come from input: stay bounded
                self._known.clear()
            q = self._known[model] = partition_for(model.encode(), self.partitions)
        return q
