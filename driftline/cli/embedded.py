"""The embedded stack from the command line: ``driftline stack up`` (Tansu and Valkey),
``driftline up`` (the stack plus a worker and a trainer) and ``driftline demo`` (the
whole loop once, then nothing left running)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from ..errors import DriftlineError
from ..settings import Settings
from ._common import (
    EXIT_FAILURE,
    SCENARIOS,
    load_settings,
    setting_option,
    wait_for_signal,
)

if TYPE_CHECKING:
    from ..embedded import EmbeddedStack


@click.group()
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
    """Start the embedded broker (Tansu, or Apache Kafka) and Valkey on loopback, print
    their URLs, run until Ctrl-C."""
    with embedded_stack(kafka_port, redis_port, broker) as st:
        for name, value in st.env().items():
            click.echo(f"{name}={value}")
        wait_for_signal(lambda: st.kafka.alive() and st.redis.alive())
        click.echo("stopping the embedded stack", err=True)


@click.command()
@click.option("--kafka-port", type=click.IntRange(0, 65535), default=9092, show_default=True)
@click.option("--redis-port", type=click.IntRange(0, 65535), default=6379, show_default=True)
@setting_option("--partitions", type=click.IntRange(min=1), default=None,
                help="Partitions of the topics the worker creates.")
@click.option("--kafka", "broker", type=click.Choice(["tansu", "apache"]), default="tansu",
              show_default=True,
              help="The embedded broker: Tansu, or Apache Kafka (Java 17+ and Maven).")
def up(kafka_port: int, redis_port: int, partitions: int | None, broker: str) -> None:
    """The embedded stack plus a worker and a trainer, until Ctrl-C: the whole loop on
    one laptop."""
    with embedded_stack(kafka_port, redis_port, broker) as st:
        env = {**os.environ, **st.env()}
        if partitions:
            env["DRIFTLINE_PARTITIONS"] = str(partitions)
        for name, value in st.env().items():
            click.echo(f"{name}={value}")
        web = load_settings(env)
        if web.web_port:
            click.echo(f"dashboard: http://{web.web_host}:{web.web_port}/")
        # Under the same supervisor as the services: if this process is SIGKILLed, the
        # pipe closes and the worker and trainer are stopped too.
        from ..embedded.processes import STOPPED_OK, supervised

        names: tuple[str, ...] = ("worker", "trainer")
        if web.alertmanager_url or web.webhook_urls:  # a receiver is set: deliver to it
            names += ("delivery",)
        with supervised([[name] for name in names], env) as procs:
            wait_for_signal(lambda: all(p.poll() is None for p in procs) and st.kafka.alive())
        failed = [(name, p.returncode) for name, p in zip(names, procs)
                  if p.returncode not in STOPPED_OK]
        for name, code in failed:
            click.echo(f"the {name} exited with code {code}", err=True)
        if failed:
            sys.exit(EXIT_FAILURE)


@click.command()
@click.option("--events", type=click.IntRange(3_000, 1_000_000), default=30_000,
              show_default=True, help="Predictions the simulated service makes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the world.")
@click.option("--scenario", type=click.Choice(SCENARIOS),
              default="abrupt", show_default=True,
              help="The drift, a third of the way in: of a regression (houses), a binary "
                   "classifier (churn) or a multiclass one (intents).")
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

    from ..demo import run_demo, summary_lines
    from ..embedded.processes import supervised
    from ..ports import free_port

    live = not no_live and sys.stdout.isatty()
    log_path = os.path.join(tempfile.mkdtemp(prefix="driftline-demo-"), "services.log")
    with embedded_stack(0, 0) as st:
        # The demo runs hours of a service in seconds: an old version is superseded after
        # 1 s without predictions (600 by default), so v1's alerts close while it runs.
        monitor_config = os.path.join(os.path.dirname(log_path), "monitor.toml")
        with open(monitor_config, "w") as f:
            f.write("[defaults]\nsuperseded_after = 1.0\n")
        settings = Settings(kafka_url=st.kafka_url, redis_url=st.redis_url, partitions=4,
                            metrics_interval=0.5, log_level="warning", web_port=free_port(),
                            monitor_config=monitor_config)
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
def embedded_stack(kafka_port: int, redis_port: int,
                   broker: str = "tansu") -> Iterator[EmbeddedStack]:
    from ..embedded import EmbeddedStack

    try:
        st = EmbeddedStack(kafka_port=kafka_port, redis_port=redis_port, kafka=broker).start()
    except DriftlineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    try:
        yield st
    finally:
        st.stop()
