"""driftline commands as supervised child processes (``driftline up`` and ``demo``).

Each child runs under :mod:`driftline.embedded._supervise` with a pipe whose write end only
this process holds: if this process dies, even by SIGKILL, the pipe closes and
the children are stopped. Leaving the context stops them with SIGTERM (SIGKILL
after ``grace`` seconds).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import IO

STOPPED_OK = (0, 128 + signal.SIGTERM)


@contextlib.contextmanager
def supervised(commands: list[list[str]], env: Mapping[str, str], *, grace: float = 30.0,
               output: IO[bytes] | int | None = None) -> Iterator[list[subprocess.Popen]]:
    """``driftline`` sub-commands (``["worker"]``, ``["trainer"]``, ...) as children."""
    read_end, owner_pipe = os.pipe()
    procs: list[subprocess.Popen] = []
    try:
        for command in commands:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "driftline.embedded._supervise", "--grace", str(grace), "--",
                 sys.executable, "-m", "driftline", *command],
                env=dict(env), stdin=read_end, stdout=output, stderr=output))
        os.close(read_end)
        read_end = -1
        yield procs
    finally:
        if read_end >= 0:
            os.close(read_end)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(grace + 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        os.close(owner_pipe)
