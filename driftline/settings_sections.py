"""The settings, in sections: each section is a frozen dataclass of fields with their
``doc``, and :class:`driftline.settings.Settings` is all of them together.

The sections are what the settings reference groups by (``docs/reference/settings.md``);
validation across fields lives with :class:`~driftline.settings.Settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True)
class Connection:
    """Where Kafka and Redis are, and how driftline connects to them."""

    kafka_url: str = field(
        default="kafka://127.0.0.1:9092",
        metadata=_doc("Kafka bootstrap servers, `kafka://host:port[,host:port]` or `host:port`."),
    )
    kafka_security_protocol: str = field(
        default="PLAINTEXT",
        metadata=_doc(
            "How every Kafka client connects: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`."
        ),
    )
    kafka_sasl_mechanism: str = field(
        default="PLAIN",
        metadata=_doc(
            "SASL mechanism with a `SASL_*` protocol: `PLAIN`, `SCRAM-SHA-256` or "
            "`SCRAM-SHA-512`."
        ),
    )
    kafka_sasl_username: str = field(
        default="", metadata=_doc("SASL user name; required with a `SASL_*` protocol.")
    )
    kafka_sasl_password: str = field(
        default="",
        metadata=_doc("SASL password; required with a `SASL_*` protocol (never printed)."),
    )
    kafka_ssl_cafile: str = field(
        default="",
        metadata=_doc(
            "CA bundle (PEM) that signs the brokers' certificates, with `SSL` or `SASL_SSL` "
            "(empty: the system's CAs)."
        ),
    )
    kafka_ssl_certfile: str = field(
        default="",
        metadata=_doc("Client certificate (PEM) for mutual TLS, with `SSL` or `SASL_SSL`."),
    )
    kafka_ssl_keyfile: str = field(
        default="",
        metadata=_doc(
            "Private key (PEM) of `DRIFTLINE_KAFKA_SSL_CERTFILE` (empty: it is in the certificate"
            " file)."
        ),
    )
    redis_url: str = field(
        default="redis://127.0.0.1:6379/0",
        metadata=_doc(
            "Redis URL for the model registry (`redis://`, `rediss://` for TLS; "
            "`redis://:password@host:port/db`)."
        ),
    )
    redis_ssl_cafile: str = field(
        default="",
        metadata=_doc(
            "CA bundle (PEM) that signs the Redis server's certificate, with a `rediss://` URL "
            "(empty: the system's CAs)."
        ),
    )


@dataclass(frozen=True)
class Topics:
    """Names and shapes of driftline's topics and Redis keys."""

    registry_prefix: str = field(
        default="driftline:", metadata=_doc("Prefix of every Redis key of the model registry.")
    )
    topic_prefix: str = field(
        default="driftline.", metadata=_doc("Prefix of every topic name.")
    )
    partitions: int = field(
        default=8,
        metadata=_doc("Partitions of every topic driftline creates; existing topics must match."),
    )
    replication_factor: int = field(
        default=1, metadata=_doc("Replication factor of the topics driftline creates.")
    )
    group_id: str = field(
        default="driftline-worker",
        metadata=_doc("Kafka consumer group (Faust app id) of the worker."),
    )


@dataclass(frozen=True)
class Join:
    """How long the join waits for a pair's other half, and what it remembers."""

    join_ttl: float = field(
        default=86400.0,
        metadata=_doc(
            "Seconds a prediction waits for its label (and a label for its prediction) before it "
            "expires."
        ),
    )
    max_future_skew: float = field(
        default=300.0,
        metadata=_doc(
            "Seconds an event's ts may be ahead of the worker's clock; a later one is clamped to "
            "the clock (and counted), so one forged far-future event cannot push the monitor's "
            "event-time clock, its cooldowns or superseded versions forward. Past times are "
            "kept (backfills)."
        ),
    )
    join_max_pending: int = field(
        default=250_000,
        metadata=_doc(
            "Most predictions (and most labels) waiting for their other half, per join "
            "partition; past it the oldest are expired early and counted "
            "(driftline_join_shed_total), so the state within the TTL stays bounded. 0: "
            "no cap."
        ),
    )
    dedupe_window: float = field(
        default=86400.0,
        metadata=_doc(
            "Seconds an already scored prediction_id is remembered, so re-sent events make no "
            "second pair."
        ),
    )
    expiry_interval: float = field(
        default=5.0, metadata=_doc("Seconds between sweeps for expired join entries.")
    )


