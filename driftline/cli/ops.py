"""Operator commands: ``publish`` a file, ``alerts tail``, ``replay`` a log offline,
``health`` for health checks.

Exit codes (as for every command): 0 ok, 1 runtime failure, 2 usage; ``publish``
and ``replay`` exit 3 when they skipped bad rows (each reported with its line).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson

from ..errors import DriftlineError
from ..settings import Settings, redact_url
from ._common import (
    EXIT_FAILURE,
    EXIT_SKIPPED_ROWS,
    report_bad_rows,
    settings_options,
)


@click.command()
@settings_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch", type=click.IntRange(1, 10_000), default=500, show_default=True,
              help="Events per Kafka message (1: one event per message, keyed by prediction_id).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def publish(settings: Settings, file: Path, batch: int, as_json: bool) -> None:
    """Publish the predictions and labels of FILE (JSON lines, or CSV by extension).

    JSONL: one prediction or label event per line. CSV: columns prediction_id, model,
    version, prediction, label, ts, label_ts; the other columns are features. Bad rows
    are reported with their line numbers and skipped (exit code 3).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ..eventfile import open_events
    from ..publisher import Publisher

    async def run() -> dict[str, Any]:
        counts = {"predictions": 0, "labels": 0, "bad_rows": 0}
        bad = []
        with open(file, "rb") as f:
            total = sum(1 for _ in f)
        progress = Progress(TextColumn("publishing"), BarColumn(), MofNCompleteColumn(),
                            transient=True, disable=not sys.stderr.isatty())
        async with Publisher(settings=settings, max_batch=batch) as pub:
            with progress:
                task = progress.add_task("publish", total=total)
                for row in open_events(file):
                    progress.update(task, completed=row.line)
                    if row.error is not None:
                        counts["bad_rows"] += 1
                        bad.append(row)
                        continue
                    event = dict(row.event or {})
                    pid = event.pop("prediction_id")
                    if row.kind == "prediction":
                        await pub.log_prediction(pid, **event)
                        counts["predictions"] += 1
                    else:
                        await pub.log_label(pid, **event)
                        counts["labels"] += 1
        report_bad_rows(bad, counts["bad_rows"])
        return counts

    try:
        counts = asyncio.run(run())
    except DriftlineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    if as_json:
        click.echo(orjson.dumps(counts).decode())
    else:
        click.echo(f"published {counts['predictions']:,} predictions and {counts['labels']:,} "
                   f"labels to {settings.topic('predictions')} / {settings.topic('labels')}; "
                   f"{counts['bad_rows']:,} bad rows skipped")
    sys.exit(EXIT_SKIPPED_ROWS if counts["bad_rows"] else 0)


@click.group()
def alerts() -> None:
    """Alerts published by the monitor."""


@alerts.command("tail")
@settings_options
@click.option("--model", help="Only this model's alerts.")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the latest alerts to show first.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new alerts until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="One alert event (JSON) per line.")
def alerts_tail(settings: Settings, model: str | None, lines: int, follow: bool,
                as_json: bool) -> None:
    """Show the latest alerts (all models, or --model), and with -f follow new ones."""
    from aiokafka import TopicPartition

    from ..kafka import partition_for, read_partition, reader

    topic = settings.topic("alerts")

    def show(alert: dict[str, Any]) -> None:
        if model and alert.get("model") != model:
            return
        click.echo(orjson.dumps(alert).decode() if as_json else alert_line(alert))

    async def run() -> None:
        consumer = reader(settings)
        try:
            await consumer.start()
            partitions = ([partition_for(model.encode(), settings.partitions)] if model
                          else range(settings.partitions))
            existing: list[dict[str, Any] | None] = []
            ends = {}
            for q in partitions:
                async for records in read_partition(consumer, topic, q):
                    existing.extend(_alert(r.value) for r in records)
                ends[q] = await consumer.position(TopicPartition(topic, q))
            mine = [a for a in existing if a is not None and (not model or a["model"] == model)]
            for alert in sorted(mine, key=lambda a: a["ts"])[-lines:] if lines else []:
                show(alert)
            if not follow:
                return
            tps = [TopicPartition(topic, q) for q in ends]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, ends[tp.partition])
            click.echo(f"following {topic} (Ctrl-C to stop)", err=True)
            while True:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for r in records:
                        new = _alert(r.value)
                        if new:
                            show(new)
        finally:
            await consumer.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # Kafka unreachable, or the topic missing
        click.echo(f"error: cannot read {topic} from {redact_url(settings.kafka_url)}: {exc}",
                   err=True)
        sys.exit(EXIT_FAILURE)


