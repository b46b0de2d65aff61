"""What a version monitor does with more than one batch source: its references from its
reference profile (issue 34), and its segments' share of a batch of predictions.

A version's references from its reference profile: what it looked like
where it was trained, rather than its first production events.

Each test takes the most recent profile rows its reference holds, through the path its
production events take, so the reference is fitted as from production (the same sizes:
the same false-alarm limits); a test whose reference the profile does not fill takes the
rest from production. Segments, made later, take theirs from production.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftline.agents.monitor.estimation import Estimation
from driftline.agents.monitor.rules.rule import Kind, Seen


def warm(vm: Any, rows: list[dict[str, Any]]) -> None:
    """Fit ``vm``'s references (a :class:`~.version.VersionMonitor`) from a reference
    profile's rows (:mod:`driftline.models.reference`) instead of its first production
    events; the labelled rows fit the estimator, the attribution's reference and, when
    the version has none, the baseline. Called once, before the version's first event."""
    vm.reference_source = "profile"
    events = [{**r, "ts": 0.0, "label_ts": 0.0} for r in rows]
    batch = vm.batch(events)
    vm._data_rules()
    cfg = vm.config
    feeds: list[tuple[Any, int]] = [
        (vm.data_drift, cfg.data_drift.reference_size),
        (vm.categorical_drift, cfg.data_drift.reference_size),
        (vm.multivariate, cfg.multivariate.reference_size + cfg.multivariate.window)]
    if all("prediction" in r for r in rows):
        feeds.append((vm.prediction_drift, cfg.data_drift.reference_size))
    for rule, need in feeds:
        if rule is not None:
            part = batch.slice(max(0, len(batch) - need), len(batch))
            rule.update(Seen(Kind.PREDICTIONS, part.ts, part.rows, part.prediction,
                             codes=part.codes, mismatch=part.mismatch, proba=part.proba))
    labelled = [e for e in events if "label" in e and "prediction" in e]
    if labelled:
        pairs = vm._valid(vm.batch(labelled, pairs=True))
        vm.refusals.counts.clear()  # a reference row is no production pair
        if len(pairs):
            vm._fit_estimator(pairs)
            if vm.baseline.mse is None:
                vm.baseline.update(vm._squared(pairs))


def segment_predictions(version: Any, batch: Any) -> list[Any]:
    """The segments' prediction rules of ``version`` (a version-wide monitor); the
    expected squared errors of the segments whose regression estimator is fitted come
    from one pass over the batch (:class:`~.estimation.Stacked`), not one per segment."""
    ordered, parts = version._by_segment(batch)
    fitted = [(k, vm.estimated.estimation) for k, (vm, _, _) in enumerate(parts)
              if vm.estimated is not None and vm.estimated.estimation.fitted]
    expected: list[np.ndarray | None] = [None] * len(parts)
    if len(fitted) > 1 and version.task == "regression":
        found = version._stacked.expected(
            [e for _, e in fitted if isinstance(e, Estimation)], ordered.rows,
            ordered.prediction,
            [parts[k][1:] for k, _ in fitted])
        for (k, _), values in zip(fitted, found):
            expected[k] = values
    out: list[Any] = []
    for (vm, start, end), given in zip(parts, expected):
        out.extend(vm.predictions(ordered.slice(start, end), given))
    return out
