"""The monitor: metrics, drift detectors and alert rules per (model, version).

Plain Python and numpy, no Kafka: the Faust agent in :mod:`driftline.agents.monitor.agent`
feeds it, tests and offline replay use it directly. Everything it computes is a
function of the order of its inputs only (event times, never the wall clock), so
replaying the same input gives the same numbers and the same alert ids; that is
how the agent survives kill -9 (see the README).

>>> from driftline.agents.monitor.config import MonitorConfig
>>> mon = Monitor(MonitorConfig())
>>> pairs = [{"prediction_id": str(i), "model": "m", "version": 1, "prediction": 1.0,
...           "label": 0.0, "error": 1.0, "features": {}, "ts": 0.0, "label_ts": float(i)}
...          for i in range(10)]
>>> mon.process_pairs(pairs)
[]
>>> mon.versions[("m", 1)].report()["rolling_mse"]
1.0
"""

from __future__ import annotations

import itertools
import math
import operator
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from driftline.agents.monitor.alerting import AlertBook, AlertKey
from driftline.agents.monitor.drift import ErrorDrift, PSIDrift
from driftline.agents.monitor.metrics import RollingErrors
from driftline.agents.monitor.config import ModelConfig, MonitorConfig

Alert = dict[str, Any]


class VersionMonitor:
    """Everything the monitor knows about one version of one model."""

    def __init__(self, model: str, version: int | None, config: ModelConfig,
                 alerts: AlertBook, baseline_mse: float | None = None) -> None:
        self.model, self.version, self.config = model, version, config
        self.alerts = alerts
        self.rolling = RollingErrors(config.window)
        # The version's own baseline (registry metadata) wins over the model's (config
        # file); without either, the first `baseline_pairs` pairs set it.
        self.baseline_mse = baseline_mse if baseline_mse is not None else config.baseline_mse
        self._baseline_sum = 0.0
        self._baseline_n = 0
        self.concept = ErrorDrift(config.concept_drift)
        self._above = 0  # pairs in a row above the limit
        self._good = 0   # pairs in a row at or under the resolve limit
        self.features: list[str] | None = None
        self.data_drift: PSIDrift | None = None
        self.prediction_drift = PSIDrift(["prediction"], config.data_drift)
        self._psi_over: dict[str, int] = {}
        self._psi_under: dict[str, int] = {}
        self.last_psi: dict[str, float] = {}
        self._outcomes: deque[int] = deque(maxlen=config.starvation.window)
        self._expired_in_window = 0
        self.n_predictions = 0
        self.n_expired = 0
        self.rejected = 0

    @property
    def classification(self) -> bool:
        return self.config.task == "classification"

    def _key(self, kind: str, feature: str | None = None) -> AlertKey:
        return AlertKey(self.model, self.version, kind, feature)

    def _metrics(self, rolling_mse: float, n_scored: int, **extra: float) -> dict[str, Any]:
        return {"rolling_mse": rolling_mse, "rolling_rmse": math.sqrt(rolling_mse),
                "baseline_mse": self.baseline_mse, "n_scored": n_scored, **extra}

    # --- scored pairs ------------------------------------------------------------

    def process_pairs(self, pairs: list[dict[str, Any]]) -> list[Alert]:
        preds = np.fromiter((p["prediction"] for p in pairs), float, len(pairs))
        labels = np.fromiter((p["label"] for p in pairs), float, len(pairs))
        if self.classification:
            ok = ((labels == 0) | (labels == 1)) & (preds >= 0) & (preds <= 1)
            if not ok.all():
                self.rejected += int((~ok).sum())
                pairs = [p for p, good in zip(pairs, ok) if good]
                preds, labels = preds[ok], labels[ok]
            if not pairs:
                return []
        with np.errstate(over="ignore"):
            sq = (preds - labels) ** 2
        finite = np.isfinite(sq)  # 1e200 - 0 is finite, its square is not
        if not finite.all():
            self.rejected += int((~finite).sum())
            pairs = [p for p, good in zip(pairs, finite) if good]
            preds, labels, sq = preds[finite], labels[finite], sq[finite]
            if not pairs:
                return []
        first = self.rolling.count
        rolling = self.rolling.extend(preds, labels).tolist()
        baseline_from = self._update_baseline(sq)
        errors = (np.abs(preds - labels) >= 0.5).astype(float) if self.classification else sq
        hits = self.concept.update_many(errors)
        out = self._starvation_outcomes(pairs, 0)
        changes = {i: (before, after) for i, before, after in hits}
        if self.baseline_mse is None and changes:
            self._good = 0
        events = [(i, 0) for i in changes]  # (position, 0 drift / 1 fire / 2 resolve)
        if self.baseline_mse is not None:
            # The rule applies once the baseline is set and the window is full.
            start = max(baseline_from, self.config.window - first - 1, 0)
            events += self._threshold_runs(rolling, start, sorted(changes))
        events.sort()
        for i, what in events:
            n = first + i + 1
            if what == 0:
                self._concept_drift(pairs[i], rolling[i], n, changes[i], out)
            elif what == 1:
                self._threshold_fire(pairs[i], rolling[i], n, out)
            else:
                self._threshold_resolve(pairs[i], rolling[i], n, out)
        return out

    def _threshold_runs(self, rolling: list[float], start: int,
                        resets: list[int]) -> list[tuple[int, int]]:
        """Positions where the rule fires (1) or resolves (2), for pairs ``start`` on.

        Fires after ``consecutive`` pairs in a row above ``factor`` x baseline; resolves
        after ``consecutive`` pairs in a row at or under ``resolve_factor`` x baseline
        (hysteresis). A detected rise of the error (``resets``) restarts the count of
        good pairs, so a drift episode resolves only on good pairs seen after it.
        Vectorised over runs; counts carry over, so batch boundaries change nothing."""
        if any(r < start for r in resets):
            self._good = 0
        if start >= len(rolling):
            return []
        assert self.baseline_mse is not None
        cfg = self.config.threshold
        values = np.asarray(rolling[start:])
        local_resets = [r - start for r in resets if r >= start]
        fires, self._above = _run_ends(values > cfg.factor * self.baseline_mse, self._above,
                                       cfg.consecutive, [])
        resolves, self._good = _run_ends(values <= cfg.resolve_factor * self.baseline_mse,
                                         self._good, cfg.consecutive, local_resets)
        return [(start + i, 1) for i in fires] + [(start + i, 2) for i in resolves]

    def _update_baseline(self, sq: np.ndarray) -> int:
        """Feed the first ``baseline_pairs`` squared errors; returns the batch index from
        which the baseline applies."""
        if self.baseline_mse is not None:
            return 0
        need = self.config.baseline_pairs - self._baseline_n
        take = sq[:need]
        self._baseline_sum += float(take.sum())
        self._baseline_n += len(take)
        if self._baseline_n == self.config.baseline_pairs:
            self.baseline_mse = self._baseline_sum / self._baseline_n
            return len(take)
        return len(sq)

    def _concept_drift(self, pair: dict, rolling_mse: float, n: int,
                       change: tuple[float | None, float | None], out: list[Alert]) -> None:
        what = "error rate" if self.classification else "squared error"
        if change[0] is not None and change[1] is not None:
            detail = f"saw the mean {what} rise from {change[0]:.4g} to {change[1]:.4g}"
        else:
            detail = f"saw the {what} rise"
        critical = self.baseline_mse is not None and rolling_mse > 2 * self.baseline_mse
        alert = self.alerts.fire(
            self._key("concept_drift"), ts=pair["label_ts"],
            severity="critical" if critical else "warning", detector=self.concept.name,
            metrics=self._metrics(rolling_mse, n),
            message=f"Concept drift on {self.model} {_v(self.version)}: {self.concept.name} "
                    f"{detail} after {n:,} pairs; rolling MSE {rolling_mse:.4g} vs baseline "
                    f"{_num(self.baseline_mse)}.")
        if alert:
            out.append(alert)

    def _threshold_fire(self, pair: dict, rolling_mse: float, n: int, out: list[Alert]) -> None:
        assert self.baseline_mse is not None
        ratio = rolling_mse / self.baseline_mse if self.baseline_mse else math.inf
        alert = self.alerts.fire(
            self._key("metric_threshold"), ts=pair["label_ts"],
            severity="critical" if ratio > 2 * self.config.threshold.factor else "warning",
            detector="threshold", metrics=self._metrics(rolling_mse, n),
            message=f"Rolling MSE of {self.model} {_v(self.version)} is {rolling_mse:.4g}, "
                    f"{ratio:.2f}x its baseline {self.baseline_mse:.4g}, for "
                    f"{self.config.threshold.consecutive} pairs in a row "
                    f"(limit {self.config.threshold.factor}x).")
        if alert:
            out.append(alert)

    def _threshold_resolve(self, pair: dict, rolling_mse: float, n: int,
                           out: list[Alert]) -> None:
        for kind in ("metric_threshold", "concept_drift"):
            alert = self.alerts.resolve(
                self._key(kind), ts=pair["label_ts"], metrics=self._metrics(rolling_mse, n),
                detector="threshold" if kind == "metric_threshold" else self.concept.name,
                message=f"Rolling MSE of {self.model} {_v(self.version)} is back to "
                        f"{rolling_mse:.4g} (baseline {self.baseline_mse:.4g}, resolve limit "
                        f"{self.config.threshold.resolve_factor}x) for "
                        f"{self.config.threshold.consecutive} pairs in a row.")
            if alert:
                out.append(alert)

    # --- predictions (no labels needed) ------------------------------------------

    def process_predictions(self, events: list[dict[str, Any]]) -> list[Alert]:
        self.n_predictions += len(events)
        out: list[Alert] = []
        if self.features is None:  # the version's first prediction names the columns
            self.features = sorted(events[0]["features"])
            self.data_drift = PSIDrift(self.features, self.config.data_drift)
            self._getter = operator.itemgetter(*self.features) if self.features else None
        names = self.features
        rows = self._rows([e["features"] for e in events])
        assert self.data_drift is not None
        if names:
            for check in self.data_drift.extend(rows):
                self._psi_rules("data_drift", names, check.psi, events[check.position], out)
        preds = np.fromiter((e["prediction"] for e in events), float, len(events))
        for check in self.prediction_drift.extend(preds.reshape(-1, 1)):
            self._psi_rules("prediction_drift", [None], check.psi, events[check.position], out)
        return out

    def _rows(self, features: list[dict[str, float]]) -> np.ndarray:
        """Events x columns, NaN where an event lacks a column."""
        names = self.features or []
        if not names:
            return np.empty((len(features), 0))
        get = self._getter
        try:  # the common case: every event has every column; one C call per event
            flat = itertools.chain.from_iterable(map(get, features)) if len(names) > 1 \
                else map(get, features)
            return np.fromiter(flat, float, len(features) * len(names)).reshape(
                len(features), len(names))
        except KeyError:
            return np.array([[f.get(n, math.nan) for n in names] for f in features],
                            float).reshape(len(features), len(names))

    def _psi_rules(self, kind: str, names: list[str | None], psi: np.ndarray,
                   event: dict, out: list[Alert]) -> None:
        cfg = self.config.data_drift
        for name, value in zip(names, psi.tolist()):
            label = name or "prediction"
            self.last_psi[label] = value
            key = self._key(kind, name)
            over = self._psi_over.get(label, 0)
            under = self._psi_under.get(label, 0)
            over, under = (over + 1, 0) if value > cfg.psi_threshold else (
                (0, under + 1) if value < cfg.psi_resolve else (0, 0))
            self._psi_over[label], self._psi_under[label] = over, under
            what = f"feature {name!r}" if name else "the prediction"
            if over >= cfg.consecutive and not self.alerts.is_firing(key):
                alert = self.alerts.fire(
                    key, ts=event["ts"], detector="psi", metrics=self._metrics_now(psi=value),
                    severity="critical" if value > 2 * cfg.psi_threshold else "warning",
                    message=f"{'Data' if name else 'Prediction'} drift on {self.model} "
                            f"{_v(self.version)}: PSI of {what} is {value:.3f} over the last "
                            f"{cfg.window} predictions vs the first {cfg.reference_size} "
                            f"(limit {cfg.psi_threshold}).")
                if alert:
                    out.append(alert)
            elif under >= cfg.consecutive and self.alerts.is_firing(key):
                alert = self.alerts.resolve(
                    key, ts=event["ts"], detector="psi", metrics=self._metrics_now(psi=value),
                    message=f"PSI of {what} on {self.model} {_v(self.version)} is back to "
                            f"{value:.3f} (below {cfg.psi_resolve}).")
                if alert:
                    out.append(alert)

    def _metrics_now(self, **extra: float) -> dict[str, Any]:
        mse = self.rolling.mse()
        return {"rolling_mse": mse, "baseline_mse": self.baseline_mse,
                "n_scored": self.rolling.count, **extra}

    # --- label starvation --------------------------------------------------------

    def process_expired(self, events: list[dict[str, Any]]) -> list[Alert]:
        self.n_expired += len(events)
        return self._starvation_outcomes(events, 1)

    def _starvation_outcomes(self, events: list[dict], outcome: int) -> list[Alert]:
        """Scored pairs (outcome 0) and expired predictions (1) slide the window."""
        window = self._outcomes
        key = self._key("label_starvation")
        if outcome == 0 and not self.alerts.is_firing(key):
            # A scored pair can only lower the share, and nothing is firing: no alert
            # can come out of this batch, so slide the window in bulk.
            dropped = max(0, len(window) + len(events) - window.maxlen)
            self._expired_in_window -= sum(itertools.islice(window, 0, dropped))
            window.extend(itertools.repeat(0, len(events)))
            return []
        cfg = self.config.starvation
        out: list[Alert] = []
        for event in events:
            if len(window) == window.maxlen:
                self._expired_in_window -= window[0]
            window.append(outcome)
            self._expired_in_window += outcome
            if len(window) < cfg.min_events:
                continue
            share = self._expired_in_window / len(window)
            ts = event.get("expired_ts", event.get("label_ts", 0.0))
            firing = self.alerts.is_firing(key)
            if not firing and share > cfg.threshold:
                alert = self.alerts.fire(
                    key, ts=ts,
                    severity="critical" if share > (1 + cfg.threshold) / 2 else "warning",
                    detector="expiry", metrics=self._metrics_now(expired_share=share),
                    message=f"Label starvation on {self.model} {_v(self.version)}: "
                            f"{share:.0%} of the last {len(window)} predictions expired "
                            f"without a label (limit {cfg.threshold:.0%}).")
                if alert:
                    out.append(alert)
            elif firing and share <= cfg.threshold / 2:
                alert = self.alerts.resolve(
                    key, ts=ts, detector="expiry", metrics=self._metrics_now(expired_share=share),
                    message=f"Labels arrive again for {self.model} {_v(self.version)}: "
                            f"{share:.0%} of the last {len(window)} predictions expired.")
                if alert:
                    out.append(alert)
        return out

    # --- reading -----------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """Current metrics, baseline, detector and drift state of this version."""
        metrics = (self.rolling.classification_report() if self.classification else {})
        return {"model": self.model, "version": self.version, "task": self.config.task,
                **self.rolling.report(), **metrics, "baseline_mse": self.baseline_mse,
                "n_scored": self.rolling.count, "n_predictions": self.n_predictions,
                "n_expired": self.n_expired, "detector": self.concept.name,
                "drift_detections": self.concept.detections, "psi": dict(self.last_psi)}