def alert_line(alert: dict[str, Any]) -> str:
    """One alert as ``alerts tail`` prints it (an alert event as ``as_dict`` gives it).

    One line whatever the alert holds: control and other unprintable characters of its
    message (which quotes feature and segment names, chosen by producers) are shown
    escaped, so they can neither break the line nor drive the terminal.

    >>> alert_line({"ts": 0.0, "status": "firing", "severity": "warning", "version": None,
    ...             "kind": "data_drift", "model": "m", "message": "'a\\nb' drifted."})
    "1970-01-01 00:00:00  firing   warning  data_drift        m  'a\\\\nb' drifted."
    """
    when = datetime.fromtimestamp(alert["ts"], tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    version = "" if alert["version"] is None else f" v{alert['version']}"
    line = (f"{when}  {alert['status']:<8} {alert['severity']:<8} {alert['kind']:<17} "
            f"{alert['model']}{version}  {alert['message']}")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in line)


def _alert(value: bytes | None) -> dict[str, Any] | None:
    from ..models.wire import ALERT
    from ..models.wire.events import as_dict

    alerts, _ = ALERT.decode(value)
    return as_dict(alerts[0]) if len(alerts) == 1 else None


@click.command()
@settings_options
@click.option("--group", "which", type=click.Choice(["worker", "trainer", "delivery", "all"]),
              default="all", show_default=True,
              help="Whose consumer group must be running (all: delivery too when a receiver "
                   "is configured).")
@click.option("--timeout", type=click.FloatRange(min=0.5), default=10.0, show_default=True,
              help="Seconds to wait for Kafka and Redis.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def health(settings: Settings, which: str, timeout: float, as_json: bool) -> None:
    """Check that Kafka and Redis answer and that the worker's (and/or trainer's) consumer
    group is Stable with members. Exit 0 when all is well, 1 otherwise (for health checks)."""
    import redis
    from aiokafka.admin import AIOKafkaAdminClient

    from ..kafka import client_options, group_states, security_error
    from ..redis_client import Timeouts, settings_redis_client

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the checks say what failed
    groups = {"worker": settings.group_id, "trainer": settings.trainer_group_id,
              "delivery": settings.delivery_group_id}
    delivering = bool(settings.alertmanager_url or settings.webhook_urls)
    wanted = ([g for g in groups if g != "delivery" or delivering] if which == "all"
              else [which])
    checks: dict[str, dict[str, Any]] = {}

    async def kafka() -> None:
        admin = AIOKafkaAdminClient(**client_options(settings),
                                    request_timeout_ms=int(timeout * 1000))
        try:
            await asyncio.wait_for(admin.start(), timeout)
            checks["kafka"] = {"ok": True, "url": redact_url(settings.kafka_url)}
            states = await asyncio.wait_for(
                group_states(admin, [groups[w] for w in wanted]), timeout)
            for name in wanted:
                state, members = states.get(groups[name], ("Dead", 0))
                checks[name] = {"ok": state == "Stable" and members > 0, "group": groups[name],
                                "state": state, "members": members}
        except Exception as exc:
            why = await security_error(settings) if "kafka" not in checks else None
            checks.setdefault("kafka", {"ok": False, "url": redact_url(settings.kafka_url),
                                        "error": str(why or exc) or type(exc).__name__})
        finally:
            await admin.close()

    asyncio.run(kafka())
    try:
        client = settings_redis_client(settings, timeout=Timeouts.flat(timeout))
        client.ping()
        client.close()
        checks["redis"] = {"ok": True}
    except redis.RedisError as exc:
        checks["redis"] = {"ok": False, "error": str(exc)}
    for name in wanted:
        checks.setdefault(name, {"ok": False, "group": groups[name],
                                 "error": "Kafka unreachable"})
    healthy = all(c["ok"] for c in checks.values())
    if as_json:
        click.echo(orjson.dumps({"healthy": healthy, "checks": checks}).decode())
    else:
        for name, check in checks.items():
            detail = ", ".join(f"{k}={v}" for k, v in check.items() if k != "ok")
            click.echo(f"{'ok  ' if check['ok'] else 'FAIL'} {name}: {detail}")
    sys.exit(0 if healthy else EXIT_FAILURE)


@click.command()
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print the settings as one JSON object.")
def config(settings: Settings, as_json: bool) -> None:
    """Print the settings a command would run with (variables, then flags), secrets
    masked: the API token and the SASL password as ***, and any password in a URL."""
    shown = settings.redacted()
    if as_json:
        click.echo(orjson.dumps(shown).decode())
        return
    env = settings.env_names()
    for name, value in shown.items():
        click.echo(f"{env[name]}={value}")