@dataclass(frozen=True)
class Batching:
    """What one message and one batch may hold, and how agents take them."""

    max_message_bytes: int = field(
        default=1_048_576,
        metadata=_doc("Largest accepted message value in bytes; larger ones are dead-lettered."),
    )
    max_batch_events: int = field(
        default=10_000,
        metadata=_doc("Most events in one JSON-array message; larger batches are dead-lettered."),
    )
    batch_size: int = field(
        default=500, metadata=_doc(
            "Most messages an agent (join, monitor) takes as one batch (a message may be "
            "an array of events)."
        )
    )
    batch_delivery: bool = field(
        default=True, metadata=_doc(
            "Agents get each fetch whole (one handler call per fetch, acknowledged by "
            "offset range) instead of through Faust's per-message path; `false` goes back "
            "to Faust's. Needs faust-streaming 0.15.3 (the version pinned)."
        )
    )
    batch_wait: float = field(
        default=0.05,
        metadata=_doc("With DRIFTLINE_BATCH_DELIVERY=false: seconds an agent waits to fill a "
                     "batch before processing what it has (batch delivery takes each fetch "
                     "as it comes)."),
    )


@dataclass(frozen=True)
class Monitoring:
    """The monitor's configuration file and its metric records."""

    monitor_config: str = field(
        default="",
        metadata=_doc("Path of the per-model monitoring TOML file (empty: defaults for all)."),
    )
    metrics_interval: float = field(
        default=5.0,
        metadata=_doc("Seconds between the monitor's metric records on the metrics topic."),
    )


@dataclass(frozen=True)
class Loop:
    """The closed loop: training, promotion, shadow, canary and rollback."""

    training_max_pairs: int = field(
        default=50_000,
        metadata=_doc(
            "Most scored pairs a retrain trains on: the model's most recent ones after the drift "
            "point."
        ),
    )
    holdout_fraction: float = field(
        default=0.2,
        metadata=_doc(
            "Most recent share of the training pairs held out to compare challenger and champion."
        ),
    )
    promotion_margin: float = field(
        default=0.02,
        metadata=_doc(
            "A challenger is promoted when its holdout loss (MSE; a classifier's "
            "`DRIFTLINE_PROMOTION_METRIC`) is this fraction below the champion's."
        ),
    )
    promotion_metric: str = field(
        default="auto",
        metadata=_doc(
            "What the holdout, shadow scoring and the canary judge a classifier by: `log_loss`, "
            "`brier` or `error_rate` (`auto`: `log_loss`). A binary model's `error_rate` counts "
            "P(1) at or above its monitor config's `decision_threshold` as 1; `log_loss` and "
            "`brier` do not depend on it. A regression is always judged by MSE."
        ),
    )
    promotion: str = field(
        default="immediate",
        metadata=_doc(
            "`immediate`: a challenger that wins on the holdout becomes champion at once; "
            "`shadow`: it gets the alias `challenger` and is scored on live pairs first."
        ),
    )
    shadow_pairs: int = field(
        default=2000,
        metadata=_doc(
            "Live pairs a `challenger` is shadow-scored on before it is promoted (its MSE beats "
            "the champion's on the same pairs by `DRIFTLINE_PROMOTION_MARGIN`) or rejected."
        ),
    )
    canary_pairs: int = field(
        default=2000,
        metadata=_doc(
            "Live pairs of a newly promoted champion compared with the previous champion's "
            "shadow score on the same pairs (or its holdout MSE); `0` turns the canary off."
        ),
    )
    rollback_margin: float = field(
        default=0.1,
        metadata=_doc(
            "The canary rolls a new champion back when its live MSE is this fraction above "
            "the previous champion's (0.1 = 10 % worse)."
        ),
    )
    trainer: str = field(
        default="driftline.models.selection:train_selected",
        metadata=_doc(
            "Training function, `module:function`: `(X, y, feature_names)` -> a `LinearModel`; "
            "the default drops constant, near-duplicate and unhelpful features, then fits ridge "
            "(`driftline.models.training:train_ridge` keeps every feature)."
        ),
    )


