"""Processes the bench starts: each one on loopback, in its own session, stopped by PID.

Everything started goes through ``Server`` (or registers a stop callable with ``on_exit``) so
that ``stop_all`` — run by ``bench.__main__`` in a ``finally`` on success, exception, Ctrl-C and
SIGTERM — leaves nothing behind. Children run in a new session, so a terminal's Ctrl-C reaches
only the bench, which then stops them in order.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HOST = "127.0.0.1"
_cleanups: list[tuple[str, Callable[[], None]]] = []
warnings: list[str] = []  # reported with the results (e.g. a cluster that left a process behind)


def warn(text: str) -> None:
    warnings.append(text)
    print(f"warning: {text}", file=sys.stderr, flush=True)


def on_exit(name: str, stop: Callable[[], None]) -> Callable[[], None]:
    """Register ``stop`` to run in ``stop_all`` (newest first); returns a callable that runs it now, once."""
    entry = (name, stop)
    _cleanups.append(entry)

    def run_now() -> None:
        if entry in _cleanups:
            _cleanups.remove(entry)
            stop()

    return run_now


def stop_all() -> list[str]:
    """Run every registered stop, newest first; returns the errors (never raises)."""
    errors = []
    while _cleanups:
        name, stop = _cleanups.pop()
        try:
            stop()
        except BaseException as e:  # noqa: BLE001 - cleanup must go on
            errors.append(f"stopping {name}: {e!r}")
    return errors


def cleanup(workdir: Path | None = None) -> None:
    """Stop everything started (each failure becomes a warning), then remove the run's directory."""
    for error in stop_all():
        warn(error)
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc: "Server | None" = None) -> None:
    """Wait until something accepts TCP connections on HOST:port."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited with {proc.popen.returncode} before listening; see {proc.log}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout:.0f} s")
        time.sleep(0.05)


class Server:
    """One child process (argv, no shell), its output in ``log``; ``stop`` sends SIGTERM then SIGKILL by PID."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log: Path,
        *,
        env: dict | None = None,
        cwd: Path | None = None,
        grace_s: float = 15.0,
    ):
        self.name = name
        self.log = log
        self.grace_s = grace_s
        with log.open("wb") as out:
            self.popen = subprocess.Popen(  # noqa: S603
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self.pid = self.popen.pid
        self.stop = on_exit(name, self._stop)

    def _stop(self) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(self.grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(10)


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc/PID/status (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def run_tool(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """A short-lived tool (redis-benchmark, java -version ...): its output; killed by PID at the timeout."""
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,  # noqa: S603
        start_new_session=True,
        env=env,
    ) as proc:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise RuntimeError(f"{argv[0]} did not finish within {timeout:.0f} s: {out[-500:]}") from None
        except BaseException:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    return out


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class CpuMeter:
    """CPU seconds used by this process (the client) and by ``server_pids`` during a ``with`` block.

    Steadier than a rate on a shared machine (issue 17): a neighbour's load slows a run down but
    does not add to what the measured processes spend per message."""

    def __init__(self, server_pids: list[int]):
        self.server_pids = server_pids
        self.client = self.server = 0.0

    def __enter__(self) -> "CpuMeter":
        self._client0 = cpu_seconds(os.getpid())
        self._server0 = sum(map(cpu_seconds, self.server_pids))
        return self

    def __exit__(self, *_exc) -> None:
        self.client = cpu_seconds(os.getpid()) - self._client0
        self.server = sum(map(cpu_seconds, self.server_pids)) - self._server0

    def per_message(self, messages: int) -> dict:
        """µs of CPU a message: the client's, the servers', and their sum (Row.extra fields)."""
        if messages <= 0:
            return {}
        return {
            "client_cpu_us": round(self.client / messages * 1e6, 3),
            "server_cpu_us": round(self.server / messages * 1e6, 3),
            "cpu_us_per_msg": round((self.client + self.server) / messages * 1e6, 3),
        }
