"""Small Kafka helpers shared by the worker, the SDK and the tests.

The one broker quirk driftline works around lives here: Tansu's
``ListOffsets(latest)`` returns the base offset of a partition's last record
batch + 1 instead of the last offset + 1 (DESIGN.md, "Traps"). Anything that
needs "the end of a partition" calls :func:`true_end_offset`, which trusts the
high watermark of a real Fetch; on Apache Kafka both agree, so the code is
correct there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    GroupCoordinatorNotAvailableError,
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)
from aiokafka.partitioner import murmur2

from .errors import ConfigError, TopicError
from .settings import Settings

log = logging.getLogger(__name__)

# How long a fetch may wait for records, for every consumer driftline builds (the worker's,
# whose 1,500 ms Faust hard-codes, and the readers that rebuild state). Tansu answers a
# fetch only after ~450 ms at 1,500 even when records are waiting (measured: 450 ms per
# hop at 1500, 5 ms at 100; tests/test_kafka_quirks.py), and every stage of the pipeline
# is a hop, so a label took seconds to reach the monitor. A record produced while a fetch
# is parked waits for that fetch to time out: at 100 ms a hop took ~60 ms (p50) between
# stages, at 20 ms ~20 ms. A rebuild makes a few fetches per partition: with aiokafka's
# 500 ms default the monitor took 3-4 s to rebuild 8 nearly empty partitions, the join and
# the trigger 0.5 s each, at 20 ms 0.06-0.09 s (bench/harness.py (c), traced). Real Kafka
# answers as soon as fetch_min_bytes (1) is there, so a short wait only adds empty fetches
# while idle (50 a second per consumer).
FETCH_MAX_WAIT_MS = 20


def client_options(settings: Settings) -> dict[str, Any]:
    """Where and how every aiokafka client driftline builds connects: the bootstrap
    servers and the security settings (``DRIFTLINE_KAFKA_SECURITY_PROTOCOL`` and the
    SASL and TLS settings that go with it)."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers,
                               "security_protocol": protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if protocol.startswith("SASL_"):
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password)
    return options


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of ``SSL`` and ``SASL_SSL`` (None for the others): the system's CAs
    or ``DRIFTLINE_KAFKA_SSL_CAFILE``, and a client certificate for mutual TLS."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    try:
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
        if settings.kafka_ssl_certfile:
            context.load_cert_chain(settings.kafka_ssl_certfile,
                                    settings.kafka_ssl_keyfile or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the Kafka TLS files (DRIFTLINE_KAFKA_SSL_CAFILE, "
                          f"_CERTFILE, _KEYFILE): {exc}") from None
    return context


async def security_error(settings: Settings, timeout: float = 10.0) -> ConfigError | None:
    """Why clients cannot connect, when the reason is a setting: an untrusted broker
    certificate or a refused SASL login, as a :class:`ConfigError` that names the
    ``DRIFTLINE_KAFKA_*`` setting to fix (never the password). None otherwise (e.g. the
    broker is down: a retry can help).

    aiokafka's bootstrap logs each broker's error and raises only "Unable to bootstrap";
    one bare connection here gets the real error back. Retrying a wrong password or an
    untrusted CA cannot help, so callers fail fast on what this returns."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    options = client_options(settings)
    for server in settings.bootstrap_servers:
        host, _, port = server.rpartition(":")
        try:
            conn = await create_conn(
                host.strip("[]"), int(port), ssl_context=options.get("ssl_context"),
                security_protocol=protocol, request_timeout_ms=int(timeout * 1000),
                sasl_mechanism=options.get("sasl_mechanism", "PLAIN"),
                sasl_plain_username=options.get("sasl_plain_username"),
                sasl_plain_password=options.get("sasl_plain_password"))
        except ssl.SSLCertVerificationError as exc:
            trusted = settings.kafka_ssl_cafile or "the system's CA certificates"
            return ConfigError(
                f"the TLS certificate of Kafka at {server} is not trusted by {trusted} "
                f"({exc.verify_message}): set DRIFTLINE_KAFKA_SSL_CAFILE to the CA "
                f"certificate that signed it")
        except ssl.SSLError as exc:
            return ConfigError(
                f"no TLS handshake with Kafka at {server} ({exc.reason or exc}): check "
                f"DRIFTLINE_KAFKA_SECURITY_PROTOCOL={protocol} against the broker's "
                f"listener, and DRIFTLINE_KAFKA_SSL_CERTFILE/_KEYFILE if it wants mutual TLS")
        except (SaslAuthenticationFailed, UnsupportedSaslMechanismError,
                IllegalSaslStateError) as exc:
            return ConfigError(
                f"Kafka at {server} refused the SASL login of "
                f"DRIFTLINE_KAFKA_SASL_USERNAME={settings.kafka_sasl_username!r} with "
                f"DRIFTLINE_KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism} "
                f"({type(exc).__name__}): check DRIFTLINE_KAFKA_SASL_USERNAME, "
                f"DRIFTLINE_KAFKA_SASL_PASSWORD and the mechanism")
        except (TimeoutError, OSError, KafkaError):
            continue  # unreachable, not misconfigured: a retry may help
        conn.close()
    return None


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (Java, murmur2) partitioner picks for ``key``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


async def ensure_topics(settings: Settings, names: Iterable[str], *,
                        configs: dict[str, dict[str, str]] | None = None,
                        check_counts: bool = True, timeout: float = 30.0) -> None:
    """Create missing topics with ``settings.partitions``; refuse existing ones that differ.

    A topic that exists with another partition count would silently break the
    co-partitioning the join relies on, so it is an error, not a warning (unless
    ``check_counts`` is false: a producer only needs the topics to exist).
    """
    names = list(dict.fromkeys(names))
    configs = configs or {}
    admin = AIOKafkaAdminClient(**client_options(settings),
                                request_timeout_ms=int(timeout * 1000))
    await _retry_start(admin.start, "admin client", timeout, settings)
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            new = [NewTopic(n, settings.partitions, settings.replication_factor,
                            topic_configs=configs.get(n, {})) for n in missing]
            try:
                await admin.create_topics(new, timeout_ms=int(timeout * 1000))
            except TopicAlreadyExistsError:
                pass  # another worker won the race; checked below
            log.info("created topics %s with %d partitions", missing, settings.partitions)
        counts = await partition_counts(admin, names, timeout)
    finally:
        await admin.close()
    wrong = {n: c for n, c in counts.items() if check_counts and c != settings.partitions}
    if wrong:
        listed = ", ".join(f"{n} has {c}" for n, c in sorted(wrong.items()))
        raise TopicError(
            f"topics exist with the wrong partition count ({listed}; expected "
            f"{settings.partitions}): set DRIFTLINE_PARTITIONS to match, or use another "
            f"DRIFTLINE_TOPIC_PREFIX")


async def partition_counts(admin: AIOKafkaAdminClient, names: list[str],
                           timeout: float = 30.0) -> dict[str, int]:
    """Partition count of each topic, waiting until metadata shows all of them."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await admin.describe_topics(names)
        counts = {d["topic"]: len(d["partitions"]) for d in described
                  if not d.get("error_code") and d["partitions"]}
        if len(counts) == len(names):
            return counts
        if asyncio.get_running_loop().time() > deadline:
            raise TopicError(f"topics {sorted(set(names) - counts.keys())} did not appear")
        await asyncio.sleep(0.1)


async def _retry_start(start, what: str, timeout: float,
                       settings: Settings | None = None) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    delay = 0.1
    checked = settings is None
    while True:
        try:
            await start()
            return
        except KafkaError as exc:
            if settings is not None and not checked:  # once: a wrong password or CA
                checked = True                             # fails now, not after timeout
                error = await security_error(settings)
                if error is not None:
                    raise error from None
            if asyncio.get_running_loop().time() + delay > deadline:
                raise TopicError(f"could not start the Kafka {what}: {exc}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


@contextlib.asynccontextmanager
async def opened_reader(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    """A started :func:`reader`, stopped on leaving (and if it could not start: an
    unstopped consumer warns when collected)."""
    consumer = reader(settings)
    try:
        await consumer.start()
        yield consumer
    finally:
        await consumer.stop()


def reader(settings: Settings) -> AIOKafkaConsumer:
    """A group-less consumer for reading partitions by hand (recovery, tests)."""
    return AIOKafkaConsumer(
        **client_options(settings), group_id=None,
        enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )


async def true_end_offset(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    """Offset after the last record of ``tp``, from a Fetch's high watermark.

    ``end_offsets`` is only a lower bound on Tansu; fetching from just before it
    returns the real high watermark. ``consumer`` must have ``tp`` assigned; its
    position is left wherever the probe fetch ended.
    """
    listed = int((await consumer.end_offsets([tp]))[tp])
    if listed == 0:
        return 0
    consumer.seek(tp, listed - 1)
    for _ in range(50):
        await consumer.getmany(tp, timeout_ms=200, max_records=1)
        high = consumer.highwater(tp)
        if high is not None:
            return max(int(high), listed)
    raise TopicError(f"no fetch response for {tp.topic}[{tp.partition}] in 10s")


async def read_partition(consumer: AIOKafkaConsumer, topic: str, partition: int,
                         start: int = 0, batch: int = 10_000,
                         end: int | None = None) -> AsyncIterator[list]:
    """Yield lists of the records of one partition with ``start <= offset < end``
    (default: to its true end when called), then stop."""
    tp = TopicPartition(topic, partition)
    consumer.assign([tp])
    if end is None:
        end = await true_end_offset(consumer, tp)
    if start >= end:
        return
    consumer.seek(tp, start)
    position = start
    while position < end:
        got = await consumer.getmany(tp, timeout_ms=1000, max_records=batch)
        records = got.get(tp, [])
        if records:
            position = records[-1].offset + 1
            if position > end:
                records = [r for r in records if r.offset < end]
            yield records
        else:
            position = await consumer.position(tp)


async def group_states(admin, groups: list[str]) -> dict[str, tuple[str, int]]:
    """(state, number of members) of each consumer group, e.g. ``("Stable", 1)``."""
    states = {}
    for group in groups:  # one per request: Tansu drops the connection otherwise
        try:
            responses = await admin.describe_consumer_groups([group])
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
            # Apache Kafka, before any group has committed: __consumer_offsets does not
            # exist yet, so no broker coordinates the group. It is not running (yet).
            states[group] = ("CoordinatorNotAvailable", 0)
            continue
        for response in responses:
            # DescribeGroups: (error, group_id, state, protocol_type, protocol, members)
            for g in response.groups:
                states[g[1]] = (g[2], len(g[5]))
    return states


async def wait_for_groups(settings: Settings, groups: list[str], timeout: float = 60.0) -> None:
    """Wait until each consumer group is ``Stable`` with at least one member (its workers
    have joined and own their partitions); raises TopicError after ``timeout`` seconds."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await _retry_start(admin.start, "admin client", timeout, settings)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            states = await group_states(admin, groups)
            waiting = [g for g in groups if states.get(g, ("", 0))[0] != "Stable"
                       or not states[g][1]]
            if not waiting:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TopicError(f"consumer group(s) {', '.join(waiting)} not ready after "
                                 f"{timeout:.0f}s")
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
