"""Superseded versions: an older version's open episodes resolve once a newer one serves.

After a promotion the old version gets no more predictions, so nothing it watches can
clear and its alerts would stay ``firing`` forever. Once a newer version of the model
serves predictions and the older one has had none for ``superseded_after`` seconds,
each of the older version's open episodes resolves with ``reason: "superseded"``, and
it opens no new one (late labels of its old predictions may still arrive) until it
serves predictions again (a rollback).

Which version is champion is read from the input itself: the newest version that
serves predictions, among those the registry does not disown (issue 30: one forged
prediction of a made-up version 99 resolved the real version's firing episode as
superseded). Where the registry knows the model, a version it does not hold never
counts as serving; a model the registry does not know goes by the input alone. The
model events on ``driftline.models`` are on another topic, out
of the monitor's input order; the predictions are in it, so a replay of the same input
gives the same alerts. The clock is the model's newest prediction time (event time,
never the wall clock): a model that gets no predictions at all supersedes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from driftline.agents.monitor.alerting import AlertBook
from driftline.agents.monitor.rules.subject import Alert, version_name
from driftline.agents.monitor.version import VersionMonitor


def supersede(model: str, versions: Iterable[VersionMonitor], book: AlertBook,
              after: float) -> list[Alert]:
    """The superseded resolves that ``model`` owes now, in version order: ``versions`` are
    its monitors, ``book`` its alert book, ``after`` its ``superseded_after``."""
    vms = sorted((vm for vm in versions if vm.version is not None),
                 key=lambda vm: vm.version or 0)
    serving = [vm for vm in vms if vm.n_predictions and vm.registered is not False]
    if not serving:
        return []
    champion = serving[-1]
    now = max(vm.last_prediction_ts for vm in vms)
    out: list[Alert] = []
    for vm in vms:
        if vm is champion or (vm.version or 0) > (champion.version or 0):
            break
        if (model, vm.version) in book.superseded or vm.last_prediction_ts + after > now:
            continue
        out.extend(book.supersede(
            model, vm.version, ts=now, metrics=vm.subject.metrics_now(),
            message=f"{vm.subject.name} is superseded: {version_name(champion.version)} "
                    f"serves {model} and {version_name(vm.version)} has had no "
                    f"predictions for {after:g} s; its open alert is closed."))
    return out
