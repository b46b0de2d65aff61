"""One service binary on a loopback port, run under :mod:`driftline.embedded._supervise`
in its own process group, so it goes down with its owner even when the owner is SIGKILLed.
Tansu, Valkey and Apache Kafka (:class:`~driftline.embedded.apache_kafka.ApacheKafka`) are
each one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import StackError
from ..ports import port_is_free


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
                [sys.executable, "-m", "driftline.embedded._supervise", "--grace", str(self.grace),
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
