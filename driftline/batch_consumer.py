"""Whole fetched batches into driftline's agents, past Faust's per-message machinery.

Faust (faust-streaming 0.15.3) hands every fetched record to the Conductor one at a
time: four asyncio Tasks per message in ``Consumer._drain_messages`` (mode's
``wait_first``), the Conductor's lock, the Stream's ``sleep(0)``s and a per-event ack
(issue 16, DESIGN.md). This module keeps the agents Faust agents (same app, consumer
group, commit timer and rebalance callbacks) but lets the topics of driftline's batch
agents skip all of that:

The agent's side (:class:`Inbox`, :class:`Batch`, :class:`AckedRanges`) is in
``driftline.inbox``; this module is the consumer that fills it.

* the consumer's drain loop splits each fetch by agent: one :class:`Batch` per agent
  per fetch, holding the records of all its partitions, goes into that agent's
  :class:`Inbox` (two batches deep, so the fetch waits for a slow agent). A small fetch
  joins the last batch waiting instead (up to the agent's batch size and
  :data:`MERGE_BYTES`): the drain loop feeds every agent, so an agent that is busy for
  a while with a trickle of input (the trigger rebuilding its partitions on its first
  metrics record: 0.5 s) must not fill its two places and stall all the others;
* the agent's actor (a Faust agent, supervised by Faust) makes one handler call per
  batch, then acknowledges each partition by offset range (:class:`AckedRanges`): a
  range runs from the previous batch's end (or the committed offset), so compacted
  offsets and transaction markers inside it are acknowledged with it and commits
  advance;
* a revoke clears the inboxes and waits for the batch in flight before Faust commits
  (``wait_empty``); the next owner reads the cleared batches again;
* the handler runs under the agent's guard (``agents/guard.py``): what fails is
  retried, and a record that fails every time is dead-lettered, so no record holds
  its partition; it never ends the actor nor the consumer, and nothing of the batch is
  acknowledged before the guard is done with it or the partitions are revoked.

Every other topic goes Faust's stock way, record by record. The code overrides
private methods of faust-streaming's Consumer, so pyproject.toml pins the exact version
it is tested on (:data:`FAUST_VERSION`) and :func:`install` refuses another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from mode.utils.futures import notify

from driftline.errors import ConfigError
from driftline.inbox import AckedRanges, Batch, Event, Inbox, inboxes

log = logging.getLogger(__name__)

FAUST_VERSION = "0.15.3"
SCHEME = "driftline"  # broker_consumer="driftline://host:port": this module's Transport

class Consumer(driver.Consumer):
    """faust-streaming's aiokafka Consumer with batch delivery for registered topics."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acked_ranges: dict[TP, AckedRanges] = {}
        self._next_offset: dict[TP, int] = {}

    # -- acknowledgements and commits ----------------------------------------------

    def ack_ranges(self, ranges: dict[TP, tuple[int, int]]) -> None:
        """Acknowledge each partition's ``[begin, end)``, gaps included."""
        for tp, (begin, end) in ranges.items():
            committed = self._committed_offset[tp]
            if committed is not None and end <= committed:
                continue
            acked = self._acked_ranges.get(tp)
            if acked is None:
                acked = self._acked_ranges[tp] = AckedRanges()
            acked.add(begin, end)
            self._n_acked += end - begin
        notify(self._waiting_for_ack)

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        yield from super()._filter_tps_with_pending_acks(topics)
        for tp, acked in list(self._acked_ranges.items()):
            if acked and (topics is None or tp in topics or tp.topic in topics):
                yield tp

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked_ranges.get(tp)
        if acked is None:
            return super()._new_offset(tp)
        return acked.commit_point(self._committed_offset[tp])

    # -- rebalances and seeks --------------------------------------------------------

    def stop_flow(self) -> None:
        super().stop_flow()
        for inbox in set(inboxes(self.app).values()):
            inbox.clear()

    async def wait_empty(self) -> None:
        """The batches in flight finish (and are acknowledged) before Faust's own wait
        and commit; a revoke waits for this."""
        if not self.should_stop:
            for inbox in set(inboxes(self.app).values()):
                await inbox.idle()
        await super().wait_empty()

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._acked_ranges.pop(tp, None)
            self._next_offset.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def perform_seek(self) -> None:
        await super().perform_seek()
        self._next_offset.clear()

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        self._next_offset.pop(partition, None)

    # -- the drain loop ------------------------------------------------------------

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover
        registry = inboxes(self.app)
        if not registry:
            await super()._drain_messages(fetcher)
            return
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:
                    # As Faust's getmany: a fetch that returns while the flow is stopped
                    # (a rebalance) is dropped and the partitions go back to the commit.
                    try:
                        await self.perform_seek()
                    except Exception as exc:
                        log.warning("seek while the flow is stopped failed: %r", exc)
                    continue
                await self._deliver(records, active, registry)
                self.diag.unset_flag(CONSUMER_FETCHING)
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, records: Any, active: set[TP] | None,
                       registry: dict[str, Inbox]) -> None:
        generation = self.app.consumer_generation_id
        batches: dict[Inbox, tuple[list[Event], dict[TP, tuple[int, int]], list[int]]] = {}
        stock: list[tuple[TP, list[Any]]] = []
        for tp, recs in records.items():
            if not recs or not (active is None or tp in active
                                or tp in self._buffered_partitions):
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            inbox = registry.get(tp.topic)
            if inbox is None:
                stock.append((tp, recs))
                continue
            begin = self._next_offset.get(tp)
            if begin is None:
                committed = self._committed_offset[tp]
                begin = min(committed, recs[0].offset) if committed else recs[0].offset
            if recs[0].offset < begin:  # already delivered (a fetch that raced a seek)
                recs = [r for r in recs if r.offset >= begin]
                if not recs:
                    continue
            events, ranges, nbytes = batches.setdefault(inbox, ([], {}, [0]))
            events.extend([Event(r) for r in recs])
            ranges[tp] = (begin, recs[-1].offset + 1)
            nbytes[0] += sum(len(r.value) for r in recs if r.value is not None)
        for inbox, (events, ranges, nbytes) in batches.items():
            batch = Batch(events, ranges, inbox.generation, nbytes[0])
            await inbox.wait_room(batch)
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return  # a rebalance began: the partitions are read again from the commit
            for tp, (_, end) in ranges.items():
                self._next_offset[tp] = end
            batch.generation = inbox.generation  # as of now, should the wait have seen a clear
            await inbox.put(batch)
        for tp, recs in stock:
            await self._deliver_stock(tp, recs, generation)

    async def _deliver_stock(self, tp: TP, recs: list[Any], generation: int) -> None:
        """Faust's own path, record by record (from ``Consumer._drain_messages``)."""
        acks_enabled = self.app.topics.acks_enabled_for(tp.topic)
        for record in recs:
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return
            message = self._to_message(tp, record)
            offset = message.offset
            r_offset = self._read_offset[tp]
            if r_offset is None or offset >= r_offset:
                if offset - (r_offset or 0) > 1 and r_offset and acks_enabled:
                    await self._add_gap(tp, r_offset + 1, offset)
                await self.wait_first(self.callback(message), self.suspend_flow.wait())
                self._read_offset[tp] = offset


class Transport(driver.Transport):
    """Faust's aiokafka transport with :class:`Consumer`; ``driftline://host:port``."""

    Consumer = Consumer


def install() -> None:
    """Make ``driftline://`` a Faust transport (this module's), on the pinned Faust."""
    if faust.__version__ != FAUST_VERSION:
        raise ConfigError(f"batch delivery is written against faust-streaming "
                          f"{FAUST_VERSION}, found {faust.__version__}; set "
                          f"DRIFTLINE_BATCH_DELIVERY=false or install {FAUST_VERSION}")
    TRANSPORTS.aliases.setdefault(SCHEME, f"{__name__}:Transport")


def consumer_of(app: faust.App) -> Consumer:
    return cast(Consumer, app.consumer)
