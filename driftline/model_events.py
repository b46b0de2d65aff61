"""Model lifecycle events to the ``models`` topic, and :class:`ModelRegistry`: the
registry of :mod:`driftline.models.registry` with that Kafka sink wired in.

The registry core sits below Kafka (it must not import aiokafka); the wiring lives
here, and aiokafka is imported only when a sink is built, so ``import driftline``
stays light for serving code that only reads models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from ._loop import LoopThread
from .models import registry as _core
from .models.wire import MODEL_EVENT, encode
from .settings import Settings

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer


class KafkaModelEvents:
    """Callable sink: validates a model event and waits until Kafka has it."""

    def __init__(self, kafka_url: str | None = None, *, topic_prefix: str | None = None,
                 timeout: float = 30.0, settings: Settings | None = None) -> None:
        settings = (settings or Settings.from_env()).replace(
            **{k: v for k, v in (("kafka_url", kafka_url), ("topic_prefix", topic_prefix))
               if v is not None})
        self.topic = settings.topic("models")
        self.timeout = timeout
        self._loop = LoopThread("driftline-model-events")
        try:
            self._producer = self._loop.run(self._start(settings), timeout)
        except BaseException:
            self._loop.close()
            raise

    @staticmethod
    async def _start(settings: Settings) -> AIOKafkaProducer:
        from aiokafka import AIOKafkaProducer

        from .kafka import client_options

        producer = AIOKafkaProducer(**client_options(settings), acks="all")  # binds this loop
        await producer.start()
        return producer

    def __call__(self, event: dict[str, Any]) -> None:
        valid = MODEL_EVENT.validate(event)
        self._loop.run(self._producer.send_and_wait(self.topic, encode(valid),
                                                    key=valid.model.encode()), self.timeout)

    def close(self) -> None:
        if not self._loop.closed:
            self._loop.run(self._producer.stop(), self.timeout)
            self._loop.close()


class ModelRegistry(_core.ModelRegistry):
    """The model registry (:class:`driftline.models.registry.ModelRegistry`), whose
    constructors can also send model events to Kafka's ``models`` topic.

    >>> reg = ModelRegistry.from_url("redis://127.0.0.1:6379/0",  # doctest: +SKIP
    ...                              kafka_url="kafka://127.0.0.1:9092")
    """

    @classmethod
    def from_url(cls, url: str, *, prefix: str = _core.DEFAULT_PREFIX,
                 kafka_url: str | None = None, topic_prefix: str | None = None,
                 on_event: _core.EventSink | None = None, **kwargs: Any) -> Self:
        """``redis://[:password@]host:port/db`` or ``rediss://`` (TLS, verified against
        ``ssl_ca_certs`` or the system's CAs); ``kafka_url`` turns on model events on the
        ``models`` topic (under ``topic_prefix``)."""
        if kafka_url and on_event is not None:
            raise TypeError("pass kafka_url or on_event, not both")
        if kafka_url:
            on_event = KafkaModelEvents(kafka_url, topic_prefix=topic_prefix)
        try:
            return super().from_url(url, prefix=prefix, on_event=on_event, **kwargs)
        except BaseException:
            _close(on_event)
            raise

    @classmethod
    def from_settings(cls, settings: Any, *, events: bool = True,
                      **kwargs: Any) -> Self:
        """The registry ``settings`` point at: Redis URL, TLS CA file and key prefix;
        model events go to its Kafka, with its security settings, unless ``events`` is
        false."""
        on_event = KafkaModelEvents(settings=settings) if events else None
        try:
            return super().from_settings(settings, on_event=on_event, **kwargs)
        except BaseException:
            _close(on_event)
            raise


def _close(sink: Any) -> None:
    close = getattr(sink, "close", None)
    if close is not None:
        close()
