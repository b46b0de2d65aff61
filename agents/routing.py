"""Where monitor-input elements go: a model's partition, and the order they land in.

The join writes every monitor-input element (its scored pairs, expirations and
predictions); this is the part of it that knows the monitor's partitioning.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from driftline.agents.outbox import Outbox, SendFn
from driftline.kafka import partition_for
from driftline.models.wire import array, arrays, encode, unbatch
from driftline.models.wire.internal import element, element_of_array


async def send_in_order(send: SendFn, target: str, parts: dict[int, list[bytes]]) -> None:
    """Elements to their monitor-input partitions as chunked JSON arrays, in order.

    The monitor drops what is not newer than the last position it applied from a
    source, so a partition's chunks must land in order: a retried first chunk landing
    after the second would be lost. Chunk k+1 waits for chunk k's ack."""
    rounds: list[Outbox] = []
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
