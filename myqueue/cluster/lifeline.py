"""Tie the children's lives to the supervisor's, so that a SIGKILLed supervisor leaves no orphan.

Two mechanisms, because no one fits every child:

- the services (our own processes) get ``PR_SET_PDEATHSIG`` = SIGKILL, set in the forked child
  before exec: the kernel kills them when the thread that forked them ends. So children are
  forked only from long-lived threads (each ``ManagedChild``'s watcher, which lives as long as
  the child is watched), never from a control-API request thread, which ends after its request;
- a private PostgreSQL daemonises (pg_ctl starts it, it is not our child), so a small watchdog
  process holds the read end of a pipe whose write end only the supervisor holds: when the
  supervisor dies the pipe reaches EOF with nothing written, and the watchdog runs
  ``pg_ctl stop``. A normal shutdown writes one byte first, which disarms it.

Elsewhere than Linux there is no PDEATHSIG and only the watchdog works.
"""

import ctypes
import ctypes.util
import os
import signal
import subprocess  # noqa: S404 - argv lists only, never a shell
import sys
from collections.abc import Callable, Sequence

_PR_SET_PDEATHSIG = 1
_DISARM = b"d"


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()  # looked up here, in the parent: the forked child only calls it


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when its forking thread ends (None if
    the platform cannot)."""
    if _prctl is None:
        return None
    parent = os.getpid()
    prctl = _prctl

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:  # the supervisor died between fork and prctl
            os._exit(126)

    return preexec


class Watchdog:
    """Runs ``argv`` once if this process dies without calling ``disarm`` first."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None):
        self._process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "myqueue.cluster.lifeline", *argv],
            stdin=subprocess.PIPE,
            env=env,
            start_new_session=True,  # not stopped by the terminal's Ctrl-C
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    def disarm(self, timeout: float = 5.0) -> None:
        """We are stopping what it guards ourselves: let it exit without acting."""
        stdin = self._process.stdin
        if stdin is not None and not stdin.closed:
            try:
                stdin.write(_DISARM)
                stdin.close()
            except OSError:
                pass
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _watch(argv: list[str]) -> int:
    """The watchdog process: wait for EOF on stdin; act unless disarmed."""
    if sys.stdin.buffer.read() == _DISARM:
        return 0
    return subprocess.run(argv, check=False, stdin=subprocess.DEVNULL).returncode  # noqa: S603


if __name__ == "__main__":
    sys.exit(_watch(sys.argv[1:]))
