"""The monitor: metrics, drift detectors and alert rules per (model, version).

This module only dispatches: each version's metrics and rules are in its
:class:`~.version.VersionMonitor`, each alert rule in its own module under :mod:`.rules`;
here events are grouped by version within the limits, fed in order, and what the
versions raise is merged in the order it happened.

Plain Python and numpy, no Kafka: the Faust agent in :mod:`driftline.agents.monitor.agent`
feeds it, tests and offline replay use it directly. Everything it computes is a
function of the order of its inputs only (event times, never the wall clock), so
replaying the same input gives the same numbers and the same alert ids; that is
how the agent survives kill -9 (see the README).

>>> from driftline.agents.monitor.config import MonitorConfig
>>> mon = Monitor(MonitorConfig())
>>> pairs = [{"prediction_id": str(i), "model": "m", "version": 1, "prediction": 1.0,
...           "label": 0.0, "error": 1.0, "features": {}, "ts": 0.0, "label_ts": float(i)}
...          for i in range(10)]
>>> mon.process_pairs(pairs)
[]
>>> mon.versions[("m", 1)].report()["rolling_mse"]
1.0
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import numpy as np

from driftline.agents.monitor.alerting import AlertBook
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.metrics import LabelDelays
from driftline.agents.monitor.rules.subject import Alert
from driftline.agents.monitor.superseded import supersede
from driftline.agents.monitor.version import VersionMonitor
from driftline.models.wire.internal import Columnar

_VERSION_KEY = operator.itemgetter("model", "version")


BaselineLookup = Callable[[str, int | None], float | None]


class Monitor:
    """All models and versions; feed it scored pairs, predictions and expirations in order.

    ``baselines(model, version)``, when given, supplies a version's baseline MSE (the
    agent reads it from the registry's metadata), asked once per version; and, if it has
    a ``task(model, version)``, the version's task where the config gives its model none
    (``regression``, the default); and if it has a ``reference(model, version)``, the
    rows of the version's reference profile, which its references are fitted from
    (:meth:`VersionMonitor.warm`) instead of its first events.

    Bounded (``[limits]`` of the config, issue 30): at most ``max_models`` models; the
    events of a model past it are counted in ``refused["too_many_models"]`` and go no
    further. At most ``max_versions`` versions a model: a new one makes room by dropping
    the version met least recently that has no open alert (its numbers go; should it
    serve again it starts afresh), else it is refused (``too_many_versions``). With
    ``registered_only``, a model or version the registry does not hold is refused
    (``unregistered``): a producer's made-up names and numbers make no state at all.
    """

    def __init__(self, config: MonitorConfig, baselines: BaselineLookup | None = None) -> None:
        self.config = config
        self.baselines = baselines
        self.versions: dict[tuple[str, int | None], VersionMonitor] = {}
        self.books: dict[str, AlertBook] = {}
        self._touched: list[VersionMonitor] = []  # the versions the last call fed
        self.by_model: dict[str, list[VersionMonitor]] = {}  # each model's versions
        self.label_delays: dict[str, LabelDelays] = {}  # per model: label - prediction time
        self.refused: Counter[str] = Counter()  # events not monitored, by reason
        self.evicted = 0  # versions dropped to make room for a newer one
        self._met: dict[tuple[str, int | None], int] = {}  # version -> when last fed
        self.refused_why = ""  # the reason version() last returned None
        self._tick = 0

    def version(self, model: str, version: int | None, features: int = 0
                ) -> VersionMonitor | None:
        """The monitor of ``version``, made on its first event (``features``: how many
        features that event names, for the split of the false-alarm budget); None if
        the limits refuse it (the reason is in :attr:`refused_why`)."""
        key = (model, version)
        vm = self.versions.get(key)
        self._tick += 1
        if vm is None:
            why = self._room_for(model, version)
            if why is not None:
                self.refused_why = why
                return None
            cfg = self.config.for_model(model)
            task = self._task(model, version) if cfg.kind == "regression" else None
            if task is not None and task != "regression":
                cfg = msgspec.structs.replace(cfg, task=task)  # the registry's word
            book = self.books.setdefault(model, AlertBook(cfg.cooldown))
            baseline = self.baselines(model, version) if self.baselines else None
            reference = getattr(self.baselines, "reference", None)
            rows = reference(model, version) if reference is not None else None
            if rows:  # the profile's features name the columns, and split the budget
                features = len({n for r in rows for n in r["features"]})
            vm = self.versions[key] = VersionMonitor(
                model, version, cfg, book, baseline, features,
                label_delays=self.label_delays.setdefault(model, LabelDelays()))
            vm.registered = self._registered(model, version)
            if rows:  # the version's reference profile: its references from where it trained
                vm.warm(rows)
            self.by_model.setdefault(model, []).append(vm)
        self._met[key] = self._tick
        return vm

    def _task(self, model: str, version: int | None) -> str | None:
        """The task the registry's metadata gives the version, when asked (the monitor
        config's wins where it gives one)."""
        task = getattr(self.baselines, "task", None)
        return task(model, version) if task is not None else None

    def _registered(self, model: str, version: int | None) -> bool | None:
        registered = getattr(self.baselines, "registered", None)
        return registered(model, version) if registered is not None else None

    def _room_for(self, model: str, version: int | None) -> str | None:
        """None if a monitor of (model, version) may be made now (having made room),
        else the reason it may not."""
        limits = self.config.limits
        known = self.by_model.get(model)
        if not known and len(self.by_model) >= limits.max_models:
            return "too_many_models"
        if limits.registered_only and self._registered(model, version) is not True:
            return "unregistered"
        if known and len(known) >= limits.max_versions:
            book = self.books[model]
            firing = {k.version for k, ep in book.episodes.items() if ep.firing}
            quiet = [vm for vm in known if vm.version not in firing]
            if not quiet:
                return "too_many_versions"
            idlest = min(quiet, key=lambda vm: self._met[(vm.model, vm.version)])
            self._drop(idlest)
        return None

    def _drop(self, vm: VersionMonitor) -> None:
        key = (vm.model, vm.version)
        del self.versions[key]
        del self._met[key]
        self.by_model[vm.model].remove(vm)
        self.evicted += 1

    def process_pairs(self, pairs: Iterable[dict[str, Any]]) -> list[Alert]:
        return self._dispatch(pairs, VersionMonitor.process_pairs)

    def process_predictions(self, events: Iterable[dict[str, Any]]) -> list[Alert]:
        out = self._dispatch(events, VersionMonitor.process_predictions)
        return out + self._superseded()

    def process_expired(self, events: Iterable[dict[str, Any]]) -> list[Alert]:
        return self._dispatch(events, VersionMonitor.process_expired)

    def process_pair_columns(self, cols: Columnar) -> list[Alert]:
        """One model's scored pairs as columns (a monitor-input element of format 2):
        what :meth:`process_pairs` does with the same pairs as dicts."""
        return self._columns(cols, pairs=True)

    def process_prediction_columns(self, cols: Columnar) -> list[Alert]:
        """:meth:`process_predictions` of one model's predictions as columns."""
        out = self._columns(cols, pairs=False)
        return out + self._superseded()

    def _superseded(self) -> list[Alert]:
        """The superseded resolves the models just fed owe now (:mod:`.superseded`)."""
        out: list[Alert] = []
        for model in sorted({vm.model for vm in self._touched}):
            out.extend(supersede(model, self.by_model.get(model, ()), self.books[model],
                                 self.config.for_model(model).superseded_after))
        return out

    def _columns(self, cols: Columnar, *, pairs: bool) -> list[Alert]:
        versions = cols.version
        groups: dict[int | None, np.ndarray | None]
        if versions.count(versions[0]) == len(versions):  # the common case: one version
            groups = {versions[0]: None}
        else:
            positions: dict[int | None, list[int]] = {}
            for i, version in enumerate(versions):
                positions.setdefault(version, []).append(i)
            groups = {v: np.array(index) for v, index in positions.items()}
        out: list[Alert] = []
        self._touched = []
        for version, index in groups.items():
            vm = self.version(cols.model, version, len(cols.names) + len(cols.categories))
            if vm is None:
                self.refused[self.refused_why] += len(versions) if index is None else len(index)
                continue
            self._touched.append(vm)
            batch = vm.batch_of(cols, index, pairs)
            out.extend(vm.pairs(batch) if pairs else vm.predictions(batch))
        return out

    def _dispatch(self, events: Iterable[dict[str, Any]], method) -> list[Alert]:
        """Each version gets its events in their order; versions share no state."""
        events = events if isinstance(events, list) else list(events)
        try:  # the common case: every event names its version; one C call per event
            keys = list(map(_VERSION_KEY, events))
        except KeyError:
            keys = [(ev["model"], ev.get("version")) for ev in events]
        groups: dict[tuple[str, int | None], list[dict[str, Any]]]
        if keys and keys.count(keys[0]) == len(keys):  # the common case: one version
            groups = {keys[0]: events}
        else:
            groups = {}
            for key, ev in zip(keys, events):
                groups.setdefault(key, []).append(ev)
        out: list[Alert] = []
        self._touched = []
        for (model, version), group in groups.items():
            # each feature is a test, numeric or categorical
            vm = self.version(model, version, len(group[0].get("features") or {}))
            if vm is None:
                self.refused[self.refused_why] += len(group)
                continue
            self._touched.append(vm)
            out.extend(method(vm, group))
        return out
