"""``ModelClient``: the current champion in memory, swapped when a new one is promoted.

>>> client = ModelClient.from_url("redis://localhost:6379/0", "houses")  # doctest: +SKIP
>>> client.predict({"rooms": 4, "area": 88.0})                            # doctest: +SKIP
412.5

A classifier's client also gives its probabilities and classes, from the same model:

>>> intents = ModelClient.from_url("redis://localhost:6379/0", "intents")  # doctest: +SKIP
>>> intents.predict_proba({"length": 12.0, "hour": 9.0})                 # doctest: +SKIP
{'billing': 0.71, 'cancel': 0.09, 'support': 0.2}
>>> intents.predict({"length": 12.0, "hour": 9.0}), intents.classes      # doctest: +SKIP
('billing', ['billing', 'cancel', 'support'])

A background thread listens on the registry's pub/sub channel (a promotion is
picked up within milliseconds) and also checks the alias every ``poll_interval``
seconds, in case a message was missed. The new model is loaded and verified
completely before one reference assignment swaps it in, so ``predict`` never sees
a half-loaded model. While Redis is unreachable the client keeps serving the last
good model and says so in its log, once per outage.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis

from .errors import DriftlineError, RegistryError
from .models.registry import CHAMPION, DEFAULT_PREFIX, ModelRegistry

log = logging.getLogger(__name__)


class ModelClient:
    def __init__(self, registry: ModelRegistry, name: str, alias: str = CHAMPION, *,
                 poll_interval: float = 5.0, start: bool = True,
                 owns_registry: bool = False) -> None:
        self.registry = registry
        self._owns_registry = owns_registry
        self.name = name
        self.alias = alias
        self.poll_interval = poll_interval
        self._model: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.redis_ok = True
        self.swaps = 0
        self._model = registry.load(name, alias=alias)  # fails loudly if there is none yet
        if start:
            self.start()

    @classmethod
    def from_url(cls, url: str, name: str, alias: str = CHAMPION, *,
                 prefix: str = DEFAULT_PREFIX, ssl_ca_certs: str | None = None,
                 **kwargs: Any) -> ModelClient:
        """``url`` as in :meth:`ModelRegistry.from_url`; ``ssl_ca_certs`` verifies a
        ``rediss://`` server (default: the system's CAs)."""
        registry = ModelRegistry.from_url(url, prefix=prefix, ssl_ca_certs=ssl_ca_certs)
        try:
            return cls(registry, name, alias, owns_registry=True, **kwargs)
        except BaseException:
            registry.close()
            raise

    @property
    def model(self) -> Any:
        """The model serving now: an instance of its kind (:mod:`driftline.models.kinds`)."""
        model = self._model
        assert model is not None
        return model

    @property
    def version(self) -> int | None:
        version: int | None = self.model.version
        return version

    @property
    def task(self) -> str:
        return str(self.model.task)

    @property
    def classes(self) -> list[Any] | None:
        """A classifier's classes (``predict_proba``'s order); None for a regression."""
        classes = getattr(self.model, "classes", None)
        return list(classes) if classes is not None else None

    def predict(self, X: Any) -> Any:
        """Predict with the current model (thread-safe: one model per call, never a mix):
        a regression's value, a binary classifier's P(class 1), a multiclass one's class."""
        return self.model.predict(X)

    def predict_proba(self, X: Any) -> Any:
        """A classifier's probabilities, one per class (``{class: p}`` for a dict row, what
        a multiclass prediction event sends as ``probabilities``)."""
        model = self.model
        if not hasattr(model, "predict_proba"):
            raise TypeError(f"{self.name} v{model.version} is a {model.task} model "
                            f"({model.kind}): it has no probabilities")
        return model.predict_proba(X)

    def predict_class(self, X: Any, threshold: float = 0.5) -> Any:
        """A classifier's class: a binary one's 1 when P(1) >= ``threshold``, else 0."""
        model = self.model
        if not hasattr(model, "predict_class"):
            raise TypeError(f"{self.name} v{model.version} is a {model.task} model "
                            f"({model.kind}): it has no classes")
        if model.task == "binary":
            return model.predict_class(X, threshold)
        return model.predict_class(X)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name=f"driftline-{self.name}",
                                            daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._owns_registry:
            self.registry.close()

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- background ----------------------------------------------------------------

    def refresh(self) -> bool:
        """Load the alias's version if it changed; returns whether a new model was swapped in."""
        version = self.registry.resolve(self.name, self.alias)
        if version is None or version == self.model.version:
            return False
        model = self.registry.load(self.name, version=version)
        self._model = model  # one reference assignment: atomic for readers
        self.swaps += 1
        log.info("%s: now serving v%d (%s)", self.name, version, self.alias)
        return True

    def _watch(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.registry.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.registry._channel(self.name))
                self.refresh()  # anything missed while (re)connecting
                self._recovered()
                delay = 0.2
                next_poll = time.monotonic() + self.poll_interval
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message is not None or time.monotonic() >= next_poll:
                        self.refresh()
                        next_poll = time.monotonic() + self.poll_interval
            except Exception as exc:  # the watcher must outlive any error, or swaps stop
                if not isinstance(exc, (redis.ConnectionError, redis.TimeoutError,
                                        DriftlineError, OSError)):
                    log.exception("%s: unexpected error while watching %s; still serving v%s",
                                  self.name, self.alias, self.model.version)
                elif isinstance(exc, RegistryError) and not _is_outage(exc):
                    log.error("%s: cannot load the new %s: %s; still serving v%s", self.name,
                              self.alias, exc, self.model.version)
                elif self.redis_ok:
                    self.redis_ok = False
                    log.warning("%s: Redis unreachable (%s); serving v%s from memory until it "
                                "is back", self.name, exc, self.model.version)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass

    def _recovered(self) -> None:
        if not self.redis_ok:
            self.redis_ok = True
            log.warning("%s: Redis reachable again; serving v%s", self.name, self.model.version)


def _is_outage(exc: Exception) -> bool:
    return getattr(exc, "retriable", False)
