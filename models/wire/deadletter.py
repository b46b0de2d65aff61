"""Dead-letter records: every refused input, with where it came from and why.

Value on ``driftline.deadletter`` (DESIGN.md): ``{"topic", "partition", "offset",
"error", "raw"}``, keyed by the original key. ``error`` starts with a stable kind
(``invalid_json``, ``missing_field``, ``wrong_type``, ``not_finite``, ``oversized``,
``bad_model``, ``internal_error``, ...) so it can be grepped and counted. A refused
element of a batch also carries its ``index``, and ``raw`` is that element alone. This is
the one place that builds them, and that tallies them (:class:`DeadLetterCounter`).

A dead letter always fits (issue 29): the error text is cut at
:data:`MAX_ERROR_CHARS` (an unknown field name of 1 MB is repeated in msgspec's reason),
``raw`` is cut to keep the value within ``limit``, and the key at
:data:`MAX_KEY_BYTES`, so key and value together stay under the producer's request size
(``DRIFTLINE_MAX_MESSAGE_BYTES`` + 64 KiB).

>>> from driftline.models.wire.codec import Rejection
>>> dead_letter_value("labels", 2, 41, Rejection("invalid_json", "bad: x", b"{oops"))
b'{"topic":"labels","partition":2,"offset":41,"error":"invalid_json: bad: x","raw":"{oops"}'
>>> len(dead_letter_value("t", 0, 1, Rejection("oversized", "big", b"x" * 5000), limit=2000)) < 2000
True
>>> import orjson
>>> long = Rejection("unknown_field", "y" * 10_000, b"{}")
>>> orjson.loads(dead_letter_value("t", 0, 1, long))["error"][-24:]
'... (cut: 10015 chars)'
"""

from __future__ import annotations

from collections import Counter

from driftline.models.wire.codec import Rejection, encode
from driftline.models.wire.events import DeadLetter

MAX_ERROR_CHARS = 2_000
MAX_KEY_BYTES = 4_096


def dead_letter(topic: str, partition: int | None, offset: int | None,
                rejection: Rejection) -> DeadLetter:
    error = f"{rejection.kind}: {rejection.error}"
    if len(error) > MAX_ERROR_CHARS:
        error = f"{error[:MAX_ERROR_CHARS]}... (cut: {len(error)} chars)"
    record = DeadLetter(topic, partition, offset, error,
                        # Undecodable bytes become U+FFFD; the error already says the input
                        # was not UTF-8.
                        rejection.raw.decode("utf-8", errors="replace"))
    if rejection.index is not None:
        record.index = rejection.index
    return record


def dead_letter_value(topic: str, partition: int | None, offset: int | None,
                      rejection: Rejection, *, limit: int | None = None) -> bytes:
    """The encoded record; past ``limit`` bytes its ``raw`` is cut (to an eighth of the
    limit, less if the rest needs it) so the record stays deliverable, and
    ``raw_truncated`` / ``raw_bytes`` say so."""
    value = encode(dead_letter(topic, partition, offset, rejection))
    if limit is None or len(value) <= limit:
        return value
    record = dead_letter(topic, partition, offset, Rejection(rejection.kind, rejection.error,
                                                             b"", rejection.index))
    room = max(0, min(limit // 8, limit - len(encode(record)) - 64))
    # JSON escapes can grow a byte six-fold (\u0000): cut until it fits.
    while True:
        record.raw = rejection.raw[:room].decode("utf-8", errors="replace")
        record.raw_truncated, record.raw_bytes = True, len(rejection.raw)
        value = encode(record)
        if len(value) <= limit or room == 0:
            return value
        room //= 2


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The original key, cut at :data:`MAX_KEY_BYTES` (a valid one is far shorter)."""
    return key if key is None or len(key) <= MAX_KEY_BYTES else key[:MAX_KEY_BYTES]


class DeadLetterCounter(Counter[str]):
    """Refused inputs by error kind (``counter["invalid_json"]``).

    >>> dead = DeadLetterCounter()
    >>> dead.count(Rejection("invalid_json", "bad", b"{")); dead
    DeadLetterCounter({'invalid_json': 1})
    """

    def count(self, rejection: Rejection) -> None:
        self[rejection.kind] += 1
