"""The monitor's side of the safer closed loop (issue 19): shadow scoring and the canary
fed from the monitor's pairs, and what driftline does with their verdicts.

Both run inside the monitor agent, on the partition that holds all of a model's pairs
in one order (``monitor-input``), so they need no consumer of their own, and the
monitor's replay after a crash rebuilds them with it. The work per pair is only
for the versions under watch (a challenger, a champion in its canary window).

Acting on a verdict (in a thread: Redis and the model events are blocking):

* ``rollback``: the registry's atomic rollback of ``champion``, only if it still
  points at the judged version, as actor ``driftline-canary`` with the numbers in
  the history's reason and the model event ``rolled_back``; then the alert
  ``promotion_regressed``. Its id is derived from the version, so a replay that
  reaches the verdict again finds it on the alerts partition and does nothing.
* ``promote`` / ``reject`` (shadow, actor ``driftline-shadow``): only while the
  version still holds the alias ``challenger``; a promotion releases the alias.
* ``passed``: recorded in the history as ``canary_passed`` (once), with the numbers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka.errors import KafkaError

from driftline.agents.monitor.canary import Canary
from driftline.agents.monitor.shadow import Shadow, Verdict, at_half
from driftline.errors import RegistryError, RegistryUnavailable
from driftline.models.registry import CHALLENGER, ModelRegistry
from driftline.models.wire.internal import SCORED, Columnar
from driftline.settings import Settings

log = logging.getLogger(__name__)

CANARY_ACTOR = "driftline-canary"
SHADOW_ACTOR = "driftline-shadow"


class RegistryModels:
    """:class:`~driftline.agents.monitor.shadow.ModelSource` from the registry.

    Versions are immutable, so a loaded model is kept. The ``challenger`` alias is
    read by :meth:`refresh` (the agent calls it on its metrics timer, in a thread, and
    before a rebuild) - the way :class:`~driftline.ModelClient` re-checks its alias:
    a new challenger is picked up within one interval and loaded whole first."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._models: dict[tuple[str, int], Any | None] = {}
        self._holdout: dict[tuple[str, int], float | None] = {}
        self._challengers: dict[str, tuple[int, float] | None] = {}
        self.known: set[str] = set()

    def load(self, model: str, version: int) -> Any | None:
        key = (model, version)
        if key not in self._models:
            try:
                self._models[key] = self.registry.load(model, version=version)
            except RegistryUnavailable as exc:
                log.error("registry unreachable (%s): %s v%d not loaded", exc, model, version)
                return None  # asked again next time
            except (RegistryError, ValueError) as exc:
                log.error("%s v%d cannot be loaded: %s", model, version, exc)
                self._models[key] = None
        return self._models[key]

    def holdout_mse(self, model: str, version: int) -> float | None:
        key = (model, version)
        if key not in self._holdout:
            try:
                meta = self.registry.get(model, version).meta
            except (RegistryError, RegistryUnavailable):
                return None
            value = meta.get("baseline_mse", (meta.get("metrics") or {}).get("mse"))
            self._holdout[key] = float(value) if isinstance(value, (int, float)) else None
        return self._holdout[key]

    def challenger(self, model: str) -> tuple[int, float] | None:
        self.known.add(model)
        return self._challengers.get(model)

    def refresh(self) -> None:
        """Re-read the ``challenger`` alias of every model in the registry (blocking)."""
        try:
            self.known.update(self.registry.models())
        except RegistryUnavailable as exc:
            log.warning("registry unreachable (%s): challengers not refreshed", exc)
            return
        for model in sorted(self.known):
            try:
                version = self.registry.resolve(model, CHALLENGER)
                current = self._challengers.get(model)
                if version is None:
                    self._challengers[model] = None
                elif current is None or current[0] != version:
                    since = _alias_time(self.registry, model, version)
                    if self.load(model, version) is not None:
                        self._challengers[model] = (version, since)
                        log.warning("%s v%d: shadow-scoring the challenger on pairs labelled "
                                    "since %.0f", model, version, since)
            except RegistryUnavailable as exc:
                log.warning("registry unreachable (%s): challenger of %s not refreshed",
                            exc, model)


def _alias_time(registry: ModelRegistry, model: str, version: int) -> float:
    """When ``version`` last got the alias ``challenger`` (from the history)."""
    for row in reversed(registry.history(model)):
        if row.get("alias") == CHALLENGER and row.get("version") == version:
            return float(row["time"])
    return time.time()


