"""``driftline replay``: the monitor over a historical log, offline, with a report.

The same code as the streaming path - the join's :class:`PartitionJoin` and the
monitor's :class:`Monitor` - fed from a file in its order instead of from Kafka,
so a user can tune thresholds (``DRIFTLINE_MONITOR_CONFIG``) before going live and
get the alerts the worker would publish. Expiry runs on the events' own times
(the worker uses the wall clock), so label-starvation alerts of an old log are
the ones it would have raised live.

The report: ``alerts.json`` (the alert events), ``summary.json`` (per model
version: the monitor's report, with its estimates and, with segments on, each
segment's report) and ``report.png`` (rolling MSE per version over
time, with its baseline, the drift points and the alerts marked).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import orjson

from driftline.agents.join.state import PartitionJoin
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.core import Monitor
from driftline.agents.monitor.refusals import TASK_MISMATCH
from driftline.eventfile import Row
from driftline.models.wire import Label, Prediction
from driftline.models.wire.events import as_dict

CHUNK = 250  # pairs per monitor call: also the resolution of the plotted series


@dataclass
class Point:
    ts: float
    rolling_mse: float
    n_scored: int
    baseline_mse: float | None


@dataclass
class ReplayResult:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    series: dict[tuple[str, int | None], list[Point]] = field(
        default_factory=lambda: defaultdict(list))
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    bad_rows: list[Row] = field(default_factory=list)
    # (model, version) -> its explanation (models/explanation.py), when the registry was asked
    explanations: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    events: int = 0
    scored: int = 0
    expired: int = 0


# A replay's reference profiles' rows, by what each applies to: (model, version), else
# (model, None) for every version of the model, else (None, None) for every version.
ReferenceRows = dict[tuple[str | None, int | None], list[dict[str, Any]]]


class References:
    """The reference profiles of a replay: what the worker reads from the registry
    (``replay --reference [MODEL[:VERSION]=]FILE``), the most specific one; no baselines.

    >>> refs = References({("houses", 2): [{"x": 2}], (None, None): [{"x": 0}]})
    >>> refs.reference("houses", 2), refs.reference("houses", 1), refs.reference("b", None)
    ([{'x': 2}], [{'x': 0}], [{'x': 0}])
    """

    def __init__(self, rows: ReferenceRows) -> None:
        self.rows = rows

    def __call__(self, model: str, version: int | None) -> float | None:
        return None

    def reference(self, model: str, version: int | None) -> list[dict[str, Any]] | None:
        rows = self.rows
        for key in ((model, version), (model, None), (None, None)):
            if key in rows:
                return rows[key]
        return None


class Replay:
    """Feed rows in order; :meth:`finish` returns the result. ``references``: the rows of
    versions' reference profiles, by (model, version)."""

    def __init__(self, config: MonitorConfig, *, ttl: float = 86_400.0,
                 references: ReferenceRows | None = None) -> None:
        self.monitor = Monitor(config, References(references) if references else None)
        self.join = PartitionJoin(ttl, dedupe_window=math.inf)
        self.result = ReplayResult()
        self._predictions: list[dict[str, Any]] = []
        self._now = -math.inf
        self._next_sweep = -math.inf
        self.ttl = ttl

    def feed(self, rows: Iterable[Row]) -> Replay:
        for row in rows:
            if row.error is not None:
                self.result.bad_rows.append(row)
                continue
            self.result.events += 1
            event = dict(row.event or {})
            self._now = max(self._now, event.get("ts", self._now))
            event.setdefault("ts", self._now if math.isfinite(self._now) else 0.0)
            # Validated by the event file already: the join takes them as the wire's types.
            if row.kind == "prediction":
                if event.get("features") is None:
                    event["features"] = {}
                self._predictions.append(event)
                self.join.add_prediction(Prediction(**event), self._now)
                if len(self._predictions) >= CHUNK:
                    self._flush_predictions()
            else:
                self.join.add_label(Label(**event), self._now)
            if self.join.undrained >= CHUNK:
                self._flush_pairs()
            if self._now >= self._next_sweep:
                self._sweep()
        return self

    def finish(self) -> ReplayResult:
        self._flush_predictions()
        self._flush_pairs()
        for (model, version), vm in self.monitor.versions.items():
            self.result.versions[f"{model} v{version}"] = vm.report()
        return self.result

    def _flush_predictions(self) -> None:
        if self._predictions:
            self.result.alerts.extend(self.monitor.process_predictions(self._predictions))
            self._predictions = []

    def _flush_pairs(self) -> None:
        self._flush_predictions()  # what came before the pairs is applied first
        scored, _ = self.join.drain()
        if not scored:
            return
        pairs = [as_dict(pair) for pair in scored]  # what the monitor reads off monitor-input
        self.result.scored += len(pairs)
        self.result.alerts.extend(self.monitor.process_pairs(pairs))
        touched: dict[tuple[str, int | None], float] = {}
        for pair in pairs:
            touched[(pair["model"], pair.get("version"))] = pair["label_ts"]
        for key, ts in touched.items():
            vm = self.monitor.versions.get(key)
            mse = vm.rolling.mse() if vm is not None else None
            if vm is not None and vm.rolling.count and mse is not None:
                self.result.series[key].append(
                    Point(ts, mse, vm.rolling.count, vm.baseline_mse))

    def _sweep(self) -> None:
        if not math.isfinite(self._now):
            return
        self._flush_pairs()
        expired = self.join.expire(self._now)
        if expired.predictions:
            events = [{**as_dict(ev), "expired_ts": self._now} for ev in expired.predictions]
            self.result.expired += len(events)
            self.result.alerts.extend(self.monitor.process_expired(events))
        self._next_sweep = self._now + min(self.ttl, 60.0)


