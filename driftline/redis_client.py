"""The one place a Redis client is built: URL, TLS CA file and timeouts.

Every Redis client driftline makes (the registry, the serving client, the monitor's
baseline lookups, the dashboard, ``/healthz``, ``driftline health``) comes from
:func:`redis_client`, so TLS and timeouts cannot differ by accident. Callers that
really need other timeouts pick a named :class:`Timeouts` profile:

>>> REGISTRY.socket, INTERACTIVE.socket, HOT_PATH.socket
(10.0, 2.0, 1.0)
>>> Timeouts.flat(3)
Timeouts(socket=3.0, connect=3.0, health_check_interval=30.0)

This module imports only ``redis`` and driftline's leaf modules, so the registry in
``driftline.models`` can use it without reaching up into Kafka or the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis


@dataclass(frozen=True)
class Timeouts:
    """Seconds a Redis call may take (``socket``), a connection may take to open
    (``connect``), and a pooled connection may sit idle before it is pinged before use
    (``health_check_interval``: a connection a server or proxy dropped meanwhile fails
    that ping and is replaced, instead of failing the caller's command)."""

    socket: float
    connect: float
    health_check_interval: float = 30.0

    @classmethod
    def flat(cls, seconds: float) -> Timeouts:
        """The same limit for calls and connecting (``driftline health --timeout``)."""
        return cls(float(seconds), float(seconds))


# The registry, the trainer, ``driftline models`` and ModelClient: a register or a load
# moves a whole artifact, and a slow Redis is better waited for than failed.
REGISTRY = Timeouts(socket=10.0, connect=5.0)
# Something a person or a probe is waiting on: the dashboard's API and /healthz answer
# within a few seconds, with an error if need be.
INTERACTIVE = Timeouts(socket=2.0, connect=2.0)
# Called from inside an agent's batch (the monitor's baseline lookup): an unreachable
# Redis must cost the stream at most a second, once (the caller then caches the miss).
HOT_PATH = Timeouts(socket=1.0, connect=1.0)


def redis_client(url: str, *, timeout: Timeouts = REGISTRY,
                 ssl_ca_certs: str | None = None) -> redis.Redis:
    """A client for ``url`` (``redis://[:password@]host:port/db``, ``rediss://`` for TLS,
    ``unix://``); ``ssl_ca_certs`` verifies a ``rediss://`` server against that CA bundle
    instead of the system's CAs. Over ``rediss://`` the server's certificate must name the
    URL's host, said here rather than left to redis-py's default (5.x did not check it)."""
    extra: dict[str, Any] = {"ssl_ca_certs": ssl_ca_certs} if ssl_ca_certs else {}
    if url.startswith("rediss://"):
        extra.update(ssl_cert_reqs="required", ssl_check_hostname=True)
    return redis.Redis.from_url(url, socket_timeout=timeout.socket,
                                socket_connect_timeout=timeout.connect,
                                health_check_interval=timeout.health_check_interval, **extra)


def settings_redis_client(settings: Any, *, timeout: Timeouts = REGISTRY) -> redis.Redis:
    """:func:`redis_client` for what ``settings`` (a :class:`~driftline.settings.Settings`)
    say: ``DRIFTLINE_REDIS_URL`` and ``DRIFTLINE_REDIS_SSL_CAFILE``."""
    return redis_client(settings.redis_url, timeout=timeout,
                        ssl_ca_certs=settings.redis_ssl_cafile or None)
