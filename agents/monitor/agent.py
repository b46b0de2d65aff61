"""Monitor agent: metrics, drift and alerts per model version.

The **monitor** agent reads ``monitor-input`` and feeds the pure
:class:`~driftline.agents.monitor.core.Monitor` of that partition. The join writes
that topic (:mod:`driftline.agents.join.agent`, step 3): the elements of one
model's events on the model's partition, each with where it came from, (source
partition, source offset): its ``scored`` arrays' pairs and its valid predictions
as columns where it can (format 2), its ``expired`` arrays as written. After a
crash the join sends the pairs after its checkpoint again, and a re-delivered
input brings its predictions again: the monitor drops an
element whose source offset is not newer than the last one it applied from that
source partition. Every alert it computes has an id derived from the input order
alone.

Recovery (start-up, kill -9, rebalance): the partition's Monitor is rebuilt by
replaying its ``monitor-input`` partition from the start, which reproduces the
same numbers and the same alert ids. The ids already on the matching
``alerts`` partition are read first; an alert is published only if its id is
not there, so a replay never repeats an alert and re-publishes any alert a
crash lost. Nothing is unpickled: the state is re-derived from the events (JSON, or
the columns of format 2 elements, :mod:`driftline.models.wire.internal`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import faust
import numpy as np

from driftline.agents.lifecycle import PartitionStates
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.agents.monitor.metrics import LabelDelays
from driftline.agents.monitor.safeloop import Actions, RegistryModels, SafeLoop, alert_for
from driftline.agents.outbox import Outbox
from driftline.agents.wiring import ARRAY_BATCH, batch_agent, raw_topic, sender, timer
from driftline.errors import SchemaError
from driftline.kafka import read_partition
from driftline.models.wire import ALERT, Rejection, encode
from driftline.models.wire.internal import (
    PREDICTIONS,
    SCORED,
    Columnar,
    Element,
    decode_elements,
)
from driftline.settings import Settings

log = logging.getLogger(__name__)


HEARTBEAT = 12  # metrics ticks: every version's record goes out at least this often


class Failed(NamedTuple):
    """A monitor-input record that could not be applied, and why."""

    offset: int
    value: bytes
    error: Exception


class PartitionMonitor:
    """The Monitor of one ``monitor-input`` partition plus what makes replays exact."""

    def __init__(self, config: MonitorConfig, baselines=None,
                 loop: SafeLoop | None = None) -> None:
        self.monitor = Monitor(config, baselines)
        self.loop = loop                            # shadow scoring and canary (issue 19)
        self.next_offset = 0                        # of monitor-input
        self.applied: dict[tuple[str, int], int] = {}  # source -> last offset applied
        self.published: set[str] = set()            # alert ids on the alerts partition
        # (model, version) -> its counts on its last metrics record
        self.metrics_sent: dict[tuple[str, int | None], tuple[int, int, int]] = {}
        self.duplicates = 0

    def apply(self, offset: int, value: bytes) -> list[dict[str, Any]]:
        """One monitor-input record, in offset order; returns the alerts it raised (and
        raises what applying it raised)."""
        alerts, failed = self.apply_records([(offset, value)])
        if failed:
            raise failed[0].error
        return alerts

    def apply_records(self, records: Iterable[tuple[int, bytes]]
                      ) -> tuple[list[dict[str, Any]], list[Failed]]:
        """Records of this partition as (offset, value), in offset order: the alerts they
        raised, and the records that could not be applied.

        A run of events of one kind goes to the monitor at once however many records it
        spans: the monitor's results do not depend on where its batches end (its alerts
        are the same; floats agree to rounding, tests/test_monitor_estimate.py), and its
        cost per call does (numpy's per-call overhead on each segment's slice), so a
        fetch of seven records of ~500 events costs one call, not seven. A record that
        cannot be decoded is skipped on its own; a run that raises (a bug) skips the
        records it spans, live and on replay alike."""
        alerts: list[dict[str, Any]] = []
        failed: list[Failed] = []
        run: list[tuple[Element, Columnar | None]] = []  # elements, and their columns
        spans: list[tuple[int, bytes]] = []  # the records the run takes events from
        run_kind = None

        def feed() -> None:
            try:
                alerts.extend(self._feed(run_kind, run))
            except Exception as exc:  # a bug must not stop the partition
                known = {f.offset for f in failed}  # a record may span two runs
                failed.extend(Failed(offset, value, exc) for offset, value in spans
                              if offset not in known)

        for offset, value in records:
            if offset < self.next_offset:
                continue
            self.next_offset = offset + 1
            try:
                items = [(item, item.columns() if item.columnar else None, item.offsets())
                         for item in decode_elements(value)]
            except Exception as exc:  # not a record driftline wrote: skip it
                failed.append(Failed(offset, value, exc))
                continue
            for item, columns, offsets in items:
                kind = item.k
                partition, src_offset = item.s
                source = (kind, partition)
                last = self.applied.get(source)
                if last is not None and src_offset <= last:
                    self.duplicates += len(item)
                    continue
                if offsets is not None and columns is not None and last is not None \
                        and offsets[0] <= last:
                    # Several source messages (format 3), the first of them applied
                    # already: a re-delivered batch that overlaps the last one seen.
                    seen = int(np.searchsorted(offsets, last, side="right"))
                    self.duplicates += seen
                    columns = columns.tail(seen)
                self.applied[source] = src_offset
                if kind != run_kind and run:
                    feed()
                    run, spans = [], []
                run_kind = kind
                run.append((item, columns))
                if not spans or spans[-1][0] != offset:
                    spans.append((offset, value))
        if run:
            feed()
        return alerts, failed

    def _feed(self, kind: str | None, run: list[tuple[Element, Columnar | None]]
              ) -> list[dict[str, Any]]:
        """A run of elements of one kind: consecutive ones of events (format 1) in one
        call, consecutive ones of columns of one model (and features) in one."""
        out: list[dict[str, Any]] = []
        for key, group in itertools.groupby(run, key=_piece):
            parts = list(group)
            if key is None:
                out.extend(self._feed_events(kind, [ev for item, _ in parts for ev in item.e]))
            else:
                out.extend(self._feed_columns(kind, Columnar.join(
                    [columns for _, columns in parts if columns is not None])))
        return out

    def _feed_columns(self, kind: str | None, cols: Columnar) -> list[dict[str, Any]]:
        if kind == SCORED:
            if self.loop is not None:
                self.loop.observe_columns(cols)
            return self.monitor.process_pair_columns(cols)
        if kind == PREDICTIONS:
            return self.monitor.process_prediction_columns(cols)
        raise ValueError(f"a columnar monitor-input element of kind {kind!r}")

    def _feed_events(self, kind: str | None, events: list[dict[str, Any]]
                     ) -> list[dict[str, Any]]:
        if kind == SCORED:
            if self.loop is not None:
                self.loop.observe(events)
            return self.monitor.process_pairs(events)
        if kind == PREDICTIONS:
            return self.monitor.process_predictions(events)
        return self.monitor.process_expired(events)

    @property
    def label_delays(self) -> dict[str, LabelDelays]:
        """Per model, the label delays of its scored pairs (for /metrics)."""
        return self.monitor.label_delays


def _piece(piece: tuple[Element, Columnar | None]) -> tuple[str, tuple[str, ...]] | None:
    """What consecutive elements of a run share to be applied in one call: None for
    events, (model, features) for columns."""
    columns = piece[1]
    return None if columns is None else (columns.model, tuple(columns.names))


def _finite_or_null(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with every non-finite float (one level of nesting too) as None."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    return {k: clean(v) for k, v in metrics.items()}


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
        # (model, version) -> (baseline, registered: True, False, or None for no word)
        self._cache: dict[tuple[str, int], tuple[float | None, bool | None]] = {}
        self._down_until = -math.inf
        self._unknown_until: dict[tuple[str, int], float] = {}

    def __call__(self, model: str, version: int | None) -> float | None:
        return self._facts(model, version)[0]

    def registered(self, model: str, version: int | None) -> bool | None:
        """True: the registry holds the version; False: it knows the model and not this
        version (a producer's made-up number); None: it has no word (no such model, or
        Redis unreachable)."""
        return self._facts(model, version)[1]

    def _facts(self, model: str, version: int | None) -> tuple[float | None, bool | None]:
        if version is None:
            return None, None
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
        return facts if facts is not None else (None, None)

    def _lookup(self, model: str, version: int) -> tuple[float | None, bool | None] | None:
        from driftline.errors import RegistryError, RegistryUnavailable
        from driftline.models.registry import ModelRegistry

        if self.clock() < self._down_until:
            return None  # not cached: asked again once Redis may be back
        try:
            if self._registry is None:
                from driftline.redis_client import HOT_PATH, settings_redis_client

                self._registry = ModelRegistry(
                    settings_redis_client(self.settings, timeout=HOT_PATH),
                    prefix=self.settings.registry_prefix)
            try:
                meta = self._registry.get(model, version).meta
            except RegistryError as exc:
                if isinstance(exc, RegistryUnavailable):
                    raise
                return None, (False if self._registry.resolve(model) is not None
                              or model in self._registry.models() else None)
        except RegistryUnavailable as exc:
            self._down_until = self.clock() + self.DOWN_FOR
            log.error("registry unreachable (%s): the baseline of %s v%d comes from its "
                      "first pairs; no registry lookups for %.0f s", exc, model, version,
                      self.DOWN_FOR)
            return None
        value = meta.get("baseline_mse", (meta.get("metrics") or {}).get("mse"))
        return (float(value) if isinstance(value, (int, float)) else None), True


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

    async def _recover(self, consumer: Any, q: int, out: Outbox) -> PartitionMonitor:
        """Replay ``monitor-input`` partition ``q`` into a new PartitionMonitor; alerts a crash
        lost are queued on ``out``."""
        started = time.monotonic()
        await self.refresh_models()
        part = PartitionMonitor(self.config, self.baselines, None if self.models is None
                                else SafeLoop(self.settings, self.models))
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
                record = {**vm.report(), "input_offset": part.next_offset}
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
