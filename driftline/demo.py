"""``driftline demo``: the whole loop on this machine, in about a minute.

Starts the embedded stack, a worker and a trainer (supervised child processes),
bootstraps model v1 on the simulated world before its drift, then runs the simulated
production service through the drift. It shows, live (rich) or as log lines
(``--no-live``): events/s, the rolling metric per version against its baseline,
alerts as they fire, retrain requests and model events. It ends with a summary -
when the drift was detected, how long retraining and promotion took, the metric
before, during and after - and stops everything it started.

The model is ``houses`` (a regression, rolling MSE) in the regression scenarios,
``churn`` in ``binary`` (a logistic model: Brier score, the mean squared error of its
probabilities) and ``intents`` in ``multiclass`` (a softmax model: error rate). Their
task comes from the registry: the versions say what they are.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from driftline.app import topic_configs, topics_to_create
from driftline.kafka import client_options, ensure_topics, wait_for_groups
from driftline.models.losses import BASELINE, NAMES
from driftline.models.wire import unbatch
from driftline.settings import Settings


@dataclass
class Seen:
    """What the demo has read back from the topics."""

    # Losses by phase, from the scored pairs (the row index is in the id): squared errors
    # (a binary model's: of its probability), a multiclass model's 0/1 errors.
    before: deque = field(default_factory=lambda: deque(maxlen=1000))  # v1, before the drift
    during: deque = field(default_factory=lambda: deque(maxlen=1000))  # v1, after the drift
    after: dict[int, deque] = field(default_factory=dict)              # newer versions
    metrics: dict[int | None, dict[str, Any]] = field(default_factory=dict)  # latest per version
    timeline: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # in arrival order
    alert_published: dict[str, float] = field(default_factory=dict)  # alert id -> Kafka time
    alerts: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    model_events: list[dict[str, Any]] = field(default_factory=list)


class Watcher:
    """Reads metrics, alerts, retrain requests and model events as they appear."""

    def __init__(self, settings: Settings, drift_at: int, model: str = "houses") -> None:
        self.settings = settings
        self.drift_at = drift_at
        self.model = model
        self.seen = Seen()
        self.topics = {settings.topic(n): n for n in ("metrics", "alerts", "retrain", "models",
                                                      "scored")}

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(**client_options(self.settings),
                                    group_id=None, auto_offset_reset="earliest",
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(t, p) for t in self.topics
                             for p in range(self.settings.partitions)])
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for tp, records in batches.items():
                    for r in records:
                        for value in unbatch(r.value):  # scored pairs come in arrays
                            self._apply(self.topics[tp.topic], value, r.timestamp / 1000)
        finally:
            await consumer.stop()

    def _apply(self, kind: str, value: dict[str, Any], published: float) -> None:
        seen = self.seen
        if kind == "scored":
            row = int(value["prediction_id"].rsplit("-", 1)[1])
            error = (value["error"] ** 2 if value["error"] is not None
                     else float(value["prediction"] != value["label"]))
            if value["version"] != 1:
                seen.after.setdefault(value["version"], deque(maxlen=1000)).append(error)
            elif row >= self.drift_at:
                seen.during.append(error)
            elif row >= self.drift_at - 1000:
                seen.before.append(error)
        elif kind == "metrics":
            if value["model"] == self.model:
                seen.metrics[value["version"]] = value
        else:
            if kind == "alerts":
                seen.alert_published[value["alert_id"]] = published
            {"alerts": seen.alerts, "retrain": seen.requests,
             "models": seen.model_events}[kind].append(value)
            seen.timeline.append((kind, value))

    # --- what the summary says -----------------------------------------------------

    def first_drift_alert(self) -> dict[str, Any] | None:
        return next((a for a in self.seen.alerts if a["version"] == 1 and a["status"] == "firing"
                     and a["kind"] in ("concept_drift", "metric_threshold")), None)

    def settled(self, labels: int) -> bool:
        """Every pair scored, and the trainer has decided (or there was nothing to decide)."""
        if sum(m["n_scored"] for m in self.seen.metrics.values()) < labels:
            return False
        decided = any(e["version"] > 1 and e["event"] in ("promoted", "rejected")
                      for e in self.seen.model_events)
        return decided or self.first_drift_alert() is None

    def promotion(self) -> dict[str, Any] | None:
        return next((e for e in self.seen.model_events
                     if e["event"] == "promoted" and e["version"] > 1), None)


def summary(watcher: Watcher, drift_at: int, drift_ts: float | None = None,
            task: str = "regression") -> dict[str, Any]:
    seen = watcher.seen
    alert = watcher.first_drift_alert()
    promoted = watcher.promotion()
    after = seen.after.get(promoted["version"]) if promoted else None
    return {
        "model": watcher.model,
        "task": task,
        "metric": NAMES[BASELINE[task]],  # what mse_before, _during and _after hold
        "drift_at_pair": drift_at,
        "detected": alert is not None,
        "detection_kind": alert["kind"] if alert else None,
        # In time: from the first post-drift label to the alert's publication. (The alert's
        # own ts is its pair's label time, and that pair can be an older one that came late
        # from another partition; n_scored likewise counts pairs in arrival order.)
        "detection_delay_s": round(seen.alert_published[alert["alert_id"]] - drift_ts, 2)
        if alert and drift_ts else None,
        "detection_at_pair": alert["metrics"]["n_scored"] if alert else None,
        "retrain_requests": len(seen.requests),
        "promoted_version": promoted["version"] if promoted else None,
        "alert_to_promotion_s": round(promoted["ts"] - seen.alert_published[alert["alert_id"]], 2)
        if alert and promoted else None,
        "mse_before": _mean(seen.before),
        "mse_during": _mean(seen.during),
        "mse_after": _mean(after),
        "pairs_after": seen.metrics.get(promoted["version"], {}).get("n_scored", 0)
        if promoted else 0,
        "alerts": [a["alert_id"] for a in seen.alerts],
        "open_alerts": _open(seen.alerts),
        "superseded": [a["alert_id"] for a in seen.alerts if a.get("reason") == "superseded"],
    }


def _open(alerts: list[dict[str, Any]]) -> list[str]:
    """Ids of the alerts whose episode's latest event is still ``firing``."""
    last: dict[str, dict[str, Any]] = {}
    for a in alerts:
        last[a["alert_id"].rsplit(".", 1)[0]] = a  # the id without its status
    return [a["alert_id"] for a in last.values() if a["status"] == "firing"]


