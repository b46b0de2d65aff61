"""Apache Kafka for the embedded stack: a single-node KRaft broker from Maven Central's jars.

``EmbeddedStack(kafka="apache")`` runs the broker production runs, in miniature: a durable
log dir, compaction, transactions, SASL and TLS listeners. The jars of the pinned
``org.apache.kafka:kafka_2.13`` (:data:`KAFKA_VERSION`) and their runtime dependencies are
resolved once with Maven, from the ``broker/pom.xml`` shipped in this package, into
``~/.cache/driftline/kafka-<version>/libs`` (``XDG_CACHE_HOME`` moves it; not a
``DRIFTLINE_*`` variable, which Settings would refuse as unknown). Then :class:`ApacheKafka`:

* formats a KRaft log dir (``kafka-storage format --standalone``, a random cluster id,
  SCRAM users added at format time) unless it is formatted already: a restart keeps it;
* starts ``kafka.Kafka`` as a combined broker + controller with a small heap, under
  :mod:`driftline.embedded._supervise` like every embedded service (no orphan after a
  kill -9);
* is ready when a Metadata request on its PLAINTEXT listener names a broker.

``python -m driftline.embedded.apache_kafka`` resolves the jars and prints where they are
(CI does this before the Apache Kafka tier, through the same code).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import uuid
from importlib import resources
from pathlib import Path

from ..errors import StackError
from ..ports import free_port
from .service import Service

KAFKA_VERSION = "4.1.1"
"""The Apache Kafka release driftline is tested on (the docker-compose image too)."""

JAVA_MIN = 17  # Kafka 4.x brokers need Java 17+ (KIP-1013)
INSTALL_JAVA = "apt-get install openjdk-17-jre-headless (or set JAVA_HOME to a JDK 17+)"
INSTALL_MAVEN = "apt-get install maven"


def cache_dir() -> Path:
    """Where downloaded brokers live: ``$XDG_CACHE_HOME/driftline`` or ``~/.cache/driftline``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "driftline"


