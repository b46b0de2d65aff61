"""Scored pairs that do not fit their model's task: refused visibly, never dropped silently.

Each refused pair is counted by reason (the version's report: ``refused_pairs``; Prometheus'
``driftline_monitor_refused_pairs_total``) and kept, with its prediction id, until the
monitor agent dead-letters it (live, once; :meth:`Refusals.take`).

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
...           np.array([1.0, 0.0, 1.0]), np.zeros(3), np.empty((3, 0), np.int32),
...           ids=["a", "b", "c"])
>>> len(r.valid(b, "binary")), dict(r.counts), r.take()
(1, {'class_prediction': 1, 'prediction_outside_0_1': 1}, [('c', 'class_prediction'), ('b', 'prediction_outside_0_1')])
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from driftline.agents.monitor.categories import MISMATCH, OVERFLOW
from driftline.agents.monitor.columns import Batch

MAX_KEPT = 10_000  # refused pairs kept for dead letters between two takes; more are counted


class Refusals:
    """A version's refused pairs: counts by reason, and (prediction id, reason) to
    dead-letter."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._kept: list[tuple[str, str]] = []
        self.unkept = 0

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
        ids = batch.ids or []
        room = max(0, MAX_KEPT - len(self._kept))
        self._kept += [(ids[i] if i < len(ids) else "", reason) for i in where[:room].tolist()]
        self.unkept += max(0, len(where) - room)

    def take(self) -> list[tuple[str, str]]:
        """The refused pairs kept since the last take, as (prediction id, reason)."""
        kept, self._kept = self._kept, []
        return kept
