"""What every ``driftline`` sub-command shares: exit codes, the settings flags, logging,
and running a long-lived service. Imports nothing from its sibling command modules,
so they can all import it without a cycle."""

from __future__ import annotations

import functools
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from ..errors import ConfigError, DriftlineError
from ..settings import Settings

# Exit codes, the same for every command.
EXIT_OK = 0
# driftline.simulate.SCENARIOS, here so that the CLI starts without numpy (a test checks)
SCENARIOS = ("abrupt", "gradual", "feature-shift", "binary", "multiclass")
EXIT_FAILURE = 1  # a service failed, a broker or Redis is unreachable
EXIT_USAGE = 2  # bad flags or configuration: the message says what to change (click's own)
EXIT_SKIPPED_ROWS = 3  # publish / replay skipped bad rows, each reported with its line

log = logging.getLogger("driftline.cli")


def setting_option(*decls: str, setting: str | None = None,
                   **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A ``click.option`` for a :class:`~driftline.settings.Settings` field: it reads the
    field's ``DRIFTLINE_*`` variable through click (``envvar``) and shows it in --help.

    The field is ``setting``, or the flag's name (``--kafka-url`` -> ``kafka_url`` ->
    ``DRIFTLINE_KAFKA_URL``); a flag for a field that does not exist is refused here, at
    import, rather than silently reading no variable.
    """
    name = setting or decls[0].lstrip("-").replace("-", "_")
    env = Settings.env_names().get(name)
    if env is None:
        raise ValueError(f"{decls[0]} names no setting; known: {', '.join(Settings.env_names())}")
    return click.option(*decls, envvar=env, show_envvar=True, **kwargs)


# The flags every command that talks to Kafka or Redis takes; each overrides its variable.
SETTINGS_FLAGS = ("kafka_url", "redis_url", "topic_prefix", "partitions", "group_id",
                  "log_level")


def settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Adds the shared settings flags and calls ``fn(settings=Settings, ...)``; a bad
    setting (flag or variable) is a usage error (exit 2) that names it."""
    options = [
        setting_option("--kafka-url", help="Kafka bootstrap, kafka://host:port."),
        setting_option("--redis-url", help="Redis URL of the model registry."),
        setting_option("--topic-prefix", help="Topic name prefix."),
        setting_option("--partitions", type=click.IntRange(min=1),
                       help="Partitions of created topics."),
        setting_option("--group-id", help="Consumer group of the worker."),
        setting_option("--log-level", help="Log level.",
                       type=click.Choice(["debug", "info", "warning", "error"],
                                         case_sensitive=False)),
    ]
    for option in reversed(options):
        fn = option(fn)

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        overrides = {k: kwargs.pop(k) for k in SETTINGS_FLAGS}
        if overrides["log_level"] is not None:
            overrides["log_level"] = overrides["log_level"].lower()
        return fn(settings=load_settings(**overrides), **kwargs)

    return wrapper


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """:meth:`Settings.from_env`, with a configuration error as click's usage error."""
    try:
        return Settings.from_env(environ, **overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def run_service(settings: Settings, run: Callable[[], int]) -> None:
    """Run a long-lived service (worker, trainer) and exit with its code; driftline's
    errors become a one-line message and exit 2 (configuration) or 1."""
    setup_logging(settings.log_level)
    # What an operator needs to tell a misconfigured service from a broken one; the repr
    # masks the token, the SASL password and any password inside a URL.
    log.info("starting with %r", settings)
    try:
        code = run()
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except DriftlineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    sys.exit(code)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def wait_for_signal(healthy: Callable[[], bool]) -> None:
    """Sleep until SIGINT/SIGTERM, or until ``healthy()`` turns false."""
    stop: list[bool] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    while not stop and healthy():
        time.sleep(0.2)


MAX_REPORTED = 20  # bad rows printed, then a count


def report_bad_rows(bad: list, total_bad: int) -> None:
    """The first bad rows of a file (``publish``, ``replay``) on standard error."""
    for row in bad[:MAX_REPORTED]:
        click.echo(f"skipped {row.error}", err=True)
    if total_bad > MAX_REPORTED:
        click.echo(f"... and {total_bad - MAX_REPORTED} more bad rows", err=True)
