"""Model lifecycle events to the ``models`` topic: :class:`KafkaModelEvents`, the sink a
:class:`~driftline.ModelRegistry` is given to publish them.

The registry sits below Kafka (it must not import aiokafka) and takes any sink; this
one lives here, and aiokafka is imported only when it is built, so ``import driftline``
stays light for serving code that only reads models.

>>> from driftline import ModelRegistry  # doctest: +SKIP
>>> reg = ModelRegistry.from_url("redis://127.0.0.1:6379/0",  # doctest: +SKIP
...                              on_event=KafkaModelEvents("kafka://127.0.0.1:9092"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._loop import LoopThread
from .models.wire import MODEL_EVENT, encode
from .settings import Settings

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer


class KafkaModelEvents:
    """Model event sink (:class:`~driftline.models.registry.EventSink`): validates each
    event and waits until Kafka has it on the ``models`` topic. ``kafka_url`` and
    ``topic_prefix`` override ``settings`` (default: from the environment)."""

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
