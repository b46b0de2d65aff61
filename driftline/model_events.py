"""Model lifecycle events to the ``models`` topic, for the synchronous registry."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from ._loop import LoopThread
from .kafka import client_options
from .models.wire import MODEL_EVENT, encode
from .settings import Settings


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