BaselineLookup = Callable[[str, int | None], float | None]


class Monitor:
    """All models and versions; feed it scored pairs, predictions and expirations in order.

    ``baselines(model, version)``, when given, supplies a version's baseline MSE (the
    agent reads it from the registry's metadata), asked once per version.
    """

    def __init__(self, config: MonitorConfig, baselines: BaselineLookup | None = None) -> None:
        self.config = config
        self.baselines = baselines
        self.versions: dict[tuple[str, int | None], VersionMonitor] = {}
        self.books: dict[str, AlertBook] = {}

    def version(self, model: str, version: int | None) -> VersionMonitor:
        key = (model, version)
        vm = self.versions.get(key)
        if vm is None:
            cfg = self.config.for_model(model)
            book = self.books.setdefault(model, AlertBook(cfg.cooldown))
            baseline = self.baselines(model, version) if self.baselines else None
            vm = self.versions[key] = VersionMonitor(model, version, cfg, book, baseline)
        return vm

    def process_pairs(self, pairs: Iterable[dict[str, Any]]) -> list[Alert]:
        return self._dispatch(pairs, VersionMonitor.process_pairs)

    def process_predictions(self, events: Iterable[dict[str, Any]]) -> list[Alert]:
        return self._dispatch(events, VersionMonitor.process_predictions)

    def process_expired(self, events: Iterable[dict[str, Any]]) -> list[Alert]:
        return self._dispatch(events, VersionMonitor.process_expired)

    def _dispatch(self, events: Iterable[dict[str, Any]], method) -> list[Alert]:
        """Each version gets its events in their order; versions share no state."""
        events = events if isinstance(events, list) else list(events)
        keys = [(ev["model"], ev.get("version")) for ev in events]
        groups: dict[tuple[str, int | None], list[dict[str, Any]]]
        if keys and keys.count(keys[0]) == len(keys):  # the common case: one version
            groups = {keys[0]: events}
        else:
            groups = {}
            for key, ev in zip(keys, events):
                groups.setdefault(key, []).append(ev)
        out: list[Alert] = []
        for (model, version), group in groups.items():
            out.extend(method(self.version(model, version), group))
        return out


def _run_ends(flags: np.ndarray, carried: int, needed: int,
              resets: list[int]) -> tuple[list[int], int]:
    """Positions where a run of True reaches ``needed`` (the run may have started
    ``carried`` items before ``flags``; a reset position starts a run afresh), and the
    length of the run still open at the end."""
    cuts = set((np.flatnonzero(flags[1:] != flags[:-1]) + 1).tolist()) | set(resets)
    bounds = sorted(cuts | {0, len(flags)})
    hits = []
    for s, e in zip(bounds, bounds[1:]):
        if s in resets:
            carried = 0
        if not flags[s]:
            carried = 0
            continue
        if carried < needed <= carried + (e - s):
            hits.append(s + needed - carried - 1)
        carried += e - s
    return hits, carried


def _v(version: int | None) -> str:
    return "(unknown version)" if version is None else f"v{version}"


def _num(value: float | None) -> str:
    return "not set yet" if value is None else f"{value:.4g}"
