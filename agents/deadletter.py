"""Dead letters counted by kind; the record itself is built by
:mod:`driftline.models.wire.deadletter`."""

from __future__ import annotations

from collections import Counter

from driftline.models.wire.codec import Rejection


class DeadLetterCounter(Counter[str]):
    """Refused inputs by error kind (``counter["invalid_json"]``)."""

    def count(self, rejection: Rejection) -> None:
        self[rejection.kind] += 1
