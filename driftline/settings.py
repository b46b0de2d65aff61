"""One settings object, read from ``DRIFTLINE_*`` environment variables and CLI flags.

Every field of :class:`Settings` is a setting; its environment variable is
``DRIFTLINE_`` + the upper-cased field name. The defaults point at the embedded
stack that ``driftline stack up`` starts (Tansu on 9092, Valkey on 6379).

>>> s = Settings.from_env({"DRIFTLINE_PARTITIONS": "4"})
>>> s.partitions, s.topic("scored")
(4, 'driftline.scored')
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigError
from .settings_sections import (
    Batching,
    Connection,
    Delivery,
    Join,
    Loop,
    Monitoring,
    Topics,
    Web,
)

ENV_PREFIX = "DRIFTLINE_"

# Logical topic names (DESIGN.md) -> suffix after the prefix. From "expired" on they are
# driftline's own: predictions that expired unlabeled, the join's durable state, the
# monitor's input regrouped by model, and the monitor's periodic metrics per version.
TOPICS = {
    "predictions": "predictions",
    "labels": "labels",
    "scored": "scored",
    "alerts": "alerts",
    "retrain": "retrain",
    "models": "models",
    "deadletter": "deadletter",
    "expired": "expired",
    "join_state": "join-state",
    "monitor_input": "monitor-input",
    "metrics": "metrics",
    "alert_deliveries": "alert-deliveries",
    "delivery_progress": "delivery-progress",
}

_PREFIX_RE = re.compile(r"^[A-Za-z0-9._-]{0,100}$")
_HOST_RE = re.compile(r"\*|(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]{1,253})(:[0-9]{1,5})?")

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


# Settings that are secrets themselves, and settings that are URLs which may carry one
# (``redis://:password@host``). Nothing built from settings shows either: see redacted().
SECRET_FIELDS = ("kafka_sasl_password", "api_token", "webhook_secret", "webhook_secrets")
URL_FIELDS = ("kafka_url", "redis_url", "alertmanager_url")
# Webhook URLs carry their secret in the path (Slack's /services/T../B../xxxx): only
# scheme and host are ever shown.
WEBHOOK_FIELDS = ("alert_webhooks",)
MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with the password of its user part masked, for logs and messages.

    >>> redact_url("redis://:s3cret@cache:6379/0")
    'redis://:***@cache:6379/0'
    >>> redact_url("kafka://user:pw@a:9092,b:9092")
    'kafka://user:***@a:9092,b:9092'
    >>> redact_url("user:pw@a:9092"), redact_url("rediss://token@h/1")
    ('user:***@a:9092', 'rediss://***@h/1')
    >>> redact_url("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" not in authority:
        return url
    userinfo, _, hosts = authority.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    # redis-py reads "redis://secret@host" as a password without a user name, so a
    # user part without ':' is masked whole.
    masked = f"{user}:{MASK}" if colon else MASK
    return f"{scheme}{sep}{masked}@{hosts}{tail}"


def redact_webhook(url: str) -> str:
    """A webhook URL as scheme and host only: its path and query may be the secret.

    >>> redact_webhook("https://hooks.slack.com/services/T0/B0/XyZ"), redact_webhook("x")
    ('https://hooks.slack.com/***', '***')
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return MASK
    host = rest.split("/", 1)[0].rpartition("@")[2]
    return f"{scheme}://{host}/{MASK}"


