"""Dead letters and internal errors counted; the record itself is built by
:mod:`driftline.models.wire.deadletter`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from driftline.models.wire.codec import Rejection


class DeadLetterCounter(Counter[str]):
    """Refused inputs by error kind (``counter["invalid_json"]``)."""

    def count(self, rejection: Rejection) -> None:
        self[rejection.kind] += 1


@dataclass
class Troubles:
    """What went wrong inside this process's agents, for ``/metrics``: one per process,
    as prometheus_client keeps its default registry (an agent is one per process).

    Keys are agent or timer names (``driftline.join``, ``driftline.join.expiry``)."""

    failures: Counter[str] = field(default_factory=Counter)  # handler calls that raised
    io_retries: Counter[str] = field(default_factory=Counter)  # ... and waited on I/O
    internal_errors: Counter[str] = field(default_factory=Counter)  # records dead-lettered
    unsent: Counter[str] = field(default_factory=Counter)  # dead letters Kafka refused


TROUBLES = Troubles()
