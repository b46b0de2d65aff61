"""The retrain trigger agent: alerts (and the monitor's progress) in, retrain requests out.

One Faust agent reads ``alerts`` and ``metrics``; both are keyed by model and
written to the model's partition, so a model's alerts and progress meet in one
:class:`~driftline.agents.retrain_policy.RetrainTrigger`. Requests go to the
same partition of ``retrain``, keyed by model.

Recovery (start-up, kill -9, rebalance): the partition's trigger is rebuilt by
replaying its ``alerts`` partition from the start (alerts are few and kept
forever), after reading the request ids already on its ``retrain`` partition; a
request is published only if its id is not there. A re-delivered alert is
applied once (ids are remembered), so it never makes a second request.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from driftline.agents.lifecycle import PartitionStates
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.outbox import Outbox, SendFn
from driftline.agents.retrain.policy import RetrainTrigger
from driftline.agents.wiring import batch_agent, raw_topic, sender
from driftline.kafka import read_partition
from driftline.models.wire import ALERT, RETRAIN_REQUEST, encode, unbatch
from driftline.models.wire.events import as_dict
from driftline.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class TriggerPartition:
    """The trigger of one alerts partition and what it has published."""

    trigger: RetrainTrigger
    published: set[str] = field(default_factory=set)            # request ids on retrain
    requested: Counter[str] = field(default_factory=Counter)    # requests per model


class TriggerAgent:
    def __init__(self, settings: Settings, send: SendFn, config: MonitorConfig) -> None:
        self.settings = settings
        self.send = send
        self.config = config
        self.alerts_topic = settings.topic("alerts")
        self.metrics_topic = settings.topic("metrics")
        self.retrain_topic = settings.topic("retrain")
        # Keyed by the alerts partition; the metrics topic is co-partitioned with it.
        self.parts: PartitionStates[TriggerPartition] = PartitionStates(
            settings, send, (self.alerts_topic,), self._recover)

    @property
    def requested(self) -> dict[int, Counter[str]]:
        """Per partition: retrain requests per model (for /metrics)."""
        return {q: part.requested for q, part in self.parts.items()}

    async def process(self, messages: Sequence[Any]) -> None:
        await self.parts.ensure({e.message.partition for e in messages})
        out = Outbox()
        for event in messages:
            msg = event.message
            q = msg.partition
            if msg.topic == self.alerts_topic:
                alerts, bad = ALERT.decode(msg.value, max_bytes=self.settings.max_message_bytes)
                for rejection in bad:
                    out.dead_letter(self.settings.topic("deadletter"), msg.key, msg.topic, q,
                                    msg.offset, rejection,
                                    limit=self.settings.max_message_bytes)
                for alert in alerts:
                    self._publish(out, q, self.parts[q].trigger.on_alert(as_dict(alert)))
            else:
                record = _metrics_record(msg.value)
                if record is not None:
                    self._publish(out, q, self.parts[q].trigger.on_metrics(record))
        if len(out):
            await out.flush(self.send)

    def _publish(self, out: Outbox, q: int, requests: list[dict[str, Any]],
                 part: TriggerPartition | None = None) -> None:
        part = part or self.parts[q]
        for request in requests:
            if request["request_id"] in part.published:
                continue
            part.published.add(request["request_id"])
            part.requested[request["model"]] += 1
            valid = RETRAIN_REQUEST.validate(request)
            log.warning("retrain request %s for %s v%s: %s", valid.request_id, valid.model,
                        valid.base_version, valid.reason)
            out.add(self.retrain_topic, valid.model.encode(), encode(valid), q)

    async def _recover(self, consumer: Any, q: int, out: Outbox) -> TriggerPartition:
        """Rebuild the trigger of partition ``q`` from its ``retrain`` and ``alerts``
        partitions; requests a crash lost are queued on ``out``."""
        started = time.monotonic()
        part = TriggerPartition(RetrainTrigger(self.config))
        async for records in read_partition(consumer, self.retrain_topic, q):
            for r in records:
                requests, bad = RETRAIN_REQUEST.decode(r.value)
                for request in requests:
                    part.published.add(request.request_id)
                    part.requested[request.model] += 1
                if bad:
                    log.error("unreadable retrain request at %d@%d: %s", q, r.offset,
                              bad[0].error)
        ready: list[dict[str, Any]] = []
        n = 0
        async for records in read_partition(consumer, self.alerts_topic, q):
            for r in records:
                alerts, _ = ALERT.decode(r.value, max_bytes=self.settings.max_message_bytes)
                for alert in alerts:
                    ready.extend(part.trigger.on_alert(as_dict(alert)))
            n += len(records)
        for rid in part.published & part.trigger.pending.keys():
            del part.trigger.pending[rid]  # made before the crash
        self._publish(out, q, ready, part)
        log.info("trigger partition %d recovered in %.2fs: %d alert records, %d "
                 "requests already published, %d waiting for pairs", q,
                 time.monotonic() - started, n, len(part.published), len(part.trigger.pending))
        return part


def _metrics_record(value: bytes | None) -> dict[str, Any] | None:
    """A monitor metrics record (written by driftline), or None if it is not one."""
    try:
        record = unbatch(value or b"")[0]
    except (ValueError, IndexError):
        return None
    if (isinstance(record, dict) and isinstance(record.get("model"), str)
            and isinstance(record.get("n_scored"), int)
            and (record.get("version") is None or isinstance(record.get("version"), int))):
        return record
    return None


def install(app: faust.App, settings: Settings) -> TriggerAgent:
    config = MonitorConfig.load(settings.monitor_config or None)
    agent = TriggerAgent(settings, sender(app), config)
    batch_agent(app, raw_topic(app, agent.alerts_topic, agent.metrics_topic),
                "driftline.trigger", settings, agent.process, states=agent.parts)

    agent.parts.install(app)
    return agent
