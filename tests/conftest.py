"""Shared fixtures: one real embedded stack per session, a fresh namespace per test.

The broker comes from one switch: ``--broker tansu|kafka`` or ``DRIFTLINE_TEST_BROKER``
(default ``tansu``). ``kafka`` is Apache Kafka (``EmbeddedStack(kafka="apache")``). Marks:

* ``kafka``: the Apache Kafka tier, ``DRIFTLINE_TEST_BROKER=kafka pytest -m kafka``
  (``.ci/run`` runs it after the whole suite on Tansu);
* ``kafka_only``: what only real Kafka can show; skipped on Tansu (implies ``kafka``);
* ``tansu_only``: about a Tansu quirk; skipped on Kafka.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from driftline.embedded import EmbeddedStack
from driftline.settings import Settings

BROKERS = {"tansu": "tansu", "kafka": "apache"}  # test switch -> EmbeddedStack(kafka=...)


def pytest_addoption(parser):
    parser.addoption("--broker", choices=sorted(BROKERS),
                     default=os.environ.get("DRIFTLINE_TEST_BROKER") or "tansu",
                     help="the Kafka broker of the integration tests [env: DRIFTLINE_TEST_BROKER]")


def pytest_configure(config):
    if config.getoption("--broker") not in BROKERS:  # a bad DRIFTLINE_TEST_BROKER
        raise pytest.UsageError(f"DRIFTLINE_TEST_BROKER must be one of {sorted(BROKERS)}")
    # Read; now out of the way: Settings.from_env refuses DRIFTLINE_* names it does not know.
    os.environ.pop("DRIFTLINE_TEST_BROKER", None)


def pytest_collection_modifyitems(config, items):
    broker = config.getoption("--broker")
    for item in items:
        if item.get_closest_marker("kafka_only"):
            item.add_marker(pytest.mark.kafka)
            if broker != "kafka":
                item.add_marker(pytest.mark.skip(
                    reason="needs Apache Kafka: run with --broker kafka "
                           "(DRIFTLINE_TEST_BROKER=kafka)"))
        if item.get_closest_marker("tansu_only") and broker != "tansu":
            item.add_marker(pytest.mark.skip(reason="about a Tansu quirk; not on " + broker))


@pytest.fixture(scope="session")
def broker(pytestconfig) -> str:
    """``"tansu"`` or ``"kafka"``: the broker this session tests on."""
    return pytestconfig.getoption("--broker")


@pytest.fixture(scope="session")
def stack(broker):
    """The broker + Valkey, started once for the whole session (real services, no mocks)."""
    with EmbeddedStack(kafka=BROKERS[broker]) as st:
        yield st


@pytest.fixture(scope="module")
def own_stack(broker):
    """A stack of the module's own, for tests that stop and restart its services."""
    with EmbeddedStack(kafka=BROKERS[broker]) as st:
        yield st


def namespace(stack: EmbeddedStack) -> Settings:
    """Settings with a fresh topic prefix, consumer group and registry prefix on ``stack``."""
    tag = uuid.uuid4().hex[:10]
    return Settings(kafka_url=stack.kafka_url, redis_url=stack.redis_url,
                    topic_prefix=f"t{tag}.", group_id=f"g{tag}", partitions=4,
                    expiry_interval=0.5, registry_prefix=f"r{tag}:", web_port=0)


@pytest.fixture
def settings(stack) -> Settings:
    """Settings with this test's own topic prefix and consumer group."""
    return namespace(stack)


class WorkerProcess:
    """``driftline worker`` (or ``command``, e.g. ``trainer``) as a real subprocess,
    logging to a file."""

    def __init__(self, settings: Settings, log_path: Path, command: str = "worker") -> None:
        self.settings = settings
        self.log_path = log_path
        self.command = command
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
        env.update(self.settings.as_env())
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "driftline", self.command],
                                     env=env,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"worker ignored SIGTERM for {timeout}s\n{self.log()}") from None
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]



@pytest.fixture
def worker_factory(tmp_path):
    """Start workers for a test; any still running are stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(settings: Settings, name: str = "worker", command: str = "worker") -> WorkerProcess:
        w = WorkerProcess(settings, tmp_path / f"{name}-{len(started)}.log", command).start()
        started.append(w)
        return w

    yield start
    for w in started:
        if w.alive():
            w.stop()
