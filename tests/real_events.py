"""Alerts and metrics records made by the real monitor (agents/monitor/core.py, the pure
core the monitor agent runs), as the agent publishes them, for consumer tests.

A few drifting streams, chosen so that together they make every alert kind, firing and
resolved (``cleared`` and ``superseded``), model-wide and per segment, with and without
``feature`` and ``attribution``, of a version and of an unknown version; a canary
rollback makes ``promotion_regressed``. Producer-chosen names are hostile where a
producer may choose them: a feature whose name holds CR, LF and ESC, a segment with an
accent, a model and segment whose alert ids are exactly 256 characters.

:func:`monitor_output` runs them once per session (about 1 s) and returns the alerts as
the monitor agent writes them on ``alerts`` (``encode(ALERT.validate(alert))``, non-finite
metrics as null) and the metrics records as it writes them on ``metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from simulate import stream
from test_monitor_estimate import covariate_shift, events
from test_monitor_estimate import run as run_delayed
from test_safeloop import BAD, TRUE, Source, feed, pairs

from driftline.agents.monitor.agent import _finite_or_null
from driftline.agents.monitor.canary import Canary
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.agents.monitor.safeloop import alert_for
from driftline.models.wire import ALERT, encode
from driftline.models.wire.events import Alert

# A feature name a producer may send: CR, LF, a header line, ESC (clear the screen).
HOSTILE_FEATURE = "x0\r\nX-Injected: 1\x1b[2J"
# A model and a segment whose concept_drift ids are exactly 256 characters (the monitor
# keeps an id readable up to there).
LONG_MODEL = "m" * 100
LONG_SEGMENT = "s" * 126 + "é"


@dataclass(frozen=True)
class MonitorOutput:
    alerts: list[bytes]            # values on ``alerts``, in the order published
    metrics: list[bytes]           # values on ``metrics``, one per version (and segment)

    def structs(self) -> list[Alert]:
        return [ALERT.decode_one(raw) for raw in self.alerts]


def _feed(mon: Monitor, predictions, scored, batch: int = 500) -> list[dict[str, Any]]:
    out = []
    for i in range(0, max(len(predictions), len(scored)), batch):
        out += mon.process_predictions(predictions[i:i + batch])
        out += mon.process_pairs(scored[i:i + batch])
    return out


def _segmented_drift_then_superseded() -> tuple[Monitor, list[dict[str, Any]]]:
    """v1 drifts in two segments; v2 serves 700 s later: v1's episodes resolve superseded."""
    mon = Monitor(MonitorConfig.from_dict({"defaults": {"segments": True}}))
    predictions, scored = stream(10_000, seed=3, drift_at=5_000, model="houses")
    for i, (p, s) in enumerate(zip(predictions, scored)):
        p["segment"] = s["segment"] = "fr" if i % 2 else "dé"
    alerts = _feed(mon, predictions, scored)
    later, later_scored = stream(600, seed=4, model="houses", version=2,
                                 start_ts=predictions[-1]["ts"] + 700)
    return mon, alerts + _feed(mon, later, later_scored)


def _long_ids() -> tuple[Monitor, list[dict[str, Any]]]:
    """A drift in one long-named segment of a long-named model."""
    mon = Monitor(MonitorConfig.from_dict({"defaults": {"segments": True}}))
    predictions, scored = stream(8_000, seed=5, drift_at=4_000, model=LONG_MODEL)
    for p, s in zip(predictions, scored):
        p["segment"] = s["segment"] = LONG_SEGMENT
    return mon, _feed(mon, predictions, scored)


def _threshold_cleared() -> tuple[Monitor, list[dict[str, Any]]]:
    """An error rise that ends: concept_drift and metric_threshold fire, then clear."""
    config = MonitorConfig.from_dict({"defaults": {"cooldown": 1000.0,
                                                   "threshold": {"consecutive": 100}}})
    _, calm = stream(5_000, seed=9)
    _, bad = stream(5_000, seed=10, drift_at=0)
    _, calm2 = stream(5_000, seed=11)
    scored = calm + bad + calm2
    for i, p in enumerate(scored):  # one continuous event time
        p["label_ts"] = 1_700_000_000.0 + i * 0.1
    mon = Monitor(config)
    return mon, _feed(mon, [], scored)


def _covariate_shift() -> tuple[Monitor, list[dict[str, Any]]]:
    """Traffic moves along a feature named with control characters, labels 3,000
    predictions late: data, prediction, estimated, multivariate and concept drift."""
    X, y_hat, y = covariate_shift(20_000, 10_000, 0)
    predictions, scored = events(X, y_hat, y, label_delay=3_000, model="shift")
    for event in predictions + scored:
        event["features"] = {(HOSTILE_FEATURE if k == "x0" else k): v
                             for k, v in event["features"].items()}
    mon = Monitor(MonitorConfig.from_dict({"defaults": {"multivariate": {"enabled": True}}}))
    return mon, [a for _, a in run_delayed(mon, predictions, scored, label_delay=3_000)]


def _starved_unknown_version() -> tuple[Monitor, list[dict[str, Any]]]:
    """Predictions of an unknown version whose labels never come."""
    _, scored = stream(300, seed=13, model="starved")
    expired = [{**p, "expired_ts": p["ts"] + 86_400}
               for p in stream(400, seed=14, model="starved")[0]]
    for event in scored + expired:
        event["version"] = None
    mon = Monitor(MonitorConfig())
    return mon, mon.process_pairs(scored) + mon.process_expired(expired)


def _canary_rollback() -> list[dict[str, Any]]:
    """A promoted version that does worse than the one before: rolled back."""
    verdicts = feed(Canary(Source({1: TRUE, 2: BAD}), pairs=100),
                    pairs(TRUE, 1, 10, model="canary") + pairs(BAD, 2, 100, start=10,
                                                               model="canary"))
    return [alert_for(v) for v in verdicts if v.action == "rollback"]


@cache
def monitor_output() -> MonitorOutput:
    alerts: list[dict[str, Any]] = []
    monitors = []
    for scenario in (_segmented_drift_then_superseded, _long_ids, _threshold_cleared,
                     _covariate_shift, _starved_unknown_version):
        mon, made = scenario()
        monitors.append(mon)
        alerts += made
    alerts += _canary_rollback()
    # As MonitorAgent._publish writes them: metrics made finite, validated, encoded.
    wire = [encode(ALERT.validate({**a, "metrics": _finite_or_null(a["metrics"])}))
            for a in alerts]
    # As MonitorAgent.publish_metrics writes them: each version's report.
    records = [encode({**vm.report(), "input_offset": 0})
               for mon in monitors for vm in mon.versions.values()]
    return MonitorOutput(wire, records)

