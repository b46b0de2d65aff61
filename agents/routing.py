"""Where monitor-input elements go: a model's partition, and the order they land in.

Both the join (predictions, for data drift) and the route agent (scored pairs and
expirations) write monitor-input, so this sits below both of them.
"""

from __future__ import annotations

from driftline.agents.outbox import Outbox, SendFn
from driftline.kafka import partition_for
from driftline.models.wire import array, arrays


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
