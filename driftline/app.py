"""The Faust application: one app, every agent, configured from :class:`Settings`."""

from __future__ import annotations

import tempfile
from typing import Any

import faust

from . import batch_consumer
from .errors import ConfigError
from .kafka import FETCH_MAX_WAIT_MS, ssl_context
from .ports import free_port
from .settings import Settings

# A new consumer group joins in ~3 s on Tansu with these, ~30 s with Faust's
# defaults (DESIGN.md); they are also sane for a small Kafka cluster.
FAST_GROUP_TIMEOUTS: dict[str, Any] = {
    "broker_session_timeout": 6.0,
    "broker_rebalance_timeout": 6.0,
    "broker_heartbeat_interval": 1.0,
}


def topics_to_create(settings: Settings) -> list[str]:
    return [settings.topic(name) for name in
            ("predictions", "labels", "scored", "alerts", "retrain", "models",
             "deadletter", "expired", "join_state", "monitor_input", "metrics",
             "alert_deliveries", "delivery_progress")]


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    keep = {"retention.ms": "-1", "retention.bytes": "-1"}
    return {
        # The join state is keyed by prediction_id: compaction keeps the latest per id.
        settings.topic("join_state"): {"cleanup.policy": "compact"},
        # The monitor rebuilds itself by replaying its input from the start and publishes
        # an alert only if its id is not on the alerts topic yet: both must be kept whole
        # (Kafka's default retention of 7 days would make a replay start half-way).
        settings.topic("monitor_input"): keep,
        settings.topic("alerts"): keep,
        # Delivery's per-target progress on each alerts partition: the latest per key.
        settings.topic("delivery_progress"): {"cleanup.policy": "compact"},
    }


AGENTS = ("join", "monitor", "trigger", "trainer", "delivery")
# `driftline worker`; the trainer and alert delivery run apart, in their own groups
WORKER_AGENTS = ("join", "monitor", "trigger")


# Faust builds its consumer with fetch_max_wait_ms=1500, hard-coded: a stage on Tansu then
# took ~450 ms a hop. driftline sets FETCH_MAX_WAIT_MS (driftline.kafka, where it says why).


def _short_fetch_wait() -> None:
    from faust.transport.drivers import aiokafka as driver

    thread = driver.AIOKafkaConsumerThread
    if getattr(thread, "_driftline_fetch_wait", False):
        return
    create = thread._create_worker_consumer

    def create_worker_consumer(self, transport):
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts
        return consumer

    thread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]
    thread._driftline_fetch_wait = True  # type: ignore[attr-defined]


def broker_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """``DRIFTLINE_KAFKA_SECURITY_PROTOCOL`` and its SASL / TLS settings as Faust's
    ``broker_credentials`` (None for PLAINTEXT): the same connection every aiokafka
    client of driftline makes (:func:`driftline.kafka.client_options`)."""
    protocol = settings.kafka_security_protocol
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    if protocol.startswith("SASL_"):
        # Faust picks SASL_SSL when it is given a context, SASL_PLAINTEXT otherwise.
        return faust.SASLCredentials(username=settings.kafka_sasl_username,
                                     password=settings.kafka_sasl_password,
                                     ssl_context=ssl_context(settings),
                                     mechanism=settings.kafka_sasl_mechanism)
    return None


def create_app(settings: Settings, *, agents: tuple[str, ...] = WORKER_AGENTS,
               datadir: str | None = None) -> faust.App:
    """The Faust app with ``agents``; ``app.driftline`` maps each name to what
    its ``install`` returned (the agent objects, for tests and shutdown)."""
    unknown = set(agents) - set(AGENTS)
    if unknown:
        raise ConfigError(f"unknown agent(s) {', '.join(sorted(unknown))}; known: "
                          f"{', '.join(AGENTS)}")
    _short_fetch_wait()
    if settings.batch_delivery:
        batch_consumer.install()
    app = faust.App(
        settings.group_id,
        broker=settings.faust_broker,
        broker_consumer=(settings.faust_broker.replace("kafka://", f"{batch_consumer.SCHEME}://")
                         if settings.batch_delivery else None),
        broker_credentials=broker_credentials(settings),
        store="memory://",
        autodiscover=False,
        datadir=datadir or tempfile.mkdtemp(prefix="driftline-faust-"),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=False,  # ensure_topics() creates and checks every topic
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=settings.max_message_bytes + 65_536,
        producer_acks=-1,
        stream_wait_empty=True,
        # Messages buffered per stream between the consumer and an agent (Faust's default
        # is 4,096). A message can be a 256 KB array: at 4,096 a backlog held ~1 GB; 256
        # bounds it, with the same throughput (bench/harness.py, single and batched).
        stream_buffer_maxsize=256,
        web_enabled=bool(settings.web_port),
        # Faust's worker binds its web server even when it is disabled, and refuses port 0:
        # with the API off it gets a free port, so workers sharing a host never collide
        # on Faust's default 6066.
        web_port=settings.web_port or free_port(settings.web_host),
        web_bind=settings.web_host,
        web_host=settings.web_host,
        # Faust's own pages (router, tables, graph, stats) stay off: driftline serves
        # its API, /metrics and the dashboard (driftline.web), and "/" is the dashboard.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        **FAST_GROUP_TIMEOUTS,
    )
    from driftline.agents.delivery import agent as delivery
    from driftline.agents.join import agent as join
    from driftline.agents.monitor import agent as monitor
    from driftline.agents.retrain import trainer, trigger

    installers = {"join": join.install, "monitor": monitor.install,
                  "trigger": trigger.install, "trainer": trainer.install,
                  "delivery": delivery.install}
    installed: dict[str, Any] = {name: installers[name](app, settings)
                                 for name in AGENTS if name in agents}
    if settings.web_port:
        from driftline import web

        installed["web"] = web.install(app, settings)
    app.driftline = installed  # type: ignore[attr-defined]
    return app


def components(app: faust.App) -> dict[str, Any]:
    """What :func:`create_app` installed on ``app``: agent name -> its driftline object."""
    installed: dict[str, Any] = app.driftline  # type: ignore[attr-defined]
    return installed
