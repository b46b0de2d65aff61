"""Metric threshold: the rolling MSE stayed above ``factor`` x the baseline.

Fires after ``consecutive`` pairs in a row above ``factor`` x baseline; resolves after
``consecutive`` pairs in a row at or under ``resolve_factor`` x baseline. The resolve
also closes an open concept-drift episode, and a detected rise of the error restarts
the count of good pairs, so a drift episode resolves only on good pairs seen after
it. It applies once the baseline is set and the window is full. Vectorised over runs
of pairs (:class:`~driftline.agents.monitor.rules.hysteresis.Hysteresis`); counts
carry over, so batch boundaries change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from driftline.agents.monitor.config import ThresholdConfig
from driftline.agents.monitor.rules.concept_drift import ConceptDriftRule
from driftline.agents.monitor.rules.hysteresis import Hysteresis
from driftline.agents.monitor.rules.subject import Alert, Subject


class ThresholdRule:
    kind = "metric_threshold"
    detector = "threshold"

    def __init__(self, subject: Subject, config: ThresholdConfig) -> None:
        self.subject = subject
        self.config = config
        self.key = subject.key(self.kind)
        self.runs = Hysteresis(config.consecutive)
        self.fires: list[int] = []      # positions of the last batch where the rule fires
        self.resolves: list[int] = []   # ... and where it resolves

    def update(self, rolling: np.ndarray, start: int,
               restarts: Sequence[int] = ()) -> ThresholdRule:
        """The rolling MSE after each pair of a batch; the rule applies from position
        ``start`` (past the batch: not at all); ``restarts`` are positions of detected
        rises of the error."""
        self.fires, self.resolves = [], []
        if any(r < start for r in restarts):
            self.runs.restart_clears()
        if start >= len(rolling):
            return self
        baseline = self.subject.baseline.mse
        assert baseline is not None  # start is past the batch until it is set
        values = rolling[start:]
        self.runs.update_many(values > self.config.factor * baseline,
                              values <= self.config.resolve_factor * baseline,
                              [r - start for r in restarts if r >= start])
        self.fires = [start + i for i in self.runs.breached_at]
        self.resolves = [start + i for i in self.runs.cleared_at]
        return self

    def fire(self, ts: float, rolling_mse: float, n_scored: int) -> Alert | None:
        subject, cfg = self.subject, self.config
        baseline = subject.baseline.mse
        assert baseline is not None
        ratio = rolling_mse / baseline if baseline else float("inf")
        return subject.alerts.fire(
            self.key, ts=ts, severity="critical" if ratio > 2 * cfg.factor else "warning",
            detector=self.detector, metrics=subject.metrics(rolling_mse, n_scored),
            message=f"Rolling {subject.metric} of {subject.name} is {rolling_mse:.4g}, "
                    f"{ratio:.2f}x its "
                    f"baseline {baseline:.4g}, for {cfg.consecutive} pairs in a row "
                    f"(limit {cfg.factor}x).")

    def resolve(self, ts: float, rolling_mse: float, n_scored: int,
                concept: ConceptDriftRule) -> list[Alert]:
        """Resolves this rule's episode, then the concept-drift one, those that are open."""
        subject, cfg = self.subject, self.config
        message = (f"Rolling {subject.metric} of {subject.name} is back to {rolling_mse:.4g} "
                   f"(baseline "
                   f"{subject.baseline.mse:.4g}, resolve limit {cfg.resolve_factor}x) for "
                   f"{cfg.consecutive} pairs in a row.")
        out = []
        for key, detector in ((self.key, self.detector), (concept.key, concept.name)):
            alert = subject.alerts.resolve(key, ts=ts, detector=detector, message=message,
                                           metrics=subject.metrics(rolling_mse, n_scored))
            if alert:
                out.append(alert)
        return out
