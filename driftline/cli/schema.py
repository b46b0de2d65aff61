"""``driftline schema``: the JSON Schema of the public events, for the teams that publish
and consume them from other languages (generated from the wire Structs, see
:mod:`driftline.models.wire.schema`)."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from ._common import EXIT_USAGE


@click.command()
@click.argument("event", required=False)
@click.option("--list", "list_", is_flag=True, help="List the event names and their topics.")
@click.option("--message", is_flag=True,
              help="The schema of a whole message value: one event or a JSON array of them.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Write one <event>.schema.json file per event into this folder.")
def schema(event: str | None, list_: bool, message: bool, out: Path | None) -> None:
    """Print the JSON Schema (draft 2020-12) of EVENT, or of every public event.

    EVENT is one of: prediction, label, scored-pair, alert, retrain-request, model-event,
    dead-letter, alert-delivery. Without it, one JSON object maps each name to its schema.
    """
    from ..models.wire import schema as ws

    if list_:
        for topic, name in ws.TOPICS.items():
            click.echo(f"{name:<16} driftline.{topic}")
        return
    if event is not None and event not in ws.SCHEMAS:
        click.echo(f"Error: no event {event!r}; known: {', '.join(ws.SCHEMAS)} "
                   "(driftline schema --list)", err=True)
        raise SystemExit(EXIT_USAGE)
    build = ws.message_schema if message else ws.schema
    names = [event] if event else list(ws.SCHEMAS)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        suffix = ".message.schema.json" if message else ".schema.json"
        for name in names:
            path = out / f"{name}{suffix}"
            path.write_bytes(orjson.dumps(build(name), option=orjson.OPT_INDENT_2) + b"\n")
            click.echo(str(path))
        return
    doc = build(event) if event else {name: build(name) for name in names}
    click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
