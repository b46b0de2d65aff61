"""Monitor agent: metrics, drift and alerts per model version.

The **monitor** agent reads ``monitor-input`` and feeds the
:class:`~driftline.agents.monitor.partition.PartitionMonitor` of that partition (the
pure :class:`~driftline.agents.monitor.core.Monitor`, plus what drops the elements a
crash made the join send again). Every alert it computes has an id derived from the
input order alone.

Recovery (start-up, kill -9, rebalance): the partition's Monitor is rebuilt by
replaying its ``monitor-input`` partition from the start, which reproduces the
same numbers and the same alert ids. The ids already on the matching
``alerts`` partition are read first; an alert is published only if its id is
not there, so a replay never repeats an alert and re-publishes any alert a
crash lost. Nothing is unpickled: the state is re-derived from the events.
Baselines and the registered versions come from the registry
(:class:`~driftline.agents.monitor.baselines.RegistryBaselines`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import faust

from driftline.agents.lifecycle import PartitionStates
from driftline.agents.monitor.baselines import RegistryBaselines
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.partition import PartitionMonitor
from driftline.agents.monitor.safeloop import Actions, RegistryModels, SafeLoop, alert_for
from driftline.agents.outbox import Outbox
from driftline.agents.wiring import ARRAY_BATCH, batch_agent, raw_topic, sender, timer
from driftline.errors import SchemaError
from driftline.kafka import read_partition
from driftline.models.wire import ALERT, Rejection, encode
from driftline.settings import Settings

log = logging.getLogger(__name__)


HEARTBEAT = 12  # metrics ticks: every version's record goes out at least this often


def _finite_or_null(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with every non-finite float (one level of nesting too) as None."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    return {k: clean(v) for k, v in metrics.items()}


class MonitorAgent:
    def __init__(self, settings: Settings, send, config: MonitorConfig,
                 baselines=None, models: RegistryModels | None = None) -> None:
        self.settings = settings
        self.send = send
        self.config = config
        self.baselines = baselines
        self.models = models  # None: no shadow scoring, no canary
        self.actions = Actions(settings)
        self.input_topic = settings.topic("monitor_input")
        self.alerts_topic = settings.topic("alerts")
        self.metrics_topic = settings.topic("metrics")
        self._ticks = 0  # of publish_metrics
        self.parts: PartitionStates[PartitionMonitor] = PartitionStates(
            settings, send, (self.input_topic,), self._recover)

    async def process(self, messages: Sequence[Any]) -> None:
        await self.parts.ensure({e.message.partition for e in messages})
        out = Outbox()
        by_partition: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        for event in messages:
            msg = event.message
            by_partition[msg.partition].append((msg.offset, msg.value))
        for q, records in by_partition.items():
            self._apply(out, q, self.parts[q], records, replay=False)
        for q in by_partition:
            await self._carry_out(out, q, self.parts[q], replay=False)
        if len(out):
            await out.flush(self.send)

    def _apply(self, out: Outbox, q: int, part: PartitionMonitor,
               records: list[tuple[int, bytes]], *, replay: bool) -> None:
        """Apply records of partition ``q`` (:meth:`PartitionMonitor.apply_records`) and
        queue their new alerts. A record that cannot be applied is skipped, the same way
        live and on replay (dead-lettered once, live), so a poison record can neither
        stop the stream nor make every rebuild crash."""
        alerts, failed = part.apply_records(records)
        for offset, value, exc in failed:
            log.error("monitor-input %d@%d could not be applied; skipped", q, offset,
                      exc_info=exc)
            if not replay:
                out.dead_letter(self.settings.topic("deadletter"), None, self.input_topic, q,
                                offset, Rejection("internal_error", repr(exc), value),
                                limit=self.settings.max_message_bytes)
        self._publish(out, q, part, alerts, replay=replay)

    def _publish(self, out: Outbox, q: int, part: PartitionMonitor,
                 alerts: list[dict[str, Any]], *, replay: bool = False) -> None:
        for alert in alerts:
            if alert["alert_id"] in part.published:
                continue
            part.published.add(alert["alert_id"])
            # A metric can overflow to inf (squared errors of 1e308): it goes out as null,
            # as it always did, and the alert with it.
            alert["metrics"] = _finite_or_null(alert["metrics"])
            try:  # the contract holds for what driftline writes too
                value = encode(ALERT.validate(alert))
            except SchemaError as exc:  # a bug: say so where it is seen, never stop the stream
                log.error("alert %s does not match the alert schema (%s); not published",
                          alert["alert_id"], exc)
                if not replay:  # dead-lettered once, live, as a record that cannot apply
                    out.dead_letter(self.settings.topic("deadletter"), alert["model"].encode(),
                                    self.alerts_topic, None, None, Rejection(
                                        "internal_error",
                                        f"alert does not match the schema: {exc}",
                                        encode(alert)), limit=self.settings.max_message_bytes)
                continue
            log.warning("alert %s: %s", alert["alert_id"], alert["message"])
            out.add(self.alerts_topic, alert["model"].encode(), value, q)

    async def _carry_out(self, out: Outbox, q: int, part: PartitionMonitor, *,
                         replay: bool) -> None:
        """Act on the partition's shadow and canary verdicts; a rollback's alert is queued
        after the registry has rolled back, and a verdict whose alert is already on the
        alerts partition (a replay) is not acted on again."""
        loop = part.loop
        if loop is None or not loop.pending:
            return
        todo, loop.pending = loop.pending, []
        for verdict in todo:
            alert = alert_for(verdict) if verdict.action == "rollback" else None
            if alert is not None and alert["alert_id"] in part.published:
                continue
            outcome = await self.actions.carry_out(verdict)
            if outcome == "later":
                loop.pending.append(verdict)  # Redis is down: the next batch tries again
            elif outcome in ("done", "kept") and alert is not None:
                self._publish(out, q, part, [alert_for(verdict, outcome == "done")],
                              replay=replay)

    def close(self) -> None:
        """At shutdown: the registries the verdicts opened (and their Kafka producers)."""
        self.actions.close()
        if self.models is not None:
            self.models.registry.close()

    async def refresh_models(self) -> None:
        """Re-read the registry's ``challenger`` aliases (a thread: Redis blocks)."""
        if self.models is not None:
            await asyncio.to_thread(self.models.refresh)

    def partition_monitor(self) -> PartitionMonitor:
        """A new partition's monitor, with its shadow and canary when there is a registry
        to read: they judge a binary model's error rate at its config's threshold too."""
        loop = (None if self.models is None else
                SafeLoop(self.settings, self.models, self.config.decision_threshold))
        return PartitionMonitor(self.config, self.baselines, loop)

    async def _recover(self, consumer: Any, q: int, out: Outbox) -> PartitionMonitor:
        """Replay ``monitor-input`` partition ``q`` into a new PartitionMonitor; alerts a crash
        lost are queued on ``out``."""
        started = time.monotonic()
        await self.refresh_models()
        part = self.partition_monitor()
        n = 0
        queued_before = len(out)  # ``out`` is shared by every partition being rebuilt
        async for records in read_partition(consumer, self.alerts_topic, q):
            for r in records:
                part.published.update(a.alert_id for a in ALERT.decode(r.value)[0])
        async for records in read_partition(consumer, self.input_topic, q):
            self._apply(out, q, part, [(r.offset, r.value) for r in records], replay=True)
            n += len(records)
        await self._carry_out(out, q, part, replay=True)
        log.info("monitor partition %d recovered in %.2fs: replayed %d records "
                 "(%d re-forwarded events dropped), %d versions, %d alerts already "
                 "published, %d to re-publish", q, time.monotonic() - started, n,
                 part.duplicates, len(part.monitor.versions),
                 len(part.published) - (len(out) - queued_before), len(out) - queued_before)
        return part

    async def publish_metrics(self) -> None:
        """A record per version on the metrics topic, what dashboards and the trigger
        read: for a version whose counts moved since its last record, or that serves a
        shadow or a canary, and for every version once in :data:`HEARTBEAT` ticks (issue
        30: 20,000 idle versions made 2,500 records/s that said nothing new)."""
        out = Outbox()
        self._ticks += 1
        heartbeat = self._ticks % HEARTBEAT == 0
        for q, part in self.parts.items():
            loop = part.loop
            watched = loop.by_model() if loop is not None else {}
            sent = part.metrics_sent
            for key in [k for k in sent if k not in part.monitor.versions]:  # dropped
                del sent[key]
            for key, vm in part.monitor.versions.items():
                shadow = (loop is not None and vm.model in watched
                          and vm.version == loop.serving(vm.model))
                counts = (vm.n_predictions, vm.rolling.count, vm.n_expired)
                if not (heartbeat or shadow) and sent.get(key) == counts:
                    continue
                sent[key] = counts
                # trail: the rolling metric every so many pairs since the last record
                record = {**vm.report(), "input_offset": part.next_offset,
                          "trail": vm.span.take()}
                # A model's challenger in shadow and canaries ride on the record of the
                # version serving it now: one record per version stays one per version.
                if shadow:
                    record["shadow"] = watched[vm.model]
                out.add(self.metrics_topic, vm.model.encode(), encode(record), q)
        if len(out):
            await out.flush(self.send)


def install(app: faust.App, settings: Settings) -> MonitorAgent:
    """Register the monitor agent and the metrics timer on ``app``."""
    config = MonitorConfig.load(settings.monitor_config or None)

    send = sender(app)
    from driftline.models.registry import ModelRegistry
    from driftline.redis_client import HOT_PATH, settings_redis_client

    models = RegistryModels(ModelRegistry(settings_redis_client(settings, timeout=HOT_PATH),
                                          prefix=settings.registry_prefix))
    agent = MonitorAgent(settings, send, config, RegistryBaselines(settings), models)
    batch_agent(app, raw_topic(app, settings.topic("monitor_input")), "driftline.monitor",
                settings, agent.process, max_messages=ARRAY_BATCH, states=agent.parts)

    @timer(app, settings.metrics_interval, "driftline.monitor.metrics")
    async def metrics() -> None:
        await agent.refresh_models()
        await agent.publish_metrics()

    agent.parts.install(app)
    return agent
