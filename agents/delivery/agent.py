"""The delivery agent: alerts in, pushes to Alertmanager and webhooks out, and one
record per outcome on ``alert-deliveries``.

It runs as ``driftline delivery``: its own process and consumer group
(``DRIFTLINE_GROUP_ID`` + ``-delivery``), so a slow or dead receiver holds back only
delivery, never the monitor. One Faust agent reads ``alerts``, ``retrain`` and
``models`` (all keyed by model, so co-partitioned: one partition holds a model's
alerts, its open retrain requests and their outcome). For each alert, per target:

* ``silenced`` if a silence in Redis matches it (:mod:`.silences`);
* ``inhibited`` if an open retrain request of its model and kind holds it back
  (:mod:`.inhibition`);
* else pushed (:mod:`.receivers`): ``delivered``, or ``failed`` on a 4xx, which
  also goes to the dead-letter topic with the receiver's answer.

A batch's offsets are committed only after its records are on ``alert-deliveries``
(the Outbox), so delivery is at least once: after a crash an alert may be pushed
again, with the same ``alert_id`` (Alertmanager's label set, the webhook's body and
``Idempotency-Key`` header) for the receiver to drop it. Every
``DRIFTLINE_ALERT_RESEND_INTERVAL`` s the firing alerts are sent to Alertmanager
again, as it expects; re-sends are counted (``resends``), not recorded.

Recovery (start-up, kill -9, rebalance): a partition's state is rebuilt from its
``retrain``, ``models`` and ``alerts`` partitions (requests open now, the kinds of the
alerts that made them, the episodes firing now).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import faust

from driftline.agents.delivery import payload
from driftline.agents.delivery.inhibition import Inhibitor
from driftline.agents.delivery.receivers import PushStats, Result, Target, push, targets
from driftline.agents.delivery.silences import Silence, SilenceError, SilenceStore, matching
from driftline.agents.lifecycle import PartitionStates
from driftline.agents.outbox import Outbox, SendFn
from driftline.agents.wiring import batch_agent, raw_topic, sender, timer
from driftline.errors import ConfigError
from driftline.kafka import read_partition
from driftline.models.wire import ALERT, MODEL_EVENT, RETRAIN_REQUEST, Rejection, encode
from driftline.models.wire.events import AlertDelivery, as_dict
from driftline.retry import Backoff
from driftline.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class DeliveryPartition:
    inhibitor: Inhibitor = field(default_factory=Inhibitor)
    firing: dict[str, dict[str, Any]] = field(default_factory=dict)  # episode -> alert

    def apply(self, alert: dict[str, Any]) -> float | None:
        """Track the episode; returns when a resolved episode fired (None if unknown)."""
        self.inhibitor.on_alert(alert)
        episode = payload.episode_id(alert["alert_id"])
        if alert["status"] == "firing":
            self.firing[episode] = alert
            return None
        started = self.firing.pop(episode, None)
        return float(started["ts"]) if started is not None else None


class DeliveryAgent:
    def __init__(self, settings: Settings, send: SendFn, silences: SilenceStore, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.send = send
        self.silences = silences
        self.clock = clock
        self.targets: list[Target] = targets(settings)
        if not self.targets:
            raise ConfigError("nothing to deliver to: set DRIFTLINE_ALERTMANAGER_URL and/or "
                              "DRIFTLINE_ALERT_WEBHOOKS")
        # run_delivery sets it from the worker's web address when it is empty.
        self.dashboard = settings.dashboard_url or f"http://{settings.web_host}:6066/"
        self.alerts_topic = settings.topic("alerts")
        self.retrain_topic = settings.topic("retrain")
        self.models_topic = settings.topic("models")
        self.outcomes: Counter[tuple[str, str]] = Counter()   # (target, outcome) -> records
        self.resends: Counter[str] = Counter()                # target -> alerts re-sent
        self.stats = PushStats()
        self.parts: PartitionStates[DeliveryPartition] = PartitionStates(
            settings, send, (self.alerts_topic,), self._recover)

    # --- the stream ----------------------------------------------------------------

    async def process(self, messages: Sequence[Any]) -> None:
        await self.parts.ensure({e.message.partition for e in messages})
        out = Outbox()
        # Requests and their outcomes first: an alert is judged by what the batch knows.
        for event in messages:
            msg = event.message
            if msg.topic == self.retrain_topic:
                for request in RETRAIN_REQUEST.decode(msg.value)[0]:
                    self.parts[msg.partition].inhibitor.on_request(as_dict(request))
            elif msg.topic == self.models_topic:
                for model_event in MODEL_EVENT.decode(msg.value)[0]:
                    self.parts[msg.partition].inhibitor.on_model_event(as_dict(model_event))
        alerts = [e.message for e in messages if e.message.topic == self.alerts_topic]
        if alerts:
            silences = await self._active_silences()
            async with aiohttp.ClientSession() as session:
                for msg in alerts:
                    await self._deliver_message(session, msg, silences, out)
        if len(out):
            await out.flush(self.send)

    async def _deliver_message(self, session: aiohttp.ClientSession, msg: Any,
                               silences: list[Silence], out: Outbox) -> None:
        q = msg.partition
        limit = self.settings.max_message_bytes
        events, bad = ALERT.decode(msg.value, max_bytes=limit)
        for rejection in bad:  # the monitor, the trigger and the dashboard refuse it too
            out.dead_letter(self.settings.topic("deadletter"), msg.key, msg.topic, q,
                            msg.offset, rejection, limit=limit)
        for index, event in enumerate(events):
            alert = as_dict(event)
            part = self.parts[q]
            started = part.apply(alert)
            silence = matching(silences, alert, self.clock())
            request = None if silence else part.inhibitor.inhibited_by(alert)
            if silence is not None:
                results = {t: Result("silenced", 0, None, f"silence {silence.id} until "
                                     f"{payload.iso(silence.ends_at)}: {silence.reason}")
                           for t in self.targets}
            elif request is not None:
                results = {t: Result("inhibited", 0, None,
                                     f"retrain request {request} is open") for t in self.targets}
            else:
                results = dict(zip(self.targets, await asyncio.gather(
                    *(self._push(session, t, alert, started) for t in self.targets))))
            for target, result in results.items():
                self._record(out, alert, target, result)
                if result.outcome == "failed":
                    raw = encode(event)
                    why = Rejection("receiver_refused", f"{target.name}: {result.error}", raw,
                                    index if len(events) > 1 else None)
                    out.dead_letter(self.settings.topic("deadletter"), msg.key, msg.topic, q,
                                    msg.offset, why, limit=limit)

    async def _push(self, session: aiohttp.ClientSession, target: Target,
                    alert: dict[str, Any], started: float | None) -> Result:
        body, headers = self._request(target, [alert], {alert["alert_id"]: started})
        sign = None
        if target.kind == "webhook":
            def sign() -> dict[str, str]:
                return payload.signed_headers(body, alert["alert_id"], target.secret,
                                              now=self.clock())
        return await push(session, target, body, headers,
                          timeout=self.settings.alert_delivery_timeout,
                          max_delay=self.settings.alert_retry_max_delay, stats=self.stats,
                          sign=sign)

    def _request(self, target: Target, alerts: list[dict[str, Any]],
                 started: dict[str, float | None]) -> tuple[bytes, dict[str, str]]:
        """The body and fixed headers; a webhook's signed ones are made per attempt."""
        headers = {"Content-Type": "application/json"}
        if target.kind == "alertmanager":
            now = self.clock()
            body = encode([payload.alertmanager_alert(
                a, self.dashboard, now=now, resend_interval=self.settings.alert_resend_interval,
                started=started.get(a["alert_id"])) for a in alerts])
            return body, headers
        [alert] = alerts
        return payload.webhook_body(alert), headers

    def _record(self, out: Outbox, alert: dict[str, Any], target: Target,
                result: Result) -> None:
        record = AlertDelivery(alert["alert_id"], target.name, result.outcome,
                               result.attempts, result.status_code,
                               None if result.error is None else result.error[:4000],
                               self.clock())
        self.outcomes[(target.name, result.outcome)] += 1
        log.log(logging.WARNING if result.outcome == "failed" else logging.INFO,
                "alert %s -> %s: %s%s", alert["alert_id"], target.name, result.outcome,
                f" ({result.error})" if result.error else "")
        out.add(self.settings.topic("alert_deliveries"), alert["alert_id"].encode(),
                encode(record), None)

    async def _active_silences(self) -> list[Silence]:
        """The silences in force; while Redis cannot be read, delivery waits (pushing
        a silenced alert would page someone who asked not to be)."""
        backoff = Backoff(0.5, self.settings.alert_retry_max_delay)
        while True:
            try:
                return await asyncio.to_thread(self.silences.active)
            except SilenceError as exc:
                delay = backoff.next()
                log.warning("%s; delivery waits %.1fs", exc, delay)
                await asyncio.sleep(delay)

    # --- re-sends ------------------------------------------------------------------

    async def resend(self) -> int:
        """Send every firing, pushed alert to Alertmanager again (one request; not
        retried: the next round is the retry). Returns how many were sent."""
        target = next((t for t in self.targets if t.kind == "alertmanager"), None)
        if target is None:
            return 0
        try:
            silences = await asyncio.to_thread(self.silences.active)
        except SilenceError as exc:
            log.warning("re-send skipped: %s", exc)
            return 0
        now = self.clock()
        alerts: list[dict[str, Any]] = []
        for part in list(self.parts.values()):
            for episode, alert in list(part.firing.items()):
                if episode in part.inhibitor.inhibited or matching(silences, alert, now):
                    continue
                alerts.append(alert)
        if not alerts:
            return 0
        body, headers = self._request(target, alerts, {})
        async with aiohttp.ClientSession() as session:
            result = await push(session, target, body, headers,
                                timeout=self.settings.alert_delivery_timeout,
                                max_delay=self.settings.alert_retry_max_delay, max_attempts=1)
        if result.outcome != "delivered":
            log.warning("re-send of %d firing alerts to %s failed: %s", len(alerts),
                        target.name, result.error)
            return 0
        self.resends[target.name] += len(alerts)
        return len(alerts)

    # --- recovery ------------------------------------------------------------------

    async def _recover(self, consumer: Any, q: int, out: Outbox) -> DeliveryPartition:
        started = time.monotonic()
        part = DeliveryPartition()
        for topic, kind in ((self.retrain_topic, RETRAIN_REQUEST),
                            (self.models_topic, MODEL_EVENT)):
            async for records in read_partition(consumer, topic, q):
                for r in records:
                    for event in kind.decode(r.value)[0]:
                        if kind is RETRAIN_REQUEST:
                            part.inhibitor.on_request(as_dict(event))
                        else:
                            part.inhibitor.on_model_event(as_dict(event))
        n = 0
        async for records in read_partition(consumer, self.alerts_topic, q):
            for r in records:
                for fired in ALERT.decode(r.value, max_bytes=self.settings.max_message_bytes)[0]:
                    alert = as_dict(fired)
                    part.apply(alert)
                    part.inhibitor.inhibited_by(alert)
            n += len(records)
        log.info("delivery partition %d recovered in %.2fs: %d alert records, %d firing, "
                 "%d retrain requests open", q, time.monotonic() - started, n,
                 len(part.firing), len(part.inhibitor.open))
        return part


def install(app: faust.App, settings: Settings) -> DeliveryAgent:
    from driftline.redis_client import REGISTRY

    agent = DeliveryAgent(settings, sender(app),
                          SilenceStore.from_settings(settings, timeout=REGISTRY))
    batch_agent(app, raw_topic(app, agent.alerts_topic, agent.retrain_topic, agent.models_topic),
                "driftline.delivery", settings, agent.process, states=agent.parts)
    agent.parts.install(app)

    @timer(app, settings.alert_resend_interval, "driftline.delivery.resend")
    async def resend_firing() -> None:
        await agent.resend()

    return agent
