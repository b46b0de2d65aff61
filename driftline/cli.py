"""The ``driftline`` command.

Exit codes: 0 ok, 1 runtime failure (a service failed, a broker is unreachable),
2 bad usage or configuration (the message says what to change).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
import time

import click

from .errors import ConfigError, DriftlineError
from .settings import Settings

EXIT_FAILURE = 1


def settings_options(fn):
    """Flags shared by every command that talks to Kafka or Redis; each overrides its env var."""
    options = [
        click.option("--kafka-url", help="Kafka bootstrap, kafka://host:port. [env: DRIFTLINE_KAFKA_URL]"),
        click.option("--redis-url", help="Redis URL. [env: DRIFTLINE_REDIS_URL]"),
        click.option("--topic-prefix", help="Topic name prefix. [env: DRIFTLINE_TOPIC_PREFIX]"),
        click.option("--partitions", type=click.IntRange(min=1),
                     help="Partitions of created topics. [env: DRIFTLINE_PARTITIONS]"),
        click.option("--group-id", help="Consumer group of the worker. [env: DRIFTLINE_GROUP_ID]"),
        click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
                     help="[env: DRIFTLINE_LOG_LEVEL]"),
    ]
    for option in reversed(options):
        fn = option(fn)

    @functools.wraps(fn)
    def wrapper(**kwargs):
        overrides = {k: kwargs.pop(k) for k in
                     ("kafka_url", "redis_url", "topic_prefix", "partitions", "group_id",
                      "log_level")}
        try:
            settings = Settings.from_env(**overrides)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        return fn(settings=settings, **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="driftline")
def main() -> None:
    """driftline: monitor ML models in production from their Kafka prediction and label streams."""


def _agents(ctx, param, value: str | None) -> tuple[str, ...] | None:
    from .app import WORKER_AGENTS

    if value is None:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in WORKER_AGENTS]
    if not names or unknown:
        raise click.BadParameter(f"{', '.join(unknown) or 'nothing'}: choose from "
                                 f"{', '.join(WORKER_AGENTS)} (comma-separated)")
    return names


@main.command()
@settings_options
@click.option("--agents", callback=_agents, metavar="NAMES",
              help="Comma-separated subset of join,monitor,trigger (default: all).")
def worker(settings: Settings, agents: tuple[str, ...] | None) -> None:
    """Run the Faust worker until SIGTERM or Ctrl-C: the join, the monitor and the
    retrain trigger (or the --agents subset).

    Creates the topics it needs with --partitions partitions first, and refuses
    to start if they exist with another partition count.
    """
    from .app import WORKER_AGENTS
    from .worker import run_worker

    _run(settings, lambda: run_worker(settings, agents or WORKER_AGENTS))


@main.command()
@settings_options
def trainer(settings: Settings) -> None:
    """Run the training worker until SIGTERM or Ctrl-C: train, compare and register a
    challenger for each retrain request, and promote it if it wins.

    Uses its own consumer group (DRIFTLINE_GROUP_ID + "-trainer"); start more
    than one to train several models at once.
    """
    from .worker import run_trainer

    _run(settings, lambda: run_trainer(settings))


def _run(settings: Settings, run) -> None:
    _setup_logging(settings.log_level)
    try:
        code = run()
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except DriftlineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    sys.exit(code)


from .cli_models import models  # noqa: E402
from .cli_ops import alerts, health, publish, replay, simulate  # noqa: E402

for command in (models, publish, alerts, replay, health, simulate):
    main.add_command(command)


@main.group()
def stack() -> None:
    """The embedded Kafka (Tansu) and Redis (Valkey) servers, for laptops and tests."""


@stack.command("up")
@click.option("--kafka-port", type=click.IntRange(0, 65535), default=9092, show_default=True,
              help="0 picks a free port.")
@click.option("--redis-port", type=click.IntRange(0, 65535), default=6379, show_default=True,
              help="0 picks a free port.")
@click.option("--kafka", "broker", type=click.Choice(["tansu", "apache"]), default="tansu",
              show_default=True,
              help="The embedded broker: Tansu, or Apache Kafka (Java 17+ and Maven).")
def stack_up(kafka_port: int, redis_port: int, broker: str) -> None:
    """Start Tansu and Valkey on loopback, print their URLs, run until Ctrl-C."""
    with _embedded_stack(kafka_port, redis_port, broker) as st:
        for name, value in st.env().items():
            click.echo(f"{name}={value}")
        _wait_for_signal(lambda: st.kafka.alive() and st.redis.alive())
        click.echo("stopping the embedded stack", err=True)


@main.command()
@click.option("--kafka-port", type=click.IntRange(0, 65535), default=9092, show_default=True)
@click.option("--redis-port", type=click.IntRange(0, 65535), default=6379, show_default=True)
@click.option("--partitions", type=click.IntRange(min=1), default=None,
              help="[env: DRIFTLINE_PARTITIONS]")
@click.option("--kafka", "broker", type=click.Choice(["tansu", "apache"]), default="tansu",
              show_default=True,
              help="The embedded broker: Tansu, or Apache Kafka (Java 17+ and Maven).")
def up(kafka_port: int, redis_port: int, partitions: int | None, broker: str) -> None:
    """The embedded stack plus a worker and a trainer, until Ctrl-C: the whole loop on
    one laptop."""
    with _embedded_stack(kafka_port, redis_port, broker) as st:
        env = {**os.environ, **st.env()}
        if partitions:
            env["DRIFTLINE_PARTITIONS"] = str(partitions)
        for name, value in st.env().items():
            click.echo(f"{name}={value}")
        try:
            web = Settings.from_env(env)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        if web.web_port:
            click.echo(f"dashboard: http://{web.web_host}:{web.web_port}/")
        # Under the same supervisor as the services: if this process is SIGKILLed, the
        # pipe closes and the worker and trainer are stopped too.
        from .processes import STOPPED_OK, supervised

        names = ("worker", "trainer")
        with supervised([[name] for name in names], env) as procs:
            _wait_for_signal(lambda: all(p.poll() is None for p in procs) and st.kafka.alive())
        failed = [(name, p.returncode) for name, p in zip(names, procs)
                  if p.returncode not in STOPPED_OK]
        for name, code in failed:
            click.echo(f"the {name} exited with code {code}", err=True)
        if failed:
            sys.exit(EXIT_FAILURE)


@main.command()
@click.option("--events", type=click.IntRange(3_000, 1_000_000), default=30_000,
              show_default=True, help="Predictions the simulated service makes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the world.")
@click.option("--scenario", type=click.Choice(["abrupt", "gradual", "feature-shift"]),
              default="abrupt", show_default=True,
              help="The drift, a third of the way in.")
@click.option("--rate", type=click.FloatRange(min=100), default=1_000, show_default=True,
              help="Predictions per second (one worker keeps up with 1,000 here).")
@click.option("--no-live", is_flag=True, help="Plain log lines instead of the live view.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo(events: int, seed: int, scenario: str, rate: float, no_live: bool,
         as_json: bool) -> None:
    """The whole loop in about a minute: embedded stack, worker, trainer, a simulated
    production service, a drift, an alert, a retrain and a promotion. Leaves nothing
    running; exits 1 if no new version was promoted."""
    import asyncio
    import tempfile

    import orjson

    from .demo import run_demo, summary_lines
    from .processes import supervised

    live = not no_live and sys.stdout.isatty()
    log_path = os.path.join(tempfile.mkdtemp(prefix="driftline-demo-"), "services.log")
    with _embedded_stack(0, 0) as st:
        from .stack import free_port

        settings = Settings(kafka_url=st.kafka_url, redis_url=st.redis_url, partitions=4,
                            metrics_interval=0.5, log_level="warning", web_port=free_port())
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
        env.update(settings.as_env())
        if not as_json:
            click.echo(f"embedded Kafka {st.kafka_url}, Redis {st.redis_url}; worker and "
                       f"trainer logs: {log_path}")
            click.echo(f"dashboard: http://127.0.0.1:{settings.web_port}/ (while the demo runs)")
        with open(log_path, "ab") as log, supervised([["worker"], ["trainer"]], env,
                                                     output=log):
            try:
                result = asyncio.run(run_demo(settings, events=events, seed=seed,
                                              scenario=scenario, live=live, rate=rate,
                                              echo=click.echo))
            except KeyboardInterrupt:
                click.echo("interrupted; stopping", err=True)
                sys.exit(130)
    if as_json:
        click.echo(orjson.dumps(result).decode())
    else:
        click.echo("\n".join(["", "summary:", *(f"  {line}" for line in summary_lines(result)),
                              f"  {result['seconds']:.0f} s in all"]))
    if not result["promoted_version"]:
        click.echo(f"the loop did not close: see {log_path}", err=True)
        sys.exit(EXIT_FAILURE)


@contextlib.contextmanager
def _embedded_stack(kafka_port: int, redis_port: int, broker: str = "tansu"):
    from .stack import EmbeddedStack

    try:
        st = EmbeddedStack(kafka_port=kafka_port, redis_port=redis_port, kafka=broker).start()
    except DriftlineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    try:
        yield st
    finally:
        st.stop()


def _wait_for_signal(healthy) -> None:
    """Sleep until SIGINT/SIGTERM, or until ``healthy()`` turns false."""
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    while not stop and healthy():
        time.sleep(0.2)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":
    main()