def _mean(values) -> float | None:
    return sum(values) / len(values) if values else None


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def summary_lines(s: dict[str, Any]) -> list[str]:
    num = _num
    lines = [f"drift injected at pair {s['drift_at_pair']:,}"]
    if s["detected"]:
        lines.append(f"drift alert published {s['detection_delay_s']:.1f} s after the first "
                     f"post-drift label ({s['detection_kind']} at v1's pair "
                     f"{s['detection_at_pair']:,})")
    else:
        lines.append("drift NOT detected")
    if s["promoted_version"]:
        lines.append(f"retrained and promoted v{s['promoted_version']} in "
                     f"{s['alert_to_promotion_s']:.1f} s after the alert "
                     f"({s['retrain_requests']} retrain request)")
    else:
        lines.append(f"no new version promoted ({s['retrain_requests']} retrain requests)")
    if "open_alerts" in s:
        lines.append(f"open alerts at the end: {len(s['open_alerts'])}"
                     + (f" ({len(s['superseded'])} of an older version resolved as superseded)"
                        if s["superseded"] else ""))
    lines.append(f"{s.get('metric', 'MSE')} of the last 1,000 pairs: before the drift "
                 f"{num(s['mse_before'])} (v1), "
                 f"during {num(s['mse_during'])} (v1 after the drift), after "
                 f"{num(s['mse_after'])} (v{s['promoted_version'] or '?'}, "
                 f"{s['pairs_after']:,} pairs scored)")
    return lines