def write_report(result: ReplayResult, out: Path) -> dict[str, Path]:
    """alerts.json, summary.json and report.png under ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"alerts": out / "alerts.json", "summary": out / "summary.json",
             "plot": out / "report.png"}
    paths["alerts"].write_bytes(orjson.dumps(result.alerts, option=orjson.OPT_INDENT_2))
    paths["summary"].write_bytes(orjson.dumps({
        "events": result.events, "scored": result.scored, "expired": result.expired,
        "bad_rows": len(result.bad_rows), "alerts": len(result.alerts),
        "versions": result.versions}, option=orjson.OPT_INDENT_2))
    plot(result, paths["plot"])
    return paths


def refused_by_reason(versions: dict[str, dict[str, Any]]) -> dict[str, int]:
    """The pairs the monitor refused over every version, by reason (summary.json's)."""
    out: dict[str, int] = {}
    for report in versions.values():
        for reason, n in (report.get("refused_pairs") or {}).items():
            out[reason] = out.get(reason, 0) + n
    return out


def refusal_lines(versions: dict[str, dict[str, Any]]) -> list[str]:
    """The pairs the monitor refused, by version and reason, and what to do about a task
    that does not fit (none: an empty list). A refused pair is in ``scored`` but in no
    metric, so a replay that says nothing of them reads as a quiet model.

    >>> print("\\n".join(refusal_lines({"intents v1": {"model": "intents", "task":
    ...     "regression", "refused_pairs": {"class_prediction": 6000}}})))
    ... # doctest: +NORMALIZE_WHITESPACE
    refused 6,000 scored pairs that do not fit their model (summary.json: refused_pairs):
      intents v1 (regression): 6,000 class_prediction
      intents sends classes: if it is a multiclass model, replay with --task
      intents=multiclass (or task = "multiclass" in [models.intents] of the monitor config)
    """
    lines: list[str] = []
    hints: dict[str, str] = {}
    for name, report in versions.items():
        refused = report.get("refused_pairs") or {}
        if not refused:
            continue
        model, task = report.get("model", name), report.get("task", "regression")
        counts = ", ".join(f"{n:,} {reason}" for reason, n in
                           sorted(refused.items(), key=lambda item: (-item[1], item[0])))
        lines.append(f"  {name} ({task}): {counts}")
        if not TASK_MISMATCH & set(refused) or model in hints:
            continue
        if task == "regression":  # the default: --task gives a model without one its task
            hints[model] = (f"  {model} sends classes: if it is a multiclass model, replay "
                            f"with --task {model}=multiclass (or task = \"multiclass\" in "
                            f"[models.{model}] of the monitor config)")
        else:
            hints[model] = (f"  {model}'s pairs do not fit a {task} model: give {model} "
                            f"its task in [models.{model}] of the monitor config (or with "
                            f"--task {model}=TASK where the config gives none)")
    if not lines:
        return []
    total = sum(refused_by_reason(versions).values())
    return [f"refused {total:,} scored pairs that do not fit their model (summary.json: "
            f"refused_pairs):", *lines, *hints.values()]


FEATURE_LINES = 10  # features printed per version, the nearest their drift limit first


def feature_lines(name: str, report: dict[str, Any]) -> list[str]:
    """What a version's features look like at the end of a replay, one line each: type,
    drift statistic and limit, missing share (the rest are in summary.json).

    >>> feature_lines("m v1", {"features": {"x": {"type": "numeric", "statistic": "psi",
    ...     "value": 0.02, "limit": 0.08, "missing_share": 0.01}, "id": {"type":
    ...     "categorical", "idlike": True, "categories": 1000, "capped": True}}})
    ... # doctest: +NORMALIZE_WHITESPACE
    ['m v1 features:', '  x  numeric  psi 0.02 / limit 0.08  missing 1.0%',
     '  id  categorical (1000 categories, capped)  an identifier: not drift-tested']
    """
    features = report.get("features") or {}
    if not features:
        return []

    def nearness(item: tuple[str, dict[str, Any]]) -> tuple[float, str]:
        entry = item[1]
        return (-(entry["value"] / entry["limit"]) if entry.get("limit") else 0.0, item[0])
    lines = [f"{name} features:"]
    ranked = sorted(features.items(), key=nearness)
    for feature, entry in ranked[:FEATURE_LINES]:
        kind = entry["type"]
        if "categories" in entry:
            kind += f" ({entry['categories']} categories{', capped' if entry['capped'] else ''})"
        parts = [f"  {feature}", kind]
        if entry.get("idlike"):
            parts.append("an identifier: not drift-tested")
        elif "value" in entry:
            parts.append(f"{entry['statistic']} {entry['value']:.3g} / limit {entry['limit']:.3g}")
        if "missing_share" in entry:
            parts.append(f"missing {entry['missing_share']:.1%}")
        lines.append("  ".join(parts))
    if len(ranked) > FEATURE_LINES:
        lines.append(f"  ... and {len(ranked) - FEATURE_LINES} more in summary.json")
    return lines


def plot(result: ReplayResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from datetime import datetime

    import matplotlib.pyplot as plt

    models = sorted({model for model, _ in result.series})
    explained = bool(result.explanations)
    fig, axes = plt.subplots(max(1, len(models)), 2 if explained else 1,
                             figsize=(16 if explained else 11, 3.6 * max(1, len(models))),
                             squeeze=False,
                             gridspec_kw={"width_ratios": [11, 5]} if explained else None)
    if explained:
        for ax, model in zip(axes[:, 1], models):
            plot_explanations(ax, model, result.explanations)

    def when(ts: float) -> datetime:
        return datetime.fromtimestamp(ts, tz=UTC)

    for ax, model in zip(axes[:, 0], models):
        keys = sorted((k for k in result.series if k[0] == model),
                      key=lambda k: (k[1] is None, k[1] or 0))
        for key in keys:
            points = result.series[key]
            label = f"v{key[1]}" if key[1] is not None else "unknown version"
            line, = ax.plot([when(p.ts) for p in points], [p.rolling_mse for p in points],
                            label=f"{label} rolling MSE", linewidth=1.4)
            baseline = next((p.baseline_mse for p in reversed(points)
                             if p.baseline_mse is not None), None)
            if baseline is not None:
                ax.axhline(baseline, color=line.get_color(), linestyle=":", linewidth=1,
                           label=f"{label} baseline {baseline:.3g}")
        top = ax.get_ylim()[1]
        for alert in result.alerts:
            if alert["model"] != model or alert["status"] != "firing":
                continue
            drift = alert["kind"] == "concept_drift"
            ax.axvline(when(alert["ts"]), color="tab:red" if drift else "tab:orange",
                       linestyle="--" if drift else ":", linewidth=1)
            ax.annotate(alert["kind"] + (f" {alert['feature']}" if alert.get("feature") else "")
                        + (f" [{alert['segment']}]" if alert.get("segment") else ""),
                        (when(alert["ts"]), top), rotation=90, fontsize=7, va="top",
                        ha="right", color="tab:red" if drift else "tab:orange")
        ax.set_title(f"{model}: rolling MSE per version (dashed red: concept drift, dotted "
                     f"orange: other alerts)", fontsize=10)
        ax.set_ylabel("rolling MSE")
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
    if not models:
        axes[0, 0].text(0.5, 0.5, "no scored pairs in this log", ha="center", va="center")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_explanations(ax: Any, model: str,
                      explanations: dict[tuple[str, int], dict[str, Any]]) -> None:
    """Each version's share of the prediction variance per feature, as grouped bars."""
    versions = sorted(v for m, v in explanations if m == model)
    shares: dict[str, dict[int, float]] = {}
    for version in versions:
        for f in explanations[(model, version)].get("features", []):
            if f.get("variance_share") is not None:
                shares.setdefault(f["feature"], {})[version] = f["variance_share"]
    names = sorted(shares, key=lambda n: -max(abs(s) for s in shares[n].values()))[:12]
    height = 0.8 / max(1, len(versions))
    for i, version in enumerate(versions):
        ax.barh([j + i * height for j in range(len(names))],
                [shares[n].get(version, 0.0) for n in names], height=height,
                label=f"v{version}")
    ax.set_yticks([j + height * (len(versions) - 1) / 2 for j in range(len(names))], names,
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of the prediction variance (training rows)")
    ax.set_title(f"{model}: what each version uses", fontsize=10)
    if versions:
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no explanation in the registry", ha="center", va="center",
                transform=ax.transAxes)
    ax.grid(alpha=0.3, axis="x")


def registry_explanations(result: ReplayResult, registry: Any) -> list[str]:
    """Fill ``result.explanations`` from ``registry`` for the versions the replay saw;
    returns what could not be read (one line each)."""
    from driftline.errors import ArtifactError, RegistryError
    from driftline.models.explanation import stored

    problems = []
    seen = sorted((model, version) for model, version in result.series if version is not None)
    for model, version in seen:
        try:
            result.explanations[(model, version)] = stored(registry.load(model,
                                                                         version=version))
        except (RegistryError, ArtifactError) as exc:
            problems.append(f"{model} v{version}: {exc}")
    return problems
