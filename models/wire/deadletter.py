"""Dead-letter records: every refused input, with where it came from and why.

Value on ``driftline.deadletter`` (DESIGN.md): ``{"topic", "partition", "offset",
"error", "raw"}``, keyed by the original key. ``error`` starts with a stable kind
(``invalid_json``, ``missing_field``, ``wrong_type``, ``not_finite``, ``oversized``,
``bad_model``, ...) so it can be grepped and counted. A refused element of a batch
also carries its ``index``, and ``raw`` is that element alone. This is the one place
that builds them.

>>> from driftline.models.wire.codec import Rejection
>>> dead_letter_value("labels", 2, 41, Rejection("invalid_json", "bad: x", b"{oops"))
b'{"topic":"labels","partition":2,"offset":41,"error":"invalid_json: bad: x","raw":"{oops"}'
>>> len(dead_letter_value("t", 0, 1, Rejection("oversized", "big", b"x" * 5000), limit=2000)) < 2000
True
"""

from __future__ import annotations

from driftline.models.wire.codec import Rejection, encode
from driftline.models.wire.events import DeadLetter


def dead_letter(topic: str, partition: int | None, offset: int | None,
                rejection: Rejection) -> DeadLetter:
    record = DeadLetter(topic, partition, offset, f"{rejection.kind}: {rejection.error}",
                        # Undecodable bytes become U+FFFD; the error already says the input
                        # was not UTF-8.
                        rejection.raw.decode("utf-8", errors="replace"))
    if rejection.index is not None:
        record.index = rejection.index
    return record


def dead_letter_value(topic: str, partition: int | None, offset: int | None,
                      rejection: Rejection, *, limit: int | None = None) -> bytes:
    """The encoded record; past ``limit`` bytes its ``raw`` is cut (to an eighth of the
    limit) so the record stays deliverable, and ``raw_truncated`` / ``raw_bytes`` say so."""
    value = encode(dead_letter(topic, partition, offset, rejection))
    if limit is None or len(value) <= limit:
        return value
    cut = Rejection(rejection.kind, rejection.error, rejection.raw[: limit // 8],
                    rejection.index)
    record = dead_letter(topic, partition, offset, cut)
    record.raw_truncated, record.raw_bytes = True, len(rejection.raw)
    return encode(record)
