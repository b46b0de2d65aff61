"""``driftline pairs export``: a model's scored pairs, for a training pipeline outside
driftline (the data the trainer would train on, read back the same way)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..settings import Settings
from ._common import EXIT_FAILURE, settings_options


@click.group()
def pairs() -> None:
    """Scored pairs (predictions joined with their labels) read back from Kafka."""


@pairs.command("export")
@settings_options
@click.option("--model", required=True, help="The model whose pairs to export.")
@click.option("--since", type=float, default=None,
              help="Only pairs labelled at or after this time (epoch seconds): a retrain "
                   "request's `since`, the drift point.")
@click.option("--max-pairs", type=click.IntRange(min=1), default=None,
              help="At most this many, the most recent [default: DRIFTLINE_TRAINING_MAX_PAIRS].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON-lines file to write, oldest pair first ('-': standard output).")
def export(settings: Settings, model: str, since: float | None, max_pairs: int | None,
           out: Path) -> None:
    """Write MODEL's most recent scored pairs (all its versions, one per prediction, the
    oldest first) as JSON lines: what `driftline trainer` trains on for a retrain request
    with that `since`. Each line is a scored pair as on `driftline.scored`. A summary goes
    to standard error."""
    import asyncio

    import orjson
    from aiokafka.errors import KafkaError

    from ..agents.retrain.training_data import recent_pairs

    try:
        window = asyncio.run(recent_pairs(settings, model, since=since, max_pairs=max_pairs))
    except (KafkaError, OSError) as exc:
        click.echo(f"error: cannot read {settings.topic('monitor_input')}: {exc} (is "
                   f"DRIFTLINE_KAFKA_URL right?)", err=True)
        sys.exit(EXIT_FAILURE)
    lines = b"".join(orjson.dumps(pair) + b"\n" for pair in window.pairs)
    if str(out) == "-":
        sys.stdout.buffer.write(lines)
        sys.stdout.flush()
    else:
        out.write_bytes(lines)
    click.echo(orjson.dumps(window.describe(settings.topic("monitor_input"))).decode(),
               err=True)