async def run_demo(settings: Settings, *, events: int, seed: int, scenario: str, live: bool,
                   rate: float, echo) -> dict[str, Any]:
    """The demo against ``settings`` (a running stack, worker and trainer)."""
    from driftline.model_client import ModelClient
    from driftline.model_events import KafkaModelEvents
    from driftline.models.registry import ModelRegistry
    from driftline.publisher import Publisher
    from driftline.simulate import ProductionService, World, bootstrap, model_for

    drift_at = events // 3
    world = World(scenario, drift_at=drift_at, span=max(events // 6, 1), seed=seed)
    model = model_for(scenario)
    await ensure_topics(settings, topics_to_create(settings), configs=topic_configs(settings))
    registry = ModelRegistry.from_settings(settings, actor="demo",
                                           on_event=KafkaModelEvents(settings=settings))
    try:
        await asyncio.to_thread(bootstrap, registry, model, world)
    finally:
        await asyncio.to_thread(registry.close)
    # Serving starts once the worker and the trainer own their partitions, as in production.
    await wait_for_groups(settings, [settings.group_id, settings.trainer_group_id])
    client = await asyncio.to_thread(ModelClient.from_url, settings.redis_url, model,
                                     prefix=settings.registry_prefix, poll_interval=1.0)
    watcher = Watcher(settings, drift_at, model)
    watching = asyncio.create_task(watcher.run())
    view = LiveView(watcher, events, live, echo, NAMES[BASELINE[world.task]])
    started = time.monotonic()
    try:
        async with Publisher(settings=settings) as pub:
            service = ProductionService(pub, lambda: client.model, world, model=model,
                                        label_delay=200, rate=rate)
            showing = asyncio.create_task(view.run(service, started))
            try:
                await service.run(events, finish=False)
                # Production goes on while the trainer works: keep serving (at most 45 s)
                # until a promoted version has made 2,000 predictions, so that "after"
                # has something to show.
                until = time.monotonic() + 45
                while time.monotonic() < until:
                    promoted = watcher.promotion()
                    if promoted is not None:
                        made, v2, deadline = service.stats.by_version, promoted["version"], until

                        def v2_served(made: Any = made, v2: Any = v2,
                                      deadline: float = deadline) -> bool:
                            return time.monotonic() > deadline or made.get(v2, 0) >= 2_000

                        await service.run(int(rate * 45), finish=False, until=v2_served)
                        break
                    if watcher.settled(service.stats.labels):
                        break
                    if watcher.first_drift_alert() is not None:
                        await service.run(service.step, finish=False)
                    else:
                        await asyncio.sleep(0.25)
                await service.run(0)  # the last labels, then flush
                # Let the worker catch up and the trainer decide (bounded).
                deadline = time.monotonic() + 45
                while time.monotonic() < deadline and not watcher.settled(service.stats.labels):
                    await asyncio.sleep(0.25)
                await asyncio.sleep(settings.metrics_interval * 2)
            finally:
                view.stop()
                await showing
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        await asyncio.to_thread(client.close)
    result = summary(watcher, drift_at, service.stats.drift_ts, world.task)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


class LiveView:
    """Renders progress with rich (``live``) or as a log line every 2 s."""

    def __init__(self, watcher: Watcher, events: int, live: bool, echo,
                 metric: str = "MSE") -> None:
        self.watcher = watcher
        self.metric = metric
        self.events = events
        self.live = live
        self.echo = echo
        self._stop = asyncio.Event()
        self._printed = 0

    def stop(self) -> None:
        self._stop.set()

    async def run(self, service, started: float) -> None:
        if self.live:
            from rich.live import Live

            with Live(self._render(service, started), refresh_per_second=4,
                      transient=False) as live:
                while not self._stop.is_set():
                    live.update(self._render(service, started))
                    await _wait(self._stop, 0.25)
                live.update(self._render(service, started))
            return
        while not self._stop.is_set():
            self._log(service, started)
            await _wait(self._stop, 2.0)
        self._log(service, started)

    def _log(self, service, started: float) -> None:
        elapsed = time.monotonic() - started
        seen = self.watcher.seen
        versions = "; ".join(
            f"v{v}: {m['n_scored']:,} pairs, {self.metric} {_num(m['rolling_mse'])} "
            f"(baseline {_num(m['baseline_mse'])})"
            for v, m in sorted(seen.metrics.items(), key=lambda kv: kv[0] or 0))
        self.echo(f"[{elapsed:5.1f}s] published {service.stats.predictions:,}/{self.events:,} "
                  f"predictions ({service.stats.predictions / max(elapsed, 1e-9):,.0f}/s) | "
                  f"{versions or 'waiting for the first metrics'}")
        for kind, item in seen.timeline[self._printed:]:
            self.echo(f"        {_describe(kind, item)}")
        self._printed = len(seen.timeline)

    def _render(self, service, started: float):
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        elapsed = time.monotonic() - started
        seen = self.watcher.seen
        table = Table(title=f"model {self.watcher.model}", expand=True)
        for column in ("version", "pairs scored", f"rolling {self.metric}",
                       f"baseline {self.metric}", "vs baseline"):
            table.add_column(column, justify="right")
        for version, m in sorted(seen.metrics.items(), key=lambda kv: kv[0] or 0):
            ratio = (m["rolling_mse"] / m["baseline_mse"]
                     if m.get("baseline_mse") and m.get("rolling_mse") is not None else None)
            style = "red" if ratio and ratio > 1.5 else "green"
            table.add_row(f"v{version}", f"{m['n_scored']:,}", _num(m["rolling_mse"]),
                          _num(m["baseline_mse"]),
                          f"[{style}]{ratio:.2f}x[/]" if ratio else "-")
        colour = {"alerts": "yellow", "retrain": "cyan", "models": "green"}
        happenings = [f"[{colour[kind]}]{_describe(kind, item)}[/]"
                      for kind, item in seen.timeline]
        header = (f"published {service.stats.predictions:,} / {self.events:,} predictions  "
                  f"{service.stats.predictions / max(elapsed, 1e-9):,.0f}/s  "
                  f"elapsed {elapsed:.0f}s")
        return Group(header, ProgressBar(total=self.events, completed=service.stats.predictions),
                     table, Panel("\n".join(happenings[-8:]) or "nothing yet",
                                  title="alerts, retrains, model events"))


def _describe(kind: str, item: dict[str, Any]) -> str:
    if kind == "alerts":
        return f"alert {item['alert_id']}: {item['message']}"
    if kind == "retrain":
        return f"retrain request {item['request_id']} (base v{item['base_version']})"
    metrics = item.get("metrics") or {}
    # The holdout loss the trainer judged by: MSE, or a classifier's (log loss by default)
    metric = next((m for m in ("mse", "log_loss", "brier", "error_rate") if m in metrics), None)
    if metric is None or metrics[metric] is None:
        return f"model {item['model']} v{item['version']} {item['event']}"
    name = "MSE" if metric == "mse" else metric.replace("_", " ")
    champion = metrics.get(f"champion_{metric}")
    return (f"model {item['model']} v{item['version']} {item['event']} (holdout {name} "
            f"{metrics[metric]:.3f}" + (f" vs champion {champion:.3f})" if champion else ")"))


async def _wait(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        pass
