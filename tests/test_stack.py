"""The embedded stack: starts real services, stops them, and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import redis

from driftline.embedded import EmbeddedStack
from driftline.errors import StackError
from driftline.ports import port_is_free

pytestmark = pytest.mark.integration


def processes_in_groups(pgids: set[int]) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) in pgids:  # state, ppid, pgrp
                found.append(int(entry))
    return found


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_context_manager_serves_and_cleans_up():
    with EmbeddedStack() as st:
        assert redis.Redis.from_url(st.redis_url).ping()
        groups = {st.kafka.pid, st.redis.pid}
        assert len(processes_in_groups(groups)) == 4  # two supervisors, two servers
        ports = (st.kafka_port, st.redis_port)
    assert processes_in_groups(groups) == []
    assert all(port_is_free(p) for p in ports)


def test_a_picked_port_taken_before_start_is_picked_again():
    """The OS's pick is free when picked: a process that takes it before the service
    starts (any connection's ephemeral port can) makes the stack pick another, not fail."""
    st = EmbeddedStack()
    with socket.socket() as taker:
        taker.bind(("127.0.0.1", st.redis_port))
        taken = st.redis_port
        with st:
            assert st.redis_port != taken and redis.Redis.from_url(st.redis_url).ping()
    given = EmbeddedStack(redis_port=taken)
    with socket.socket() as taker:
        taker.bind(("127.0.0.1", taken))
        with pytest.raises(StackError, match="in use"):
            given.start()


OWNER = """
import sys, time
from driftline.embedded import EmbeddedStack
from driftline.errors import StackError
st = EmbeddedStack().start()
print(st.kafka.pid, st.redis.pid, st.kafka_port, st.redis_port, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_no_service_survives_its_owner(sig):
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    try:
        kafka_group, redis_group, *ports = map(int, owner.stdout.readline().split())
        groups = {kafka_group, redis_group}
        assert len(processes_in_groups(groups)) == 4
        owner.send_signal(sig)
        owner.wait(10)
    finally:  # a failure above must not leave the owner running into later tests
        owner.kill()
        owner.wait(10)
        owner.stdout.close()
    assert wait_until(lambda: processes_in_groups(groups) == [], timeout=10), \
        processes_in_groups(groups)
    assert all(port_is_free(p) for p in ports)


def test_busy_port_is_a_clear_error():
    with EmbeddedStack() as st:
        from driftline.errors import StackError

        with pytest.raises(StackError, match=f"port {st.redis_port} .* is in use"):
            EmbeddedStack(redis_port=st.redis_port).start()


def test_supervisor_reports_a_signal_the_shell_way():
    done = subprocess.run([sys.executable, "-m", "driftline.embedded._supervise", "--", "sh", "-c",
                           "kill -TERM $$"], stdin=subprocess.DEVNULL, timeout=30)
    assert done.returncode == 128 + signal.SIGTERM