def java_binary() -> str:
    """``$JAVA_HOME/bin/java`` or ``java`` on PATH, checked to be Java 17 or newer."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise StackError(f"Apache Kafka {KAFKA_VERSION} needs Java {JAVA_MIN}+ and there is "
                         f"no java here: {INSTALL_JAVA}")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True,
                             timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(f"cannot run {java} -version ({exc}): {INSTALL_JAVA}") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0_392"
        major = int(match.group(2))
    if major < JAVA_MIN:
        raise StackError(f"Apache Kafka {KAFKA_VERSION} needs Java {JAVA_MIN}+, {java} is "
                         f"Java {major or 'unknown'}: {INSTALL_JAVA}")
    return java


def resolve_jars(version: str = KAFKA_VERSION) -> Path:
    """The directory of the broker's jars, resolved with Maven on first use.

    Maven writes into a temporary directory next to the cache entry, which is renamed
    into place only when complete: an interrupted download is never mistaken for a
    broker, and two processes resolving at once both end up with a whole one."""
    home = cache_dir() / f"kafka-{version}"
    libs = home / "libs"
    if (libs / f"kafka_2.13-{version}.jar").is_file():
        return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError(f"resolving Apache Kafka {version} needs Maven (mvn) and Maven "
                         f"Central: {INSTALL_MAVEN}")
    home.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=home))
    pom = resources.files("driftline.embedded") / "broker" / "pom.xml"
    with resources.as_file(pom) as pom_path:
        cmd = [mvn, "-q", "-B", "-f", str(pom_path), f"-Dkafka.version={version}",
               "dependency:copy-dependencies", "-DincludeScope=runtime",
               f"-DoutputDirectory={staging}"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not (staging / f"kafka_2.13-{version}.jar").is_file():
        shutil.rmtree(staging, ignore_errors=True)
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise StackError(f"Maven could not resolve org.apache.kafka:kafka_2.13:{version} "
                         f"(is Maven Central reachable?):\n" + "\n".join(tail))
    try:
        staging.rename(libs)
    except OSError:  # another process got there first
        shutil.rmtree(staging, ignore_errors=True)
    return libs


def random_cluster_id() -> str:
    """A KRaft cluster id as ``kafka-storage random-uuid`` makes one (base64url, no padding,
    never starting with ``-`` so no command line mistakes it for an option)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def metadata_brokers(host: str, port: int, timeout: float = 1.0) -> int:
    """Number of brokers a Metadata v4 request on ``host:port`` lists (0 if none answered).

    A bare request on a socket, not an aiokafka client: readiness checks run from sync
    code, inside or outside an event loop. Kafka 4 dropped Metadata v0-v3 (KIP-896)."""
    client = b"driftline-stack"
    # header v1: api_key 3 (Metadata), api_version 4, correlation id, client id;
    # body: topics = [] (none), allow_auto_topic_creation = false
    body = struct.pack(">hhih", 3, 4, 1, len(client)) + client + struct.pack(">ib", 0, 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = _recv(s, 4)
            size = struct.unpack(">i", head)[0]
            reply = _recv(s, min(size, 12))
    except OSError:
        return 0
    if len(reply) < 12:
        return 0
    correlation, _throttle, brokers = struct.unpack(">iii", reply[:12])
    return brokers if correlation == 1 else 0


def _recv(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


class ApacheKafka(Service):
    """One KRaft node (broker + controller) on loopback, its log dir in ``log_dir``.

    ``port`` is the PLAINTEXT listener (``kafka_url``); the controller listens on
    ``controller_port``. With ``sasl_ssl_port`` a second listener speaks SASL_SSL with
    SCRAM-SHA-512, serving ``keystore`` (a PEM file holding the unencrypted PKCS#8 key and
    the certificate chain); ``scram_users`` (name -> password) are created at format time.
    ``config`` adds or overrides broker properties.
    """

    grace = 20.0  # a controlled shutdown writes the log's clean-shutdown marker

    def __init__(self, port: int, host: str, log_dir: Path, log_path: Path, *,
                 controller_port: int | None = None, sasl_ssl_port: int | None = None,
                 keystore: str | Path | None = None, scram_users: dict[str, str] | None = None,
                 config: dict[str, str] | None = None, heap: str = "512m",
                 version: str = KAFKA_VERSION) -> None:
        super().__init__("apache-kafka", [], port, host, log_path)
        self.log_dir = Path(log_dir)
        self.controller_port = controller_port or free_port(host)
        self.sasl_ssl_port = sasl_ssl_port
        if sasl_ssl_port and not keystore:
            raise StackError("a SASL_SSL listener needs keystore= (PEM key + certificate)")
        self.keystore = keystore
        self.scram_users = dict(scram_users or {})
        self.extra_config = dict(config or {})
        self.heap = heap
        self.version = version

    def properties(self) -> dict[str, str]:
        """The broker's ``server.properties``."""
        h = self.host
        listeners = {"PLAINTEXT": self.port, "CONTROLLER": self.controller_port}
        advertised = [f"PLAINTEXT://{h}:{self.port}"]
        if self.sasl_ssl_port:
            listeners["SASL_SSL"] = self.sasl_ssl_port
            advertised.append(f"SASL_SSL://{h}:{self.sasl_ssl_port}")
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": ",".join(f"{n}://{h}:{p}" for n, p in listeners.items()),
            "advertised.listeners": ",".join(advertised),
            "listener.security.protocol.map": ",".join(
                f"{n}:{'PLAINTEXT' if n == 'CONTROLLER' else n}" for n in listeners),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.quorum.bootstrap.servers": f"{h}:{self.controller_port}",
            "log.dirs": str(self.log_dir),
            # One node: every internal topic has one replica, and is small.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "1",
            # As in production (docker-compose.yml): driftline creates every topic itself.
            "auto.create.topics.enable": "false",
            # A laptop-sized broker: few threads, a small cleaner buffer; the cleaner looks
            # for work every second instead of 15 s so compaction shows up in a test.
            "num.network.threads": "2",
            "num.io.threads": "4",
            "background.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            "log.cleaner.backoff.ms": "1000",
            # Room above driftline's own limit (DRIFTLINE_MAX_MESSAGE_BYTES, 1 MiB): an
            # oversized input reaches the worker and is dead-lettered, as on Tansu, instead
            # of being refused by the broker at 1 MiB + 12 bytes (Kafka's default).
            "message.max.bytes": str(4 * 1024 * 1024),
        }
        if self.sasl_ssl_port:
            props.update({
                "sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
                "listener.name.sasl_ssl.ssl.keystore.location": str(self.keystore),
            })
        props.update(self.extra_config)
        return props

    def _java(self, libs: Path, main: str, *args: str, heap: str, extra: list[str]) -> list[str]:
        logcfg = resources.files("driftline.embedded") / "broker" / "log4j2.properties"
        return [java_binary(), f"-Xmx{heap}", "-XX:+UseSerialGC", "-XX:-UsePerfData",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={logcfg}",
                *extra, "-cp", f"{libs}/*", main, *args]

    def start(self, timeout: float = 90.0) -> None:
        libs = resolve_jars(self.version)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        config = self.log_dir.parent / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        if not (self.log_dir / "meta.properties").exists():  # a restart keeps its log
            self._format(libs, config)
        self.argv = self._java(libs, "kafka.Kafka", str(config), heap=self.heap,
                               extra=[f"-Xms{self.heap}"])
        super().start(timeout)

    def _format(self, libs: Path, config: Path) -> None:
        args = ["format", "-t", random_cluster_id(), "-c", str(config), "--standalone"]
        for name, password in self.scram_users.items():
            args += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
        cmd = self._java(libs, "kafka.tools.StorageTool", *args, heap="256m",
                         extra=["-XX:TieredStopAtLevel=1"])
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:  # the output names no password: it echoes no arguments
            raise StackError(f"kafka-storage format failed for {self.log_dir}:\n"
                             f"{(done.stdout + done.stderr).strip()[-2000:]}")

    def ping(self) -> bool:
        return metadata_brokers(self.host, self.port) > 0


if __name__ == "__main__":
    try:
        java_binary()
        print(resolve_jars())
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
