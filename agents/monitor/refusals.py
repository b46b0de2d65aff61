"""Scored pairs that do not fit their model's task: refused visibly, never dropped silently.

Each refused pair is counted by reason here (the version's report: ``refused_pairs``;
Prometheus' ``driftline_monitor_refused_pairs_total``), and dead-lettered by the join when it
scores the pair (:func:`refusal`, the same rules one pair at a time): the join meets each
pair once, live, where the monitor cannot tell a record it replays after a restart from one
a restart kept it from acting on.

========================  ===============================================================
reason                    the pair
========================  ===============================================================
``class_prediction``      a class (a string) where the task takes numbers
``class_label``           likewise, its label
``label_not_0_or_1``      binary: a label other than 0 or 1
``prediction_outside_0_1``  binary: a prediction that is not a probability
``error_not_finite``      regression: (prediction - label)^2 overflows
``number_prediction``     multiclass: a number where a class is expected
``number_label``          likewise, its label
``too_many_classes``      multiclass: a class past the version's cap
========================  ===============================================================

>>> r = Refusals()
>>> b = Batch(np.zeros(3), np.array([0.2, 1.5, np.nan]), np.empty((3, 0)), [None] * 3,
...           np.array([1.0, 0.0, 1.0]), np.zeros(3), np.empty((3, 0), np.int32))
>>> len(r.valid(b, "binary")), dict(r.counts)
(1, {'class_prediction': 1, 'prediction_outside_0_1': 1})
>>> refusal("binary", 1.5, 0.0), refusal("multiclass", "cat", "dog")
('prediction_outside_0_1', None)
>>> refusal("regression", "x", 1.0), refusal("regression", 1e200, -1e200)
('class_prediction', 'error_not_finite')
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from driftline.agents.monitor.categories import MISMATCH, OVERFLOW
from driftline.agents.monitor.columns import Batch
from driftline.agents.monitor.config import MonitorConfig

_ERROR = operator.attrgetter("error")
_MODEL = operator.attrgetter("model")
_VERSION = operator.attrgetter("version")


# The reasons that say the pair is of another task than its model's (a task to fix in the
# config); the others (an overflowing error, a class past the cap) are about the pair.
TASK_MISMATCH = frozenset({"class_prediction", "class_label", "number_prediction",
                           "number_label", "label_not_0_or_1", "prediction_outside_0_1"})


class Refusals:
    """A version's refused pairs, counted by reason."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def valid(self, batch: Batch, task: str) -> Batch:
        """The pairs of ``batch`` that fit ``task`` (regression, binary, multiclass); the
        others are counted and kept by reason, the first reason that applies."""
        preds, labels = batch.prediction, batch.label
        if task == "multiclass":
            checks = [("number_prediction", preds == MISMATCH),
                      ("number_label", labels == MISMATCH),
                      ("too_many_classes", (preds == OVERFLOW) | (labels == OVERFLOW))]
        else:
            checks = [("class_prediction", np.isnan(preds)), ("class_label", np.isnan(labels))]
            if task == "binary":
                checks += [("label_not_0_or_1", (labels != 0) & (labels != 1)),
                           ("prediction_outside_0_1", (preds < 0) | (preds > 1))]
            with np.errstate(over="ignore", invalid="ignore"):  # 1e200 - 0: its square is not
                checks.append(("error_not_finite", ~np.isfinite((preds - labels) ** 2)))
        refused = np.zeros(len(preds), bool)
        for reason, hit in checks:
            new = hit & ~refused
            if new.any():
                self._refuse(batch, reason, np.flatnonzero(new))
                refused |= new
        return batch.take(~refused) if refused.any() else batch

    def _refuse(self, batch: Batch, reason: str, where: np.ndarray) -> None:
        self.counts[reason] += len(where)


class Tasks:
    """Each model's task, for the join: which scored pairs it refuses (:meth:`refused`).
    The monitor config's; where it gives a model none (``regression``), the registry's
    word for the pair's version (``registry(model, version)``: the version's metadata,
    :class:`~driftline.agents.monitor.baselines.RegistryBaselines.task`), as the monitor
    reads it."""

    def __init__(self, config: MonitorConfig,
                 registry: Callable[[str, int | None], str | None] | None = None) -> None:
        self.config = config
        self.registry = registry
        self.classifiers = {m for m, c in config.models.items() if c.kind != "regression"}
        self.everyone = config.defaults.kind != "regression"

    def task(self, model: str, version: int | None) -> str:
        task = self.config.for_model(model).kind
        if task == "regression" and self.registry is not None:
            return self.registry(model, version) or task
        return task

    def refused(self, pairs: Sequence[Any]) -> list[tuple[Any, str, str]]:
        """(pair, reason, task) of each scored pair that does not fit its model's task.
        Where every model is a regression only a class (no error) or an overflowing error
        can: one numpy pass over the errors, not a call per pair. A class pair is looked
        at whole, since its version may be a classifier by the registry's word."""
        if not (self.everyone or self.classifiers):
            errors = np.fromiter(map(_ERROR, pairs), float, len(pairs))  # None -> NaN
            with np.errstate(over="ignore", invalid="ignore"):
                fit = errors * errors < math.inf
            classy: set[tuple[str, int | None]] = set()
            if self.registry is not None:  # versions the registry calls classifiers
                classy = {key for key in set(zip(map(_MODEL, pairs), map(_VERSION, pairs)))
                          if self.registry(*key) not in (None, "regression")}
            pairs = [pair for i, pair in enumerate(pairs)
                     if not fit[i] or (pair.model, pair.version) in classy] if classy else \
                [pairs[i] for i in np.flatnonzero(~fit).tolist()]
        out = []
        for pair in pairs:
            task = self.task(pair.model, pair.version)
            reason = refusal(task, pair.prediction, pair.label)
            if reason:
                out.append((pair, reason, task))
        return out


def refusal(task: str, prediction: Any, label: Any) -> str | None:
    """Why one pair does not fit ``task`` (None: it does): :meth:`Refusals.valid`'s rules,
    for the join, which dead-letters the pair (classes past the cap are the monitor's)."""
    if task == "multiclass":
        if type(prediction) is not str:
            return "number_prediction"
        return "number_label" if type(label) is not str else None
    if type(prediction) is str:
        return "class_prediction"
    if type(label) is str:
        return "class_label"
    if task == "binary":
        if label != 0 and label != 1:
            return "label_not_0_or_1"
        if not 0 <= prediction <= 1:
            return "prediction_outside_0_1"
    error = prediction - label
    if not error * error < math.inf:  # (** 2 raises on overflow; * gives inf)
        return "error_not_finite"
    return None
