"""``driftline replay`` and ``driftline simulate``: the offline tools (no Kafka, no Redis
unless asked: ``replay --explain`` reads the registry)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson

from ..errors import ConfigError
from ._common import (
    EXIT_SKIPPED_ROWS,
    SCENARIOS,
    load_settings,
    report_bad_rows,
    setting_option,
)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@setting_option("--config", "config_path", setting="monitor_config",
                type=click.Path(exists=True, dir_okay=False),
                help="Monitoring TOML (thresholds, detectors).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("driftline-report"), show_default=True,
              help="Folder for report.png, alerts.json and summary.json.")
@setting_option("--join-ttl", type=click.FloatRange(min=0, min_open=True), default=86_400.0,
                show_default=True,
                help="Seconds (event time) a prediction waits for its label, as in the worker.")
@click.option("--reference", "references", multiple=True, metavar="[MODEL[:VERSION]=]FILE",
              help="A reference profile: rows of features with `prediction` and `label` "
                   "where known (JSON lines or CSV), as `models register --reference` stores "
                   "it; the tests of every version in FILE (MODEL=: of that model's versions; "
                   "MODEL:VERSION=: of that one) are fitted from it. Repeatable; the most "
                   "specific one applies.")
@click.option("--task", "tasks", multiple=True, metavar="MODEL=TASK",
              help="A model's task (regression, binary, multiclass) where the config gives "
                   "none, as the registry tells the worker; repeatable.")
@click.option("--explain", is_flag=True,
              help="Also draw each version's feature shares, read from the model registry "
                   "(DRIFTLINE_REDIS_URL).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def replay(file: Path, config_path: str | None, out: Path, join_ttl: float,
           references: tuple[str, ...], tasks: tuple[str, ...], explain: bool,
           as_json: bool) -> None:
    """Run the monitor offline over FILE, a log of predictions and labels (JSON lines,
    or CSV by extension), in its order, and write a report: a plot of rolling MSE per
    version with the baseline, drift points and alerts marked, plus the alerts as JSON -
    the same alerts the streaming worker would publish for that input. No Kafka needed.
    """
    from ..agents.monitor.config import MonitorConfig
    from ..eventfile import open_events
    from ..replay import Replay, feature_lines, refusal_lines, refused_by_reason, write_report

    try:
        config = MonitorConfig.load(config_path).with_tasks(_tasks(tasks))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    started = time.monotonic()
    result = Replay(config, ttl=join_ttl, references=_references(references)).feed(
        open_events(file)).finish()
    if explain:
        _explanations(result)
    paths = write_report(result, out)
    report_bad_rows(result.bad_rows, len(result.bad_rows))
    summary = {"events": result.events, "scored": result.scored, "expired": result.expired,
               "bad_rows": len(result.bad_rows), "alerts": len(result.alerts),
               "refused_pairs": refused_by_reason(result.versions),
               "seconds": round(time.monotonic() - started, 3),
               "files": {k: str(v) for k, v in paths.items()}}
    if as_json:
        click.echo(orjson.dumps(summary).decode())
    else:
        click.echo(f"replayed {result.events:,} events in {summary['seconds']:.1f}s: "
                   f"{result.scored:,} scored pairs, {len(result.alerts)} alerts")
        for line in refusal_lines(result.versions):
            click.echo(line)
        for alert in result.alerts:
            click.echo(f"  {alert['alert_id']}: {alert['message']}")
        for name, report in result.versions.items():
            for line in feature_lines(name, report):
                click.echo(line)
        click.echo(f"report: {paths['plot']}, {paths['alerts']}, {paths['summary']}")
    sys.exit(EXIT_SKIPPED_ROWS if result.bad_rows else 0)


def _explanations(result: Any) -> None:
    """The registry's explanations of the replayed versions into ``result`` (or why not)."""
    from ..errors import RegistryUnavailable
    from ..models.registry import ModelRegistry
    from ..replay import registry_explanations

    registry = ModelRegistry.from_settings(load_settings(), on_event=None)
    try:
        for problem in registry_explanations(result, registry):
            click.echo(f"warning: no explanation of {problem}", err=True)
    except RegistryUnavailable as exc:
        click.echo(f"warning: {exc}; the report has no explanations", err=True)
    finally:
        registry.close()


def _references(given: tuple[str, ...]
                ) -> dict[tuple[str | None, int | None], list[dict[str, Any]]]:
    """``--reference`` values by what they apply to: (model, version), (model, None) for
    every version of a model, (None, None) for every version in the file."""
    from ..errors import SchemaError
    from ..eventfile import read_reference
    from ..models.reference import profile

    out = {}
    for item in given:
        target, path = _reference_target(item)
        try:
            out[target] = profile(read_reference(path), source=path)["rows"]
        except (OSError, SchemaError) as exc:
            raise click.BadParameter(str(exc), param_hint="--reference") from None
    return out


def _reference_target(item: str) -> tuple[tuple[str | None, int | None], str]:
    """``FILE``, ``MODEL=FILE`` or ``MODEL:VERSION=FILE`` (a path that exists as given is
    a FILE, even with a ``=`` in it)."""
    key, sep, path = item.partition("=")
    if not sep or Path(item).exists():
        return (None, None), item
    model, colon, version = key.rpartition(":")
    if not colon:
        model, version = key, ""
    if not model or not path or (colon and not version.isdigit()):
        raise click.BadParameter(f"{item!r} is not FILE, MODEL=FILE or MODEL:VERSION=FILE "
                                 f"(e.g. train.jsonl, houses=train.jsonl, "
                                 f"houses:1=train.jsonl)", param_hint="--reference")
    return (model, int(version) if version else None), path


def _tasks(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        model, sep, task = pair.partition("=")
        if not sep or not model:
            raise click.BadParameter(f"{pair!r} is not MODEL=TASK (e.g. churn=binary)",
                                     param_hint="--task")
        out[model] = task
    return out


@click.command()
@click.option("--events", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="Predictions (each followed by its label).")
@click.option("--scenario", type=click.Choice(SCENARIOS),
              default="abrupt", show_default=True)
@click.option("--drift-at", type=click.IntRange(min=0), default=None,
              help="Row of the drift (default: half-way).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--label-delay", type=click.IntRange(min=0), default=200, show_default=True,
              help="Labels arrive this many predictions later.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON-lines file to write (for publish or replay).")
def simulate(events: int, scenario: str, drift_at: int | None, seed: int, label_delay: int,
             out: Path) -> None:
    """Write the prediction and label log of the simulated service (model v1, trained
    before the drift: houses, a regression; churn in the binary scenario, intents in the
    multiclass one) - input to try `driftline replay` or `publish` with."""
    from ..simulate import World, event_log, model_for

    world = World(scenario, drift_at=events // 2 if drift_at is None else drift_at, seed=seed)
    model = model_for(scenario)
    with open(out, "wb") as f:
        n = 0
        for event in event_log(world, events, model=model, label_delay=label_delay):
            f.write(orjson.dumps(event) + b"\n")
            n += 1
    click.echo(f"wrote {n:,} events ({events:,} predictions of {model} and their labels, "
               f"{scenario} drift at row {world.drift_at:,}) to {out}")
    if world.task != "regression":
        click.echo(f"{model} is a {world.task} model: replay it with --task "
                   f"{model}={world.task} (or [models.{model}] task in the monitor config)")
