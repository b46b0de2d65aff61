"""A version's references from its reference profile (issue 34): what it looked like
where it was trained, rather than its first production events.

Each test takes the most recent profile rows its reference holds, through the path its
production events take, so the reference is fitted as from production (the same sizes:
the same false-alarm limits); a test whose reference the profile does not fill takes the
rest from production. Segments, made later, take theirs from production.
"""

from __future__ import annotations

from typing import Any

from driftline.agents.monitor.rules.rule import Kind, Seen


def warm(vm: Any, rows: list[dict[str, Any]]) -> None:
    """Fit ``vm``'s references (a :class:`~.version.VersionMonitor`) from a reference
    profile's rows (:mod:`driftline.models.reference`) instead of its first production
    events; the labelled rows fit the estimator, the attribution's reference and, when
    the version has none, the baseline. Called once, before the version's first event."""
    vm.reference_source = "profile"
    events = [{**r, "ts": 0.0, "label_ts": 0.0} for r in rows]
    predicted = all("prediction" in r for r in rows)
    if not predicted:  # rows of features only fit the features' tests; a stand-in
        stand_in = next((r["prediction"] for r in rows if "prediction" in r), 0.0)
        batch = vm.batch([e if "prediction" in e else {**e, "prediction": stand_in}
                          for e in events])
    else:
        batch = vm.batch(events)
    vm._data_rules()
    cfg = vm.config
    feeds: list[tuple[Any, int]] = [
        (vm.data_drift, cfg.data_drift.reference_size),
        (vm.categorical_drift, cfg.data_drift.reference_size),
        (vm.multivariate, cfg.multivariate.reference_size + cfg.multivariate.window)]
    if predicted:
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
            squared = vm._squared(pairs)
            if vm.baseline.mse is None:
                vm.baseline.update(squared)
            # the error test's bins, from as many errors as it would take from production
            if vm.task == "regression" and len(pairs) >= vm.concept.detector.params.get(
                    "reference", len(pairs) + 1):
                vm.concept.detector.warm(squared)
