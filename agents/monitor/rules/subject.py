"""What the rules of one (model, version) share: its names, alert book and metrics."""

from __future__ import annotations

import math
from typing import Any

from driftline.agents.monitor.alerting import AlertBook, AlertKey
from driftline.agents.monitor.metrics import Baseline, RollingErrors

Alert = dict[str, Any]


class Subject:
    """The version a rule watches: ``name`` for messages ("houses v3", "houses v3 segment
    'de'"), the model's :class:`AlertBook`, and the rolling errors and baseline that
    alerts report. ``segment`` is None for the rules that watch the whole version."""

    def __init__(self, model: str, version: int | None, alerts: AlertBook,
                 rolling: RollingErrors, baseline: Baseline,
                 segment: str | None = None, metric: str = "MSE") -> None:
        self.model, self.version, self.segment = model, version, segment
        # What rolling_mse measures, for messages: MSE; a binary classifier's Brier score
        # (squared errors of its probabilities), a multiclass one's error rate.
        self.metric = metric
        self.alerts = alerts
        self.rolling = rolling
        self.baseline = baseline
        self.name = f"{model} {version_name(version)}" + (
            f" segment {segment!r}" if segment is not None else "")

    def key(self, kind: str, feature: str | None = None, check: str | None = None) -> AlertKey:
        return AlertKey(self.model, self.version, kind, feature, self.segment, check)

    def metrics(self, rolling_mse: float, n_scored: int) -> dict[str, Any]:
        """An alert's metrics as of one scored pair (the pair-driven rules)."""
        return {"rolling_mse": rolling_mse, "rolling_rmse": math.sqrt(rolling_mse),
                "baseline_mse": self.baseline.mse, "n_scored": n_scored}

    def metrics_now(self, **extra: float) -> dict[str, Any]:
        """An alert's metrics as of now (the rules driven by predictions and expiries)."""
        return {"rolling_mse": self.rolling.mse(), "baseline_mse": self.baseline.mse,
                "n_scored": self.rolling.count, **extra}


def version_name(version: int | None) -> str:
    return "(unknown version)" if version is None else f"v{version}"


def number(value: float | None) -> str:
    return "not set yet" if value is None else f"{value:.4g}"