@dataclass(frozen=True)
class Settings(Delivery, Web, Loop, Monitoring, Batching, Join, Topics, Connection):
    """driftline's configuration. Build with :meth:`from_env`; override with :meth:`replace`.

    Its fields are those of its sections (``settings_sections``), in the order listed last
    to first; this class checks them together and derives what the services need.
    """

    # --- printing ----------------------------------------------------------------

    def __repr__(self) -> str:
        shown = self.redacted()
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    __str__ = __repr__

    def redacted(self) -> dict[str, Any]:
        """Every setting by field name, safe to print or log: secrets as ``***`` (when
        set) and passwords inside URLs masked.

        >>> Settings(api_token="t", redis_url="redis://:pw@h:6379/0").redacted()["redis_url"]
        'redis://:***@h:6379/0'
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                value = MASK if value else ""
            elif f.name in URL_FIELDS:
                value = redact_url(value)
            elif f.name in WEBHOOK_FIELDS:
                value = ",".join(redact_webhook(u) for u in self.webhook_urls)
            out[f.name] = value
        return out

    # --- derived -----------------------------------------------------------------

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.topic_prefix):
            raise ConfigError(
                f"topic_prefix {self.topic_prefix!r} may only use letters, digits, '.', '_' and '-'"
            )
        for name in ("partitions", "replication_factor", "max_message_bytes",
                     "max_batch_events", "batch_size", "alert_backlog"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.holdout_fraction < 1:
            raise ConfigError(f"holdout_fraction must be between 0 and 1, got "
                              f"{self.holdout_fraction}")
        if not 0 <= self.promotion_margin < 1:
            raise ConfigError(f"promotion_margin must be in [0, 1), got {self.promotion_margin}")
        if self.promotion_metric not in ("auto", "log_loss", "brier", "error_rate"):
            raise ConfigError(f"promotion_metric must be auto, log_loss, brier or error_rate, "
                              f"got {self.promotion_metric!r}")
        if self.promotion not in ("immediate", "shadow"):
            raise ConfigError(f"promotion must be 'immediate' or 'shadow', got "
                              f"{self.promotion!r}")
        if self.shadow_pairs < 1 or self.canary_pairs < 0:
            raise ConfigError(f"shadow_pairs must be at least 1 and canary_pairs at least 0, "
                              f"got {self.shadow_pairs} and {self.canary_pairs}")
        if not 0 <= self.rollback_margin < 10:
            raise ConfigError(f"rollback_margin must be in [0, 10), got {self.rollback_margin}")
        if not 0 <= self.web_port <= 65535:
            raise ConfigError(f"web_port must be 0 (off) to 65535, got {self.web_port}")
        bad_hosts = [h for h in self.web_allowed_hosts.split(",")
                     if h.strip() and not _HOST_RE.fullmatch(h.strip())]
        if bad_hosts:
            raise ConfigError(f"DRIFTLINE_WEB_ALLOWED_HOSTS: {bad_hosts[0].strip()!r} is not "
                              f"a host name or address, with an optional :port (or *)")
        if self.training_max_pairs < 20:
            raise ConfigError(f"training_max_pairs must be at least 20, got "
                              f"{self.training_max_pairs}")
        for name in ("join_ttl", "dedupe_window", "max_future_skew", "expiry_interval",
                     "batch_wait",
                     "metrics_interval", "alert_resend_interval", "alert_delivery_timeout",
                     "alert_retry_max_delay"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be a positive number of seconds")
        if self.join_max_pending < 0:
            raise ConfigError("join_max_pending must be 0 (no cap) or a positive number")
        _ = self.bootstrap_servers  # validates kafka_url
        for name, urls in (("DRIFTLINE_ALERTMANAGER_URL", [self.alertmanager_url]),
                           ("DRIFTLINE_ALERT_WEBHOOKS", self.webhook_urls),
                           ("DRIFTLINE_DASHBOARD_URL", [self.dashboard_url])):
            bad = [u for u in urls if u and not u.startswith(("http://", "https://"))]
            if bad:
                shown = (redact_url(bad[0]) if name != "DRIFTLINE_ALERT_WEBHOOKS"
                         else redact_webhook(bad[0]))
                raise ConfigError(f"{name}: {shown!r} must be an http:// or https:// URL")
        _ = self.webhook_secret_by_place  # validates webhook_secrets
        self._check_kafka_security()
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"redis_url {redact_url(self.redis_url)!r} must start with "
                              f"redis://, rediss:// or unix://")
        if self.redis_ssl_cafile and not self.redis_url.startswith("rediss://"):
            raise ConfigError("DRIFTLINE_REDIS_SSL_CAFILE is only used over TLS: make "
                              "DRIFTLINE_REDIS_URL a rediss:// URL, or unset the CA file")

    def _check_kafka_security(self) -> None:
        protocol = self.kafka_security_protocol
        if protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(f"DRIFTLINE_KAFKA_SECURITY_PROTOCOL={protocol!r}: use one of "
                              f"{', '.join(SECURITY_PROTOCOLS)}")
        if self.kafka_sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(f"DRIFTLINE_KAFKA_SASL_MECHANISM={self.kafka_sasl_mechanism!r}: "
                              f"use one of {', '.join(SASL_MECHANISMS)}")
        if protocol.startswith("SASL_"):
            missing = [ENV_PREFIX + name.upper() for name in
                       ("kafka_sasl_username", "kafka_sasl_password") if not getattr(self, name)]
            if missing:
                raise ConfigError(f"DRIFTLINE_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                                  f"{' and '.join(missing)}")
        elif self.kafka_sasl_username or self.kafka_sasl_password:
            raise ConfigError("DRIFTLINE_KAFKA_SASL_USERNAME and _PASSWORD are only used with "
                              "DRIFTLINE_KAFKA_SECURITY_PROTOCOL=SASL_SSL or SASL_PLAINTEXT "
                              f"(it is {protocol})")
        files = [ENV_PREFIX + name.upper() for name in
                 ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
                 if getattr(self, name)]
        if files and protocol not in ("SSL", "SASL_SSL"):
            raise ConfigError(f"{', '.join(files)} only apply to TLS: set "
                              f"DRIFTLINE_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL (it is "
                              f"{protocol})")
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ConfigError("DRIFTLINE_KAFKA_SSL_KEYFILE needs DRIFTLINE_KAFKA_SSL_CERTFILE "
                              "(the certificate it belongs to)")

    @property
    def webhook_urls(self) -> list[str]:
        """``alert_webhooks`` as a list of URLs."""
        return [u.strip() for u in self.alert_webhooks.split(",") if u.strip()]

    @property
    def webhook_secret_by_place(self) -> dict[int, str]:
        """``webhook_secrets`` as {place of the webhook (from 1): its key}.

        >>> s = Settings(alert_webhooks="http://a/,http://b/", webhook_secrets="2=k2")
        >>> s.webhook_secret_by_place, s.webhook_key(1), s.webhook_key(2)
        ({2: 'k2'}, '', 'k2')
        """
        out: dict[int, str] = {}
        for i, entry in enumerate(e.strip() for e in self.webhook_secrets.split(",")):
            if not entry:
                continue
            place, eq, secret = entry.partition("=")
            # Never the entry itself in a message: it holds the secret.
            if not eq or not place.strip().isdigit() or not secret.strip():
                raise ConfigError(f"DRIFTLINE_WEBHOOK_SECRETS: entry {i + 1} must be N=secret "
                                  f"(N the webhook's place in DRIFTLINE_ALERT_WEBHOOKS)")
            n = int(place)
            if n in out:
                raise ConfigError(f"DRIFTLINE_WEBHOOK_SECRETS: webhook {n} is listed twice")
            if not 1 <= n <= len(self.webhook_urls):
                raise ConfigError(f"DRIFTLINE_WEBHOOK_SECRETS: there is no webhook {n} "
                                  f"(DRIFTLINE_ALERT_WEBHOOKS has {len(self.webhook_urls)})")
            out[n] = secret.strip()
        return out

    def webhook_key(self, place: int) -> str:
        """The signature key of the webhook at ``place`` (from 1); empty: unsigned."""
        return self.webhook_secret_by_place.get(place, self.webhook_secret)

    @property
    def delivery_group_id(self) -> str:
        """Consumer group of ``driftline delivery`` (apart from the worker's)."""
        return f"{self.group_id}-delivery"

    @property
    def bootstrap_servers(self) -> list[str]:
        """``kafka_url`` as aiokafka's ``host:port`` list."""
        url = self.kafka_url
        if "://" in url:
            scheme, _, url = url.partition("://")
            if scheme not in ("kafka", "aiokafka"):
                raise ConfigError(f"kafka_url {redact_url(self.kafka_url)!r}: use "
                                  f"kafka://host:port[,host:port]")
        servers = [s.strip() for s in url.split(",") if s.strip()]
        if not servers or any(not re.match(r"^[^:/\s]+:\d{1,5}$", s) for s in servers):
            raise ConfigError(f"kafka_url {redact_url(self.kafka_url)!r}: use "
                              f"kafka://host:port[,host:port] (credentials go in "
                              f"DRIFTLINE_KAFKA_SASL_USERNAME / _PASSWORD)")
        return servers

    def redis_options(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis.from_url`` beyond the URL (TLS CA file)."""
        return {"ssl_ca_certs": self.redis_ssl_cafile} if self.redis_ssl_cafile else {}

    @property
    def faust_broker(self) -> str:
        """``kafka_url`` in Faust's form (``kafka://a:1;kafka://b:2``)."""
        return ";".join(f"kafka://{s}" for s in self.bootstrap_servers)

    def topic(self, name: str) -> str:
        """Full topic name of a logical topic (``"scored"`` -> ``"driftline.scored"``)."""
        try:
            return self.topic_prefix + TOPICS[name]
        except KeyError:
            raise ConfigError(f"unknown topic {name!r}; known: {', '.join(TOPICS)}") from None

    # --- construction ------------------------------------------------------------

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Field name -> environment variable name, for every setting."""
        return {f.name: ENV_PREFIX + f.name.upper() for f in fields(cls)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``DRIFTLINE_*`` variables, then ``overrides`` (CLI flags; None = unset)."""
        environ = os.environ if environ is None else environ
        known = set(cls.env_names().values())
        unknown = sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known)
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        for f in fields(cls):
            env = ENV_PREFIX + f.name.upper()
            if env in environ:
                values[f.name] = _coerce(f, environ[env], env)
        for name, value in overrides.items():
            if value is None:
                continue
            if name not in {f.name for f in fields(cls)}:
                raise ConfigError(f"unknown setting {name!r}")
            values[name] = value
        return cls(**values)

    @property
    def trainer_group_id(self) -> str:
        """Consumer group of ``driftline trainer`` (apart from the worker's)."""
        return f"{self.group_id}-trainer"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def as_env(self) -> dict[str, str]:
        """These settings as ``DRIFTLINE_*`` variables (to hand to a subprocess)."""
        return {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}


def _coerce(f: dataclasses.Field[Any], raw: str, env: str) -> Any:
    if f.type in ("bool", bool):
        flag = {"1": True, "true": True, "yes": True, "on": True,
                "0": False, "false": False, "no": False, "off": False}.get(raw.strip().lower())
        if flag is None:
            raise ConfigError(f"{env}={raw!r} is not a valid bool (true or false)")
        return flag
    kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str}[f.type]
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{env}={raw!r} is not a valid {kind.__name__}") from None