@dataclass(frozen=True)
class Web:
    """The worker's HTTP server: API, `/metrics` and dashboard."""

    web_host: str = field(
        default="127.0.0.1",
        metadata=_doc("Address the worker's HTTP server (API, `/metrics`, dashboard) binds to."),
    )
    web_port: int = field(
        default=6066,
        metadata=_doc("Port of the worker's HTTP server; `0` turns it off."),
    )
    web_allowed_hosts: str = field(
        default="",
        metadata=_doc(
            "Comma-separated `Host` header values the HTTP server answers (`name:port`, or "
            "`name` for any port; `*`: any); others get a 421, which defeats DNS "
            "rebinding. Empty: `DRIFTLINE_WEB_HOST`, `localhost`, `127.0.0.1` and `[::1]`, "
            "each with `DRIFTLINE_WEB_PORT`. `/healthz` answers any `Host`."
        ),
    )
    api_token: str = field(
        default="",
        metadata=_doc(
            "Bearer token for the API, `/metrics` and the dashboard (`Authorization: Bearer "
            "<token>`; `?token=` only opens the dashboard page); required, of at least 16 "
            "characters, when `DRIFTLINE_WEB_HOST` is not loopback."
        ),
    )
    log_level: str = field(default="info", metadata=_doc("Log level of the worker."))


@dataclass(frozen=True)
class Delivery:
    """Where `driftline delivery` sends alerts, and how it retries."""

    alertmanager_url: str = field(
        default="",
        metadata=_doc(
            "Alertmanager base URL (`http://am:9093`); `driftline delivery` POSTs every alert to "
            "its `/api/v2/alerts` (empty: none)."
        ),
    )
    alert_webhooks: str = field(
        default="",
        metadata=_doc(
            "Comma-separated webhook URLs `driftline delivery` POSTs every alert to, as JSON "
            "with a Slack-compatible `text` (only their hosts are ever printed)."
        ),
    )
    webhook_secret: str = field(
        default="",
        metadata=_doc(
            "Default key of the webhook signature, `X-Driftline-Signature: v1=<hex>`, an "
            "HMAC-SHA256 of the timestamp, the `Idempotency-Key` and the body (README, "
            "\"Delivering alerts\"); empty: unsigned; never printed."
        ),
    )
    webhook_secrets: str = field(
        default="",
        metadata=_doc(
            "Per-webhook signature keys, comma-separated `N=secret` (N: the webhook's place "
            "in `DRIFTLINE_ALERT_WEBHOOKS`, from 1); a webhook not listed uses "
            "`DRIFTLINE_WEBHOOK_SECRET`. Never printed."
        ),
    )
    alert_resend_interval: float = field(
        default=60.0,
        metadata=_doc(
            "Seconds between re-sends of a firing alert to Alertmanager (it ends an alert "
            "not re-sent within 4 intervals)."
        ),
    )
    alert_delivery_timeout: float = field(
        default=10.0,
        metadata=_doc("Seconds one delivery request may take before it counts as failed and "
                      "is retried."),
    )
    alert_retry_max_delay: float = field(
        default=30.0,
        metadata=_doc("Longest wait between retries of a failed delivery (the backoff doubles "
                      "from 0.5 s up to it; retries never stop)."),
    )
    alert_backlog: int = field(
        default=10_000,
        metadata=_doc("Alerts waiting for one receiver (per target) before delivery stops "
                      "reading new ones: a receiver that is down holds back only itself until "
                      "this many wait for it."),
    )
    dashboard_url: str = field(
        default="",
        metadata=_doc(
            "The dashboard's address as receivers should link it (Alertmanager's "
            "`generatorURL`); empty: `http://DRIFTLINE_WEB_HOST:DRIFTLINE_WEB_PORT/`."
        ),
    )
