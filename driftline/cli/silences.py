"""``driftline alerts silence | silences | unsilence``: silences in the registry's Redis.

Delivery (``driftline delivery``) reads them before every push: a matching alert stays
on the alerts topic and its delivery record says ``silenced``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import click
import orjson

from ..settings import Settings
from ._common import EXIT_FAILURE, EXIT_USAGE, settings_options

T = TypeVar("T")


def _with_store(settings: Settings, use: Callable[[Any], T]) -> T:
    """``use(store)`` on the registry's silence store, closed after; a store error ends
    the command with its message (exit 1 if retrying may help, else 2)."""
    from ..agents.delivery.silences import SilenceError, SilenceStore

    try:
        store = SilenceStore.from_settings(settings)
        try:
            return use(store)
        finally:
            store.close()
    except SilenceError as exc:
        _fail(exc)


def _fail(exc: Any) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_FAILURE if getattr(exc, "retriable", False) else EXIT_USAGE)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _line(s: Any) -> str:
    scope = s.model + "".join(f" {k}={v}" for k, v in (("kind", s.kind), ("feature", s.feature))
                              if v is not None)
    return f"{s.id}  {scope}  until {_when(s.ends_at)}  by {s.created_by}: {s.reason}"


@click.command("silence")
@settings_options
@click.option("--model", required=True, help="The model whose alerts to silence.")
@click.option("--kind", help="Only alerts of this kind (e.g. data_drift).")
@click.option("--feature", help="Only alerts about this feature.")
@click.option("--for", "duration", required=True, metavar="DURATION",
              help="How long: 90s, 30m, 2h, 1d.")
@click.option("--reason", required=True, help="Why (shown in every silenced delivery).")
@click.option("--json", "as_json", is_flag=True, help="Print the silence as JSON.")
def silence(settings: Settings, model: str, kind: str | None, feature: str | None,
            duration: str, reason: str, as_json: bool) -> None:
    """Stop pushing a model's alerts (of --kind, about --feature) for a while."""
    from ..agents.delivery.silences import parse_duration

    made = _with_store(settings, lambda store: store.create(
        model, parse_duration(duration), reason, kind=kind, feature=feature))
    if as_json:
        click.echo(orjson.dumps(made.as_dict()).decode())
    else:
        click.echo(f"silenced {_line(made)}")
        click.echo(f"end it early with: driftline alerts unsilence {made.id}", err=True)


@click.command("silences")
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print the silences as a JSON array.")
def silences(settings: Settings, as_json: bool) -> None:
    """List the silences in force, soonest to end first."""
    active = _with_store(settings, lambda store: store.active())
    if as_json:
        click.echo(orjson.dumps([s.as_dict() for s in active]).decode())
    elif not active:
        click.echo("no silences in force")
    for s in ([] if as_json else active):
        click.echo(_line(s))


@click.command("unsilence")
@settings_options
@click.argument("silence_id")
def unsilence(settings: Settings, silence_id: str) -> None:
    """End the silence SILENCE_ID now (see `driftline alerts silences`)."""
    ended = _with_store(settings, lambda store: store.delete(silence_id))
    if not ended:
        click.echo(f"error: no silence {silence_id!r} in force; list them with "
                   f"`driftline alerts silences`", err=True)
        sys.exit(EXIT_USAGE)
    click.echo(f"ended silence {silence_id}")
