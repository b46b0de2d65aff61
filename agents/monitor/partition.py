"""The monitor of one ``monitor-input`` partition, and what makes its replays exact.

The join writes ``monitor-input`` (:mod:`driftline.agents.join.agent`, step 3): the
elements of one model's events on the model's partition, each with where it came from,
(source partition, source offset): its ``scored`` arrays' pairs and its valid
predictions as columns where it can (format 2), its ``expired`` arrays as written.
After a crash the join sends the pairs after its checkpoint again, and a re-delivered
input brings its predictions again: :class:`PartitionMonitor` drops an element whose
source offset is not newer than the last one it applied from that source partition,
so a replay of the partition from its start rebuilds the same
:class:`~driftline.agents.monitor.core.Monitor` (:mod:`driftline.agents.monitor.agent`).
Nothing is unpickled: the state is re-derived from the events (JSON, or the columns of
format 2 elements, :mod:`driftline.models.wire.internal`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.agents.monitor.metrics import LabelDelays
from driftline.agents.monitor.safeloop import SafeLoop
from driftline.models.wire.internal import (
    PREDICTIONS,
    SCORED,
    Columnar,
    Element,
    decode_elements,
)


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


def _piece(piece: tuple[Element, Columnar | None]
           ) -> tuple[str, tuple[tuple[str, ...], tuple[str, ...]]] | None:
    """What consecutive elements of a run share to be applied in one call: None for
    events, (model, numeric and categorical features) for columns."""
    columns = piece[1]
    return None if columns is None else (columns.model, columns.shape)