class SafeLoop:
    """The shadow and canary of one monitor partition; feed it the partition's pairs.
    ``thresholds`` gives a model's ``decision_threshold`` (the monitor config's
    :meth:`~driftline.agents.monitor.config.MonitorConfig.decision_threshold`)."""

    def __init__(self, settings: Settings, models: RegistryModels,
                 thresholds: Callable[[str], float] = at_half) -> None:
        self.shadow = Shadow(models, settings.shadow_pairs, settings.promotion_margin,
                             settings.promotion_metric, thresholds)
        self.canary = Canary(models, settings.canary_pairs, settings.rollback_margin,
                             settings.promotion_metric, thresholds)
        self.pending: list[Verdict] = []
        self.verdicts: list[Verdict] = []  # the last ones, for the reports

    def observe(self, pairs: list[dict[str, Any]]) -> None:
        self.pending.extend(self.shadow.observe(pairs))
        self.pending.extend(self.canary.observe(pairs))

    def observe_columns(self, cols: Columnar) -> None:
        """One model's pairs as columns: :meth:`observe`, with the pairs made dicts only
        when the model's shadow or a canary scores them (or a version arrives that may
        start one); otherwise only the version serving the model is noted."""
        if self.shadow.watching(cols.model) or self.canary.watching(cols.model, cols.version):
            self.observe(cols.events(SCORED))
        else:
            self.canary.arrived(cols.model, cols.version)

    def reports(self) -> list[dict[str, Any]]:
        return self.shadow.reports() + self.canary.reports()

    def by_model(self) -> dict[str, list[dict[str, Any]]]:
        """The reports of each model (a challenger's shadow score, its canaries)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for report in self.reports():
            out.setdefault(report["model"], []).append(report)
        return out

    def serving(self, model: str) -> int | None:
        """The version that made the model's latest pair."""
        return self.canary.serving.get(model)


def alert_for(verdict: Verdict, rolled_back: bool = True) -> dict[str, Any]:
    """The ``promotion_regressed`` alert of a rollback verdict (``rolled_back`` False: the
    champion had moved on before the canary could roll it back)."""
    m = verdict.metrics
    metric = next(k for k in m if k.startswith("canary_")).removeprefix("canary_")
    done = (f"was rolled back to v{verdict.previous}" if rolled_back else
            "was not rolled back (the champion had changed meanwhile)")
    return {"alert_id": f"{verdict.model}.v{verdict.version}.promotion_regressed.firing",
            "model": verdict.model, "version": verdict.version, "kind": "promotion_regressed",
            "status": "firing", "severity": "critical", "detector": "canary", "feature": None,
            "segment": None, "ts": verdict.ts,
            # rolling_mse and baseline_mse hold the canary's metric (MSE for a regression;
            # the message names it): alert metrics are numbers
            "metrics": {"rolling_mse": m[f"canary_{metric}"],
                        "baseline_mse": m[f"reference_{metric}"],
                        "n_scored": m["pairs"], "margin": m["margin"],
                        "restored_version": verdict.previous},
            "message": f"{verdict.model} v{verdict.version} regressed after its promotion "
                       f"and {done}: {verdict.reason.removeprefix('canary: ')}."}


class Actions:
    """Carries out verdicts on the registry (one registry per actor, made on first use)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._registries: dict[str, ModelRegistry] = {}

    def registry(self, actor: str) -> ModelRegistry:
        if actor not in self._registries:
            from driftline.model_events import KafkaModelEvents

            self._registries[actor] = ModelRegistry.from_settings(
                self.settings, actor=actor, on_event=KafkaModelEvents(settings=self.settings))
        return self._registries[actor]

    async def carry_out(self, verdict: Verdict) -> str:
        """Act on one verdict: ``done``; ``kept`` (a rollback refused: the champion moved
        meanwhile); ``later`` if Redis or Kafka was unreachable (try again); ``failed`` for
        anything else, logged: the verdict is dropped and the monitor goes on."""
        try:
            return await asyncio.to_thread(self._act, verdict)
        except (RegistryUnavailable, KafkaError, OSError) as exc:
            log.warning("%s v%d %s postponed: %s", verdict.model, verdict.version,
                        verdict.action, exc)
            return "later"
        except Exception:
            log.exception("%s v%d: the %s verdict could not be carried out", verdict.model,
                          verdict.version, verdict.action)
            return "failed"

    def _act(self, v: Verdict) -> str:
        if v.action == "passed":
            registry = self.registry(CANARY_ACTOR)
            if not any(h["action"] == "canary_passed" and h["version"] == v.version
                       for h in registry.history(v.model)):  # a replay: recorded before
                registry.note(v.model, v.version, "canary_passed", reason=v.reason)
                log.warning("%s v%d: %s", v.model, v.version, v.reason)
        elif v.action == "rollback":
            registry = self.registry(CANARY_ACTOR)
            try:
                restored = registry.rollback(v.model, reason=v.reason, expect=v.version,
                                             metrics=v.metrics)
            except RegistryUnavailable:
                raise
            except RegistryError as exc:
                log.error("%s v%d regressed but was not rolled back: %s", v.model, v.version,
                          exc)
                return "kept"
            log.warning("%s: rolled back from v%d to v%d: %s", v.model, v.version, restored,
                        v.reason)
        else:
            registry = self.registry(SHADOW_ACTOR)
            if registry.resolve(v.model, CHALLENGER) != v.version:
                log.info("%s v%d is no longer the challenger; shadow verdict %s dropped",
                         v.model, v.version, v.action)
                return "done"
            if v.action == "promote":
                registry.promote(v.model, v.version, reason=v.reason)
                registry.delete_alias(v.model, CHALLENGER, reason="promoted")
            else:
                registry.reject(v.model, v.version, reason=v.reason, metrics=v.metrics)
            log.warning("%s v%d: %s", v.model, v.version, v.reason)
        return "done"

    def close(self) -> None:
        for registry in self._registries.values():
            registry.close()
