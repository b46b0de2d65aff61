"""What the registry says of a version the monitor meets: its baseline MSE, its task,
whether it is registered. The registry is Redis, so this is the monitor agent's adapter,
not the pure core's (:class:`~driftline.agents.monitor.core.Monitor` takes any lookup of
that shape).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from driftline.errors import ArtifactError, RegistryError, RegistryUnavailable
from driftline.models.reference import rows_of
from driftline.models.registry import ModelRegistry
from driftline.redis_client import HOT_PATH, settings_redis_client
from driftline.settings import Settings

log = logging.getLogger(__name__)

# baseline, registered, task, whether it has a reference profile
Facts = tuple[float | None, bool | None, str | None, bool]
NO_WORD: Facts = (None, None, None, False)


class RegistryBaselines:
    """What the registry says of a version the monitor meets: its baseline MSE from its
    metadata (``baseline_mse``, else the holdout ``metrics.mse``), and whether it is
    registered (:meth:`registered`). Asked once per version (versions are immutable);
    an unknown model or version has no baseline.

    The lookup blocks the event loop, so it gets one short try (``HOT_PATH``), and once
    Redis has failed, none for :data:`DOWN_FOR` seconds (issue 30: a lookup per new
    version, each waiting its timeout, held the partition while Redis was down): the
    versions met meanwhile fall back to their first pairs (logged; a replay with Redis
    up would then pick the registry's baseline instead)."""

    DOWN_FOR = 30.0
    MAX_CACHED = 50_000  # past it, what the registry does not hold is forgotten

    def __init__(self, settings: Settings, *, clock=time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._registry: Any = None
        # (model, version) -> (baseline, registered: True, False, or None for no word, task)
        self._cache: dict[tuple[str, int], Facts] = {}
        self._down_until = -math.inf
        self._unknown_until: dict[tuple[str, int], float] = {}

    def __call__(self, model: str, version: int | None) -> float | None:
        return self._facts(model, version)[0]

    def reference(self, model: str, version: int | None) -> list[dict[str, Any]] | None:
        """The rows of the version's reference profile, when its metadata says it has one
        (read once: a version meets the monitor once per process; None when Redis fails,
        and the version's references then come from its first events, logged)."""
        facts = self._facts(model, version)
        if version is None or not facts[3]:
            return None
        try:
            document = self._registry.reference(model, version)
        except (RegistryError, ArtifactError) as exc:
            log.error("%s v%d: its reference profile cannot be read (%s); its references "
                      "come from its first events", model, version, exc)
            return None
        return rows_of(document) if document is not None else None

    def task(self, model: str, version: int | None) -> str | None:
        """The task the version's metadata gives (``regression``, ``binary``,
        ``multiclass``; the trainer and ``models register`` write it), or None."""
        return self._facts(model, version)[2]

    def registered(self, model: str, version: int | None) -> bool | None:
        """True: the registry holds the version; False: it knows the model and not this
        version (a producer's made-up number); None: it has no word (no such model, or
        Redis unreachable)."""
        return self._facts(model, version)[1]

    def _facts(self, model: str, version: int | None) -> Facts:
        if version is None:
            return NO_WORD
        key = (model, version)
        facts = self._cache.get(key)
        if facts is None or (facts[1] is False and self.clock() >= self._unknown_until[key]):
            facts = self._lookup(model, version)
            if facts is not None:
                if len(self._cache) >= self.MAX_CACHED:  # made-up names: stay bounded
                    self._cache = {k: v for k, v in self._cache.items() if v[1] is True}
                self._cache[key] = facts
                if facts[1] is False:  # it may be registered soon: ask again later
                    if len(self._unknown_until) > 10_000:  # made-up numbers: stay bounded
                        self._unknown_until.clear()
                        self._cache = {k: v for k, v in self._cache.items()
                                       if v[1] is not False}
                        self._cache[key] = facts
                    self._unknown_until[key] = self.clock() + self.DOWN_FOR
        return facts if facts is not None else NO_WORD

    def _lookup(self, model: str, version: int) -> Facts | None:
        if self.clock() < self._down_until:
            return None  # not cached: asked again once Redis may be back
        try:
            if self._registry is None:
                self._registry = ModelRegistry(
                    settings_redis_client(self.settings, timeout=HOT_PATH),
                    prefix=self.settings.registry_prefix)
            try:
                meta = self._registry.get(model, version).meta
            except RegistryError as exc:
                if isinstance(exc, RegistryUnavailable):
                    raise
                return None, (False if self._registry.resolve(model) is not None
                              or model in self._registry.models() else None), None, False
        except RegistryUnavailable as exc:
            self._down_until = self.clock() + self.DOWN_FOR
            log.error("registry unreachable (%s): the baseline of %s v%d comes from its "
                      "first pairs; no registry lookups for %.0f s", exc, model, version,
                      self.DOWN_FOR)
            return None
        value = meta.get("baseline_mse", (meta.get("metrics") or {}).get("mse"))
        task = meta.get("task")
        return ((float(value) if isinstance(value, (int, float)) else None), True,
                task if task in ("regression", "binary", "multiclass") else None,
                bool(meta.get("reference")))
