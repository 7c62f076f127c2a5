"""A `myqueue cluster up` run as a test fixture: the real supervisor, real processes, loopback.

``LocalCluster`` starts the command the way a user does, waits for its ready line, talks to its
control API to find and kill children by PID, and on ``stop`` checks that the supervisor left no
process behind (SIGKILLing stragglers by PID so one failing test cannot poison the next).
"""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from tests.helpers import free_port, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_PREFIX = "myqueue cluster ready: "
READY_TIMEOUT_S = 90.0  # the supervisor's own startup limit plus headroom
STOP_TIMEOUT_S = 120.0  # brokers, then replica, then primary (15 s each at worst), then PostgreSQL (60 s)
HOST = "127.0.0.1"


class ClusterStartError(AssertionError):
    """`cluster up` exited or printed no ready line in time; carries its stderr."""


class LocalCluster:
    """One supervisor process and what it reported; use through the ``local_cluster`` fixture."""

    def __init__(
        self,
        workdir: Path,
        *,
        store: str = "memory",
        brokers: int = 3,
        dsn: str | None = None,
        data_dir: Path | None = None,
        primary_port: int | None = None,
        replica_port: int | None = None,
    ):
        self.workdir = workdir
        self.store = store
        self.brokers = brokers
        self.host = HOST
        self.primary_port = primary_port or free_port(HOST)
        self.replica_port = replica_port or _other_free_port(self.primary_port)
        self.state_file = workdir / "cluster-state.json"
        self.stderr_path = workdir / "supervisor.stderr"
        self.argv = [
            sys.executable, "-m", "myqueue", "cluster", "up",
            "--brokers", str(brokers), "--store", store, "--host", HOST,
            "--primary-port", str(self.primary_port), "--replica-port", str(self.replica_port),
            "--state-file", str(self.state_file),
        ]
        if dsn is not None:
            self.argv += ["--dsn", dsn]
        elif data_dir is not None:
            self.argv += ["--data-dir", str(data_dir)]
        self.ready_line: str | None = None
        self.state: dict[str, Any] = {}
        self.returncode: int | None = None
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._seen_pids: dict[int, str] = {}  # every child PID the control API ever reported

    # --- addresses ------------------------------------------------------------------------
    @property
    def primary_url(self) -> str:
        return f"http://{self.host}:{self.primary_port}"

    @property
    def replica_url(self) -> str:
        return f"http://{self.host}:{self.replica_port}"

    @property
    def supervisor_pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    # --- life -----------------------------------------------------------------------------
    def start(self, timeout: float = READY_TIMEOUT_S) -> "LocalCluster":
        """Launch `cluster up` and wait for its ready line and state file."""
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the supervisor process without waiting for it (see ``wait_ready``)."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
        env.pop("MYQUEUE_LAUNCHER_TOKEN", None)
        with self.stderr_path.open("wb") as stderr:
            self._process = subprocess.Popen(
                self.argv, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=stderr, text=True, start_new_session=True,
            )
        threading.Thread(target=self._read_stdout, name="cluster-stdout", daemon=True).start()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> "LocalCluster":
        assert self._process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while self.ready_line is None:
            try:
                line = self._lines.get(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
            except queue.Empty:
                line = ""
            if line is None or self._process.poll() is not None:
                self._fail_start(f"`cluster up` exited with {self._process.wait()} before it was ready")
            if line and line.startswith(READY_PREFIX):
                self.ready_line = line.rstrip("\n")
            elif line:
                self._fail_start(f"unexpected line on stdout: {line!r}")
            elif time.monotonic() > deadline:
                self._fail_start(f"no ready line within {timeout:.0f} s")
        self.state = json.loads(self.state_file.read_text())
        self.processes()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM the supervisor by PID, wait for it, and check that none of its children is
        left (stragglers are SIGKILLed by PID, then reported). Returns its exit code; idempotent."""
        if self._process is None or self.returncode is not None:
            return self.returncode if self.returncode is not None else 0
        if self._process.poll() is None:
            try:
                self.processes()
            except (requests.RequestException, ValueError, KeyError):
                pass  # still starting, or its control API is gone: the PIDs seen so far will do
            os.kill(self._process.pid, signal.SIGTERM)
        try:
            self.returncode = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self._process.pid, signal.SIGKILL)
            self.returncode = self._process.wait()
            self._kill_stragglers()
            raise AssertionError(f"the supervisor did not exit within {timeout:.0f} s of SIGTERM\n{self.stderr_tail()}") from None
        stragglers = self._kill_stragglers()
        assert not stragglers, f"processes left behind by the supervisor: {stragglers}\n{self.stderr_tail()}"
        return self.returncode

    # --- the control API ------------------------------------------------------------------
    def processes(self) -> dict[str, dict[str, Any]]:
        """GET /processes; every PID seen is remembered for the leak check in ``stop``."""
        response = requests.get(
            f"{self.state['control_url']}/processes",
            headers={"Authorization": f"Bearer {self.state['token']}"},
            timeout=5,
        )
        response.raise_for_status()
        processes = response.json()["message"]
        for name, info in processes.items():
            if info.get("pid"):
                self._seen_pids[info["pid"]] = name
        return processes

    def pid(self, name: str) -> int:
        pid = self.processes()[name]["pid"]
        assert pid, f"{name} is not running: {self.processes()[name]}"
        return pid

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to the child ``name`` by the PID the supervisor reports; returns that PID."""
        pid = self.pid(name)
        os.kill(pid, sig)
        return pid

    def wait_restarted(self, name: str, old_pid: int, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until ``name`` runs under a new PID and answers /readyz; returns its process entry."""
        last: dict[str, Any] = {}

        def restarted_and_ready() -> dict[str, Any] | None:
            nonlocal last
            last = self.processes()[name]
            if last["pid"] in (None, old_pid):
                return None
            try:
                ready = requests.get(f"{last['address']}/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return None
            return last if ready else None

        return wait_until(restarted_and_ready, timeout, interval=0.1, message=lambda: f"{name} not back: {last}")

    # --- diagnostics ------------------------------------------------------------------------
    def stderr_tail(self, lines: int = 150) -> str:
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return "--- supervisor stderr (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    def _read_stdout(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _fail_start(self, what: str) -> None:
        try:
            self.stop()
        except AssertionError as error:
            what += f"; and on stop: {error}"
        raise ClusterStartError(f"{what}\ncommand: {' '.join(self.argv)}\n{self.stderr_tail()}")

    def _kill_stragglers(self) -> dict[int, str]:
        stragglers = {pid: name for pid, name in self._seen_pids.items() if _alive(pid)}
        for pid in stragglers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return stragglers


def _other_free_port(taken: int) -> int:
    return wait_until(lambda: (port := free_port(HOST)) != taken and port, 5, message="no second free port")


def _alive(pid: int) -> bool:
    """A live (not zombie) process that still runs myqueue code: never a reused PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z" and b"myqueue" in cmdline
