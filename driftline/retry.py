"""The one retry policy for Kafka writes: what is worth sending again, and how long to wait.

Both writers use it: the agents' :class:`~driftline.agents.outbox.Outbox` (which retries
until its batch's output is durable) and the :class:`~driftline.publisher.Publisher`
(which retries within ``delivery_timeout``). Sending a record twice is harmless for
driftline's topics: the join makes one pair per ``prediction_id``, the monitor drops a
re-forwarded element by its source offset, alerts and requests are deduplicated by id.

>>> from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
>>> retriable(KafkaTimeoutError()), retriable(MessageSizeTooLargeError())
(True, False)
>>> b = Backoff(initial=0.1, maximum=0.5)
>>> [b.next() for _ in range(5)]
[0.1, 0.2, 0.4, 0.5, 0.5]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka.errors import KafkaError, KafkaTimeoutError, UnknownError


def retriable(exc: BaseException, *, unknown_server_error: bool = False) -> bool:
    """Whether sending the same records again later can succeed.

    Beyond what aiokafka marks retriable: a batch that expired waiting for an unreachable
    broker (``KafkaTimeoutError``, the typical outage), and a timeout or a socket error of
    our own. Anything else (a record too large, no authorisation) cannot get better by
    waiting.

    ``unknown_server_error``: also ``UNKNOWN_SERVER_ERROR``, which Tansu answers to a
    produce request retried into a topic it lost in a restart (Kafka says
    ``UNKNOWN_TOPIC_OR_PARTITION``, retriable). On Apache Kafka it is the broker's
    catch-all for an unexpected failure, so only a writer whose retries are bounded (the
    Publisher's ``delivery_timeout``) takes it; the Outbox, which retries forever, raises.

    >>> retriable(UnknownError()), retriable(UnknownError(), unknown_server_error=True)
    (False, True)
    """
    if isinstance(exc, (KafkaTimeoutError, TimeoutError, OSError)):
        return True
    if isinstance(exc, UnknownError):
        return unknown_server_error
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


@dataclass
class Backoff:
    """Exponential backoff: ``initial``, doubling, capped at ``maximum`` seconds."""

    initial: float = 0.1
    maximum: float = 5.0
    _next: float = field(default=0.0, repr=False)

    def next(self) -> float:
        """The delay to wait now; the following one doubles."""
        delay = self._next or self.initial
        self._next = min(delay * 2, self.maximum)
        return delay
