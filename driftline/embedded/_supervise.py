"""Run one service binary and take it down with its owner, whatever kills the owner.

Usage (:class:`driftline.embedded.Service` and :mod:`driftline.embedded.processes` do
this): ``python -m driftline.embedded._supervise [--grace S] -- BINARY ARGS...`` with
stdin a pipe whose write end only the owner holds. The exit status is the service's, or
128 + N if a signal N ended it (the shell's convention).

* The supervisor starts a new session, so the service sits in its own process
  group: stopping kills the whole group, and a Ctrl-C meant for the owner's
  terminal never reaches the broker half-way through a test.
* It watches stdin: when the owner dies (even by SIGKILL) the kernel closes the
  pipe, ``read`` returns EOF, and the supervisor terminates the group.
* On Linux the service also gets ``PR_SET_PDEATHSIG``, so it dies even if the
  supervisor itself is SIGKILLed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the service; SIGKILL the whole group if it is still there after ``grace``.

    Never waits on ``proc`` itself: the main thread sits in ``proc.wait()`` holding
    Popen's lock, so a second wait (from a signal handler or the watcher) could not reap
    it. The main thread's wait returns when the service exits, ending this process."""
    proc.terminate()

    def kill_later() -> None:
        time.sleep(grace)
        os.killpg(os.getpgid(0), signal.SIGKILL)  # takes this supervisor down too

    threading.Thread(target=kill_later, daemon=True).start()


def main(argv: list[str]) -> int:
    grace = 5.0
    if argv[:1] == ["--grace"]:
        grace, argv = float(argv[1]), argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m driftline.embedded._supervise -- BINARY [ARGS...]", file=sys.stderr)
        return 2
    if os.getpid() != os.getsid(0):
        os.setsid()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)

    def watch_owner() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        _stop_group(proc, grace)

    threading.Thread(target=watch_owner, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: _stop_group(proc, grace))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = proc.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
