"""Label starvation: too many of the latest resolved predictions expired without a label.

Over the last ``window`` resolved predictions (scored, or expired unlabeled), once
``min_events`` are in: fires when the expired share is above ``threshold``,
resolves when it falls to half of it. The decision depends on the share now
(:class:`Hysteresis` with ``needed=1``), so a batch of scored pairs while nothing is
firing, which can only lower the share, slides the window in bulk.
"""

from __future__ import annotations

import itertools
from collections import deque

import numpy as np

from driftline.agents.monitor.config import StarvationConfig
from driftline.agents.monitor.rules.hysteresis import Hysteresis
from driftline.agents.monitor.rules.rule import Kind, Seen
from driftline.agents.monitor.rules.subject import Alert, Subject


class LabelStarvationRule:
    kind = "label_starvation"
    detector = "expiry"
    watches = frozenset({Kind.PAIRS, Kind.EXPIRED})

    def __init__(self, subject: Subject, config: StarvationConfig) -> None:
        self.subject = subject
        self.config = config
        self.key = subject.key(self.kind)
        self.runs = Hysteresis(1)
        self._outcomes: deque[int] = deque(maxlen=config.window)  # 1 = expired
        self._expired = 0  # in the window
        self.alerts: list[Alert] = []  # raised by the last update

    @property
    def expired_share(self) -> float | None:
        """Share of the window that expired unlabeled (None while it is empty)."""
        return self._expired / len(self._outcomes) if self._outcomes else None

    def update(self, seen: Seen) -> LabelStarvationRule:
        """Scored pairs or expired predictions slide the window; ``seen.when`` is when each
        was resolved (its label's time, or its expiry's; NaN if unknown)."""
        self.alerts = []
        ts, expired = seen.when, seen.kind is Kind.EXPIRED
        window = self._outcomes
        book = self.subject.alerts
        if not expired and not book.is_firing(self.key):
            # A scored pair can only lower the share, and nothing is firing: no alert
            # can come out of this batch, so slide the window in bulk.
            dropped = max(0, len(window) + len(ts) - self.config.window)
            self._expired -= sum(itertools.islice(window, 0, dropped))
            window.extend(itertools.repeat(0, len(ts)))
            return self
        cfg, subject, outcome = self.config, self.subject, int(expired)
        for when in np.where(np.isnan(ts), 0.0, ts).tolist():  # an unknown time: 0.0
            if len(window) == cfg.window:
                self._expired -= window[0]
            window.append(outcome)
            self._expired += outcome
            if len(window) < cfg.min_events:
                continue
            share = self._expired / len(window)
            firing = book.is_firing(self.key)
            runs = self.runs.update(share > cfg.threshold, share <= cfg.threshold / 2)
            if not firing and runs.breached:
                alert = book.fire(
                    self.key, ts=when,
                    severity="critical" if share > (1 + cfg.threshold) / 2 else "warning",
                    detector=self.detector, metrics=subject.metrics_now(expired_share=share),
                    message=f"Label starvation on {subject.name}: {share:.0%} of the last "
                            f"{len(window)} predictions expired without a label (limit "
                            f"{cfg.threshold:.0%}).")
            elif firing and runs.cleared:
                alert = book.resolve(
                    self.key, ts=when, detector=self.detector,
                    metrics=subject.metrics_now(expired_share=share),
                    message=f"Labels arrive again for {subject.name}: {share:.0%} of the last "
                            f"{len(window)} predictions expired.")
            else:
                continue
            if alert:
                self.alerts.append(alert)
        return self
