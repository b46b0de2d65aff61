"""The join's own JSON arrays: one model's events each on public topics, filled to size.

The join writes its scored pairs and expirations as arrays of one model's events: each
carries its model in a header (:data:`~driftline.models.wire.internal.MODEL_HEADER`),
so that one read back after a crash becomes a monitor-input element as it is, not
decoded (:func:`~driftline.agents.routing.elements_of`). Each array is one
:func:`~driftline.models.wire.encode` of a list of events (:func:`filled`, which the
``join-state`` log's records are written with too).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from driftline.models.wire import array, arrays, encode
from driftline.models.wire.codec import ARRAY_BYTES

T = TypeVar("T")

# How full the join's own arrays are made, at the size of their first event (events of one
# model are about the same size): the rest of ARRAY_BYTES is room for larger ones.
ARRAY_FILL = 0.9


def by_model(events: Iterable[tuple[str, str, Any, T]]
              ) -> Iterator[tuple[str, bytes, bytes, list[T]]]:
    """(model, key, JSON array, the array's payloads) for arrays of one model's events
    each, in event order per model, each under ``ARRAY_BYTES`` (:func:`filled`).
    ``events`` are (model, prediction_id, event to encode, payload); an array's key is its
    first event's id."""
    models: dict[str, list[tuple[str, Any, T]]] = defaultdict(list)
    for model, pid, event, payload in events:
        models[model].append((pid, event, payload))
    for model, items in models.items():
        for start, end, value in filled([event for _, event, _ in items]):
            yield model, items[start][0].encode(), value, [p for _, _, p in items[start:end]]


def filled(values: list[Any]) -> Iterator[tuple[int, int, bytes]]:
    """(start, end, JSON array of ``values[start:end]``), in order, covering them all, each
    array under ``ARRAY_BYTES`` (a value larger than that alone). An array is one encode of a
    list (0.84 against 1.20 µs a scored pair encoded one by one, the same bytes), of as many
    values as fill :data:`ARRAY_FILL` of it at the size of its first; should they be larger
    than that one, they are encoded again one by one and cut to size.

    >>> [(start, end, value) for start, end, value in filled([1, "a", None])]
    [(0, 3, b'[1,"a",null]')]
    """
    first = 0
    while first < len(values):
        n = max(1, int(ARRAY_FILL * ARRAY_BYTES) // (len(encode(values[first])) + 1))
        end = min(len(values), first + n)
        value = encode(values[first:end])
        if len(value) <= ARRAY_BYTES:
            yield first, end, value
        else:
            start = first
            for run in arrays([encode(v) for v in values[first:end]]):
                yield start, start + len(run), array(run)
                start += len(run)
        first = end
