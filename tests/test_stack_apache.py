"""The embedded Apache Kafka: formats, serves, keeps its log across a restart, leaves
nothing behind (not even after a kill -9 of its owner), and says what to install."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from test_stack import processes_in_groups, wait_until

from driftline.embedded import EmbeddedStack
from driftline.embedded.apache_kafka import (
    KAFKA_VERSION,
    java_binary,
    metadata_brokers,
    resolve_jars,
)
from driftline.errors import StackError
from driftline.ports import port_is_free

pytestmark = pytest.mark.integration


def test_missing_java_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(StackError, match="needs Java 17.*apt-get install openjdk-17"):
        java_binary()


def test_missing_maven_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn here
    with pytest.raises(StackError, match="needs Maven.*apt-get install maven"):
        resolve_jars()


def test_the_pom_pins_the_version_the_code_runs():
    from importlib import resources

    pom = (resources.files("driftline.embedded") / "broker" / "pom.xml").read_text()
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom


async def roundtrip(url: str, topic: str, values: list[bytes]) -> list[bytes]:
    """Produce ``values`` (if any) in a transaction, then read the topic from the start."""
    servers = url.removeprefix("kafka://")
    if values:
        producer = AIOKafkaProducer(bootstrap_servers=servers, transactional_id=topic)
        await producer.start()
        try:
            async with producer.transaction():
                for v in values:
                    await producer.send(topic, v)
        finally:
            await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, group_id=None,
                                auto_offset_reset="earliest", isolation_level="read_committed")
    await consumer.start()
    try:
        got = await consumer.getmany(timeout_ms=10_000)
        return [r.value for records in got.values() for r in records]
    finally:
        await consumer.stop()


@pytest.mark.kafka_only
def test_serves_transactions_keeps_its_log_across_a_restart_and_cleans_up():
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def create(url):
        admin = AIOKafkaAdminClient(bootstrap_servers=url.removeprefix("kafka://"))
        await admin.start()
        try:
            await admin.create_topics([NewTopic("t", 1, 1)])
        finally:
            await admin.close()

    with EmbeddedStack(kafka="apache") as st:
        log_dir = st.kafka.log_dir
        assert (log_dir / "meta.properties").is_file()
        assert len(processes_in_groups({st.kafka.pid})) == 2  # supervisor + JVM
        asyncio.run(create(st.kafka_url))
        assert asyncio.run(roundtrip(st.kafka_url, "t", [b"a", b"b"])) == [b"a", b"b"]
        st.restart("kafka")  # the log dir stays: a durable broker
        assert asyncio.run(roundtrip(st.kafka_url, "t", [])) == [b"a", b"b"]
        group, ports = st.kafka.pid, (st.kafka_port, st.kafka.controller_port)
    assert processes_in_groups({group}) == []
    assert all(port_is_free(p) for p in ports)
    assert not log_dir.exists()


@pytest.mark.kafka_only
def test_keep_leaves_the_log_dir():
    st = EmbeddedStack(kafka="apache", keep=True).start()
    try:
        assert metadata_brokers(st.host, st.kafka_port) == 1
    finally:
        st.stop()
    try:
        assert (st.kafka.log_dir / "meta.properties").is_file()
    finally:
        import shutil
        shutil.rmtree(st.workdir)


OWNER = """
import time
from driftline.embedded import EmbeddedStack
st = EmbeddedStack(kafka="apache").start()
print(st.kafka.pid, st.kafka_port, st.kafka.controller_port, flush=True)
time.sleep(600)
"""


@pytest.mark.kafka_only
def test_no_broker_survives_a_kill_9_of_its_owner():
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True,
                             env={k: v for k, v in os.environ.items()})
    group, *ports = map(int, owner.stdout.readline().split())
    assert len(processes_in_groups({group})) == 2
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    owner.stdout.close()
    assert wait_until(lambda: processes_in_groups({group}) == [], timeout=30), \
        processes_in_groups({group})
    assert all(port_is_free(p) for p in ports)
