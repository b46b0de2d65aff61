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

**One lane per target** (:mod:`.lanes`). An alert is judged once (silenced, inhibited,
or to push) and offered to every target's lane; each lane pushes its alerts in order
with its own retries and writes each outcome on ``alert-deliveries`` (and a 4xx's dead
letter) itself. A receiver that is down stalls only its own lane: the others, and
the reading of new alerts, go on (issue 30: one dead webhook used to hold back
Alertmanager too). Only when a lane holds ``DRIFTLINE_ALERT_BACKLOG`` alerts does the
agent stop reading, so memory stays bounded.

**At least once, with offsets committed before every target has its outcome.** A
batch is acknowledged once its alerts are in the lanes, so the consumer's offset no
longer says what each target has had. Each lane says it instead, on the compacted
internal topic ``delivery-progress``: per target (key: a hash of its URL) and alerts
partition (the record's partition), ``{"v": 1, "target", "next"}``: every alert of
that partition below offset ``next`` has its outcome on ``alert-deliveries`` for that
target. A lane writes it with each outcome that ends an alerts record (after the
outcome, in the same acknowledged send), and the agent writes a target's first one for
a partition before offering it anything, so ``next`` never passes an alert without an
outcome. Recovery (start-up, kill -9, rebalance) reads it back and offers each lane
again the alerts from its ``next`` to the partition's end; a lane drops an offer below
its mark, so what the stream brings again is not queued twice. The cost, as before: a
receiver may see an alert twice after a crash, with the same ``alert_id``
(Alertmanager's label set, the webhook's body and ``Idempotency-Key``) for it to drop.
Every ``DRIFTLINE_ALERT_RESEND_INTERVAL`` s the firing alerts are sent to Alertmanager
again, as it expects; re-sends are counted (``resends``), not recorded.

Recovery also rebuilds a partition's state from its ``retrain``, ``models`` and
``alerts`` partitions (requests open now, the kinds of the alerts that made them, the
episodes firing now).
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
import orjson

from driftline.agents.delivery import payload
from driftline.agents.delivery.inhibition import Inhibitor
from driftline.agents.delivery.lanes import Item, Lane, progress_key
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
        self.progress_topic = settings.topic("delivery_progress")
        self.lanes: dict[Target, Lane] = {}
        self.known: set[tuple[Target, int]] = set()  # (target, partition) with progress
        self._session: aiohttp.ClientSession | None = None
        self.parts: PartitionStates[DeliveryPartition] = PartitionStates(
            settings, send, (self.alerts_topic,), self._recover, on_drop=self._on_drop)

    # --- the stream ----------------------------------------------------------------

    async def process(self, messages: Sequence[Any]) -> None:
        """Judge each alert and offer it to every target's lane; returns once the lanes
        have room (not once they delivered: see the module's doc)."""
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
        items: list[tuple[Item, Target]] = []
        if alerts:
            silences = await self._active_silences()
            limit = self.settings.max_message_bytes
            for msg in alerts:
                events, bad = ALERT.decode(msg.value, max_bytes=limit)
                for rejection in bad:  # the monitor, the trigger and the dashboard refuse it
                    out.dead_letter(self.settings.topic("deadletter"), msg.key, msg.topic,
                                    msg.partition, msg.offset, rejection, limit=limit)
                items.extend(self._judge(msg, [as_dict(e) for e in events], silences))
        # A lane's first alert of a partition gets its progress record first, so a
        # restart knows where the lane stood even if it never settled one.
        for item, target in items:
            lane = self._lane(target)
            if (target, item.partition) not in self.known and \
                    item.offset >= lane.mark.get(item.partition, 0):
                self.known.add((target, item.partition))
                self._progress(out, target, item.partition, item.offset)
        if len(out):
            await out.flush(self.send)
        for item, target in items:
            self._lane(target).offer(item)
        for lane in list(self.lanes.values()):
            await lane.room()

    def _judge(self, msg: Any, alerts: list[dict[str, Any]], silences: list[Silence],
               part: DeliveryPartition | None = None) -> list[tuple[Item, Target]]:
        """Track each alert of one record in its partition's state and say what each
        target gets: a push, or a fixed ``silenced`` / ``inhibited`` outcome."""
        part = part if part is not None else self.parts[msg.partition]
        out = []
        for index, alert in enumerate(alerts):
            started = part.apply(alert)
            silence = matching(silences, alert, self.clock())
            request = None if silence else part.inhibitor.inhibited_by(alert)
            settled = None
            if silence is not None:
                settled = Result("silenced", 0, None, f"silence {silence.id} until "
                                 f"{payload.iso(silence.ends_at)}: {silence.reason}")
            elif request is not None:
                settled = Result("inhibited", 0, None, f"retrain request {request} is open")
            for target in self.targets:
                out.append((Item(msg.partition, msg.offset, index == len(alerts) - 1, alert,
                                 started, settled, msg.key, msg.topic,
                                 index if len(alerts) > 1 else None), target))
        return out

    # --- the lanes -----------------------------------------------------------------

    def _lane(self, target: Target) -> Lane:
        lane = self.lanes.get(target)
        if lane is None:
            lane = self.lanes[target] = Lane(
                target, lambda item: self._settle(target, item),
                capacity=self.settings.alert_backlog)
        return lane

    async def _settle(self, target: Target, item: Item) -> None:
        """Push one alert to ``target`` (or take its fixed outcome) and put the record,
        a dead letter if refused, and the lane's progress on Kafka."""
        result = item.settled
        if result is None:
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession()
            result = await self._push(self._session, target, item.alert, item.started)
        out = Outbox()
        self._record(out, item.alert, target, result)
        if result.outcome == "failed":
            why = Rejection("receiver_refused", f"{target.name}: {result.error}",
                            encode(item.alert), item.index)
            out.dead_letter(self.settings.topic("deadletter"), item.key, item.topic,
                            item.partition, item.offset, why,
                            limit=self.settings.max_message_bytes)
        if item.last:
            self._progress(out, target, item.partition, item.offset + 1)
        await out.flush(self.send)

    def _progress(self, out: Outbox, target: Target, partition: int, next_offset: int) -> None:
        out.add(self.progress_topic, progress_key(target),
                orjson.dumps({"v": 1, "target": target.name, "next": next_offset}), partition)

    def _on_drop(self, partition: int, _: DeliveryPartition) -> None:
        for lane in self.lanes.values():
            lane.drop(partition)
        self.known = {(t, q) for t, q in self.known if q != partition}

    async def drain(self) -> None:
        """Wait until every lane has settled what it was offered (tests, shutdown)."""
        for lane in list(self.lanes.values()):
            await lane.drained()

    async def close(self) -> None:
        for lane in self.lanes.values():
            await lane.close()
        if self._session is not None:
            await self._session.close()

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
        # Where each target's lane stood: alerts from there on are offered again.
        progress: dict[bytes, int] = {}
        async for records in read_partition(consumer, self.progress_topic, q):
            for r in records:
                progress[r.key] = int(orjson.loads(r.value)["next"])
        behind = {t: progress[progress_key(t)] for t in self.targets
                  if progress_key(t) in progress}
        for target, offset in behind.items():
            self.known.add((target, q))
            self._lane(target).raise_mark(q, offset)
        silences = await self._active_silences() if behind else []
        n = offered = 0
        async for records in read_partition(consumer, self.alerts_topic, q):
            for r in records:
                alerts = [as_dict(a) for a in ALERT.decode(
                    r.value, max_bytes=self.settings.max_message_bytes)[0]]
                for item, target in self._judge(r, alerts, silences, part):
                    if target in behind and self._lane(target).offer(item):
                        offered += 1
            n += len(records)
        log.info("delivery partition %d recovered in %.2fs: %d alert records, %d firing, "
                 "%d retrain requests open, %d deliveries resumed", q,
                 time.monotonic() - started, n, len(part.firing), len(part.inhibitor.open),
                 offered)
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
