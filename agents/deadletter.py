"""Dead-letter records: every refused input, with where it came from and why.

Value on ``driftline.deadletter`` (DESIGN.md): ``{"topic", "partition", "offset",
"error", "raw"}``, keyed by the original key. ``error`` starts with a stable kind
(``invalid_json``, ``missing_field``, ``wrong_type``, ``not_finite``, ``oversized``,
``bad_model``, ...) so it can be grepped and counted. A refused element of a batch
also carries its ``index``, and ``raw`` is that element alone.

>>> from driftline.models.wire import Rejection
>>> dead_letter_value("driftline.labels", 2, 41, Rejection("invalid_json", "invalid JSON: x", b"{oops"))
b'{"topic":"driftline.labels","partition":2,"offset":41,"error":"invalid_json: invalid JSON: x","raw":"{oops"}'
"""

from __future__ import annotations

from collections import Counter

import orjson

from driftline.models.wire import Rejection


def dead_letter_value(topic: str, partition: int, offset: int, rejection: Rejection) -> bytes:
    record: dict = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "error": f"{rejection.kind}: {rejection.error}",
        # Undecodable bytes become U+FFFD; the error already says the input was not UTF-8.
        "raw": rejection.raw.decode("utf-8", errors="replace"),
    }
    if rejection.index is not None:
        record["index"] = rejection.index
    return orjson.dumps(record)


class DeadLetterCounter(Counter):
    """Refused inputs by error kind (``counter["invalid_json"]``)."""

    def count(self, rejection: Rejection) -> None:
        self[rejection.kind] += 1
