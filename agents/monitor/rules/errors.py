"""The rules on the error of scored pairs, concept drift and the metric threshold, fed as
one :class:`~.rule.Rule`: what they raise interleaves.

Both go through the version's one alert book, and the threshold's resolve also closes
the concept-drift episode (:mod:`.threshold`), so at each pair a detected rise (which
may fire) comes before the threshold's fire, before its resolve. Fed one after the
other, a rise detected after a resolve in the same batch would meet its episode still
open. :attr:`ErrorRules.fired` says at which pair each fire happened, for the version to
attribute the rise to features (:mod:`~driftline.agents.monitor.attribution`).
"""

from __future__ import annotations

from driftline.agents.monitor.columns import at
from driftline.agents.monitor.rules.concept_drift import ConceptDriftRule
from driftline.agents.monitor.rules.rule import Kind, Seen
from driftline.agents.monitor.rules.subject import Alert
from driftline.agents.monitor.rules.threshold import ThresholdRule


class ErrorRules:
    watches = frozenset({Kind.PAIRS})

    def __init__(self, concept: ConceptDriftRule, threshold: ThresholdRule,
                 window: int) -> None:
        self.concept = concept
        self.threshold = threshold
        self.window = window  # the rolling MSE's: the threshold waits until it is full
        self.alerts: list[Alert] = []
        self.fired: list[tuple[int, Alert]] = []  # (position in the batch, firing alert)

    def update(self, seen: Seen) -> ErrorRules:
        """Scored pairs, after the version's rolling errors and baseline took them."""
        concept = self.concept.update(seen.prediction, seen.label, seen.squared)
        first, rolling = seen.scored, seen.rolling
        baseline = self.threshold.subject.baseline
        # The threshold applies once the baseline is set and the window is full.
        start = (max(baseline.applies_from, self.window - first - 1, 0)
                 if baseline.mse is not None else len(rolling))
        threshold = self.threshold.update(rolling, start, restarts=concept.positions)
        self.alerts, self.fired = [], []
        # At one pair, a detection (0) before a fire (1) before a resolve (2).
        steps = sorted([(i, 0) for i in concept.positions] + [(i, 1) for i in threshold.fires]
                       + [(i, 2) for i in threshold.resolves])
        for i, step in steps:
            ts, mse, n = at(seen.when, i), float(rolling[i]), first + i + 1
            if step == 2:
                self.alerts.extend(threshold.resolve(ts, mse, n, concept))
                continue
            alert = concept.fire(i, ts, mse, n) if step == 0 else threshold.fire(ts, mse, n)
            if alert:
                self.alerts.append(alert)
                self.fired.append((i, alert))
        return self
