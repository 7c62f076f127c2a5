"""A running ``myqueue cluster up`` seen from outside: start it, find its children, hurt them, stop it.

``LocalCluster`` runs the real command as a child process the way a user does, waits for its
ready line and state file, and talks to its control API (``control.py``) to list children by PID,
to restart its private PostgreSQL, and to check on ``stop`` that the supervisor left no process
behind (stragglers are SIGKILLed by PID, then reported). ``myqueue verify --local`` and the test
suite (``tests/localcluster.py``) both drive clusters through it. Supervising is the supervisor's
business; this module only watches it from the outside. Not thread-safe: one owner.
"""

import json
import os
import queue
import signal
import subprocess  # noqa: S404 - argv lists only, never a shell
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from myqueue.core.defaults import DEFAULT_HOST
from myqueue.net.envelope import CallFailed, EnvelopeClient

from .ports import free_port

T = TypeVar("T")

READY_PREFIX = "myqueue cluster ready: "
READY_TIMEOUT_S = 90.0  # the supervisor's own startup limit plus headroom
STOP_TIMEOUT_S = 120.0  # brokers, then replica, then primary (15 s each at worst), then PostgreSQL (60 s)
CONTROL_TIMEOUT_S = 5.0  # one control API call (except PostgreSQL start/stop)
POSTGRES_CALL_TIMEOUT_S = 130.0  # pg_ctl stop or start (60 s each at worst) plus headroom
RESTART_TIMEOUT_S = 30.0  # a killed child runs again and answers /readyz
POLL_S = 0.1
HOST = DEFAULT_HOST
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding myqueue/: children run our code


class LocalClusterError(RuntimeError):
    """The local cluster did not do what was asked in time."""


class ClusterStartError(LocalClusterError, AssertionError):
    """``cluster up`` exited or printed no ready line in time; carries its stderr.

    Also an AssertionError, so a test that fails to start a cluster reads as a failed test.
    """


def wait_for(
    condition: Callable[[], T], timeout: float, what: str | Callable[[], str], interval: float = POLL_S
) -> T:
    """Poll ``condition`` until it returns something truthy and return that; LocalClusterError after
    ``timeout`` seconds (``what`` may be a callable, evaluated only then, for diagnostics), naming the
    last answer too: a condition that returns a falsy object carrying what it saw is shown by it."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            raise LocalClusterError(
                f"timed out after {timeout:.1f} s waiting for {described} (last: {result!r})"
            )
        time.sleep(interval)


class LocalCluster:
    """One supervisor process and what it reported."""

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
        netns: bool = False,
        pg_proxy: bool = False,
        env: Mapping[str, str] | None = None,
    ):
        self.workdir = workdir
        self.extra_env = dict(env or {})  # e.g. MYQUEUE_SYNCHRONOUS_COMMIT for every broker
        self.store = store
        self.brokers = brokers
        self.host = HOST
        self.primary_port = primary_port or free_port(HOST)
        self.replica_port = replica_port or _other_free_port(self.primary_port)
        self.state_file = workdir / "cluster-state.json"
        self.stderr_path = workdir / "supervisor.stderr"
        self.argv = [
            sys.executable,
            "-m",
            "myqueue",
            "cluster",
            "up",
            "--brokers",
            str(brokers),
            "--store",
            store,
            "--host",
            HOST,
            "--primary-port",
            str(self.primary_port),
            "--replica-port",
            str(self.replica_port),
            "--state-file",
            str(self.state_file),
        ]
        if netns:
            self.argv.append("--netns")
        if pg_proxy:
            self.argv.append("--pg-proxy")
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

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- addresses ------------------------------------------------------------------------
    @property
    def primary_url(self) -> str:
        return self.state.get("primary") or f"http://{self.host}:{self.primary_port}"

    @property
    def replica_url(self) -> str:
        return self.state.get("replica") or f"http://{self.host}:{self.replica_port}"

    @property
    def primary_address(self) -> str:
        """host:port of the primary, as clients take it (a namespace's address with --netns)."""
        return self.primary_url.removeprefix("http://")

    @property
    def supervisor_pid(self) -> int:
        if self._process is None:
            raise RuntimeError("launch() first")
        return self._process.pid

    # --- life -----------------------------------------------------------------------------
    def start(self, timeout: float = READY_TIMEOUT_S) -> "LocalCluster":
        """Launch `cluster up` and wait for its ready line and state file."""
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the supervisor process without waiting for it (see ``wait_ready``)."""
        path = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, **self.extra_env, "PYTHONPATH": path}
        env.pop("MYQUEUE_LAUNCHER_TOKEN", None)
        with self.stderr_path.open("wb") as stderr:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
                self.argv,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        threading.Thread(target=self._read_stdout, name="cluster-stdout", daemon=True).start()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> "LocalCluster":
        if self._process is None:
            raise RuntimeError("launch() first")
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

    def exit_code(self) -> int | None:
        """The supervisor's exit code once it has exited by itself; None while it runs."""
        return self._process.poll() if self._process is not None else None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM the supervisor by PID, wait for it, and check that none of its children is
        left (stragglers are SIGKILLed by PID, then reported). Returns its exit code; idempotent."""
        if self._process is None or self.returncode is not None:
            return self.returncode if self.returncode is not None else 0
        if self._process.poll() is None:
            try:
                self.processes()
            except (ValueError, KeyError, LocalClusterError):
                pass  # still starting, or its control API is gone: the PIDs seen so far will do
            os.kill(self._process.pid, signal.SIGTERM)
        try:
            self.returncode = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self._process.pid, signal.SIGKILL)
            self.returncode = self._process.wait()
            self._kill_stragglers()
            raise LocalClusterError(
                f"the supervisor did not exit within {timeout:.0f} s of SIGTERM\n{self.stderr_tail()}"
            ) from None
        stragglers = self._kill_stragglers()
        if stragglers:
            raise LocalClusterError(
                f"processes left behind by the supervisor: {stragglers}\n{self.stderr_tail()}"
            )
        return self.returncode

    # --- the control API ------------------------------------------------------------------
    def processes(self) -> dict[str, dict[str, Any]]:
        """GET /processes; every PID seen is remembered for the leak check in ``stop``."""
        processes = self._control("GET", "/processes")
        for name, info in processes.items():
            if info.get("pid"):
                self._seen_pids[info["pid"]] = name
        return processes

    def pid(self, name: str) -> int:
        pid = self.processes()[name]["pid"]
        if not pid:
            raise LocalClusterError(f"{name} is not running: {self.processes()[name]}")
        return pid

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to the child ``name`` by the PID the supervisor reports; returns that PID."""
        pid = self.pid(name)
        os.kill(pid, sig)
        return pid

    def is_ready(self, name: str) -> bool:
        """The child ``name`` runs and answers /readyz with 200."""
        info = self.processes().get(name) or {}
        if not info.get("pid") or not info.get("address"):
            return False
        try:
            with EnvelopeClient() as client:
                return client.send("GET", f"{info['address']}/readyz", timeout=2).status == 200
        except CallFailed:
            return False

    def wait_restarted(self, name: str, old_pid: int, timeout: float = RESTART_TIMEOUT_S) -> dict[str, Any]:
        """Wait until ``name`` runs under a new PID and answers /readyz; returns its process entry."""
        last: dict[str, Any] = {}

        def restarted_and_ready() -> dict[str, Any]:  # {} while not yet
            nonlocal last
            last = self.processes()[name]
            if last["pid"] in (None, old_pid):
                return {}
            return last if self.is_ready(name) else {}

        return wait_for(restarted_and_ready, timeout, lambda: f"{name} to be back: {last}")

    def stop_postgres(self) -> None:
        """Stop the supervisor's private PostgreSQL (fast mode); the services stay up."""
        self._control("POST", "/postgres/stop", timeout=POSTGRES_CALL_TIMEOUT_S)

    def start_postgres(self) -> None:
        """Start the supervisor's private PostgreSQL again and wait until it accepts connections."""
        self._control("POST", "/postgres/start", timeout=POSTGRES_CALL_TIMEOUT_S)

    def cut(self, target: str) -> None:
        """Cut the traffic of ``target`` (a broker's name, ``primary`` or ``postgres``); needs --netns."""
        self._control("POST", f"/partitions/{target}/cut")

    def heal(self, target: str) -> None:
        """Restore the traffic ``cut`` cut."""
        self._control("POST", f"/partitions/{target}/heal")

    def pg_proxy_faults(
        self, probability: float = 0.0, seconds: float = 0.0, black_hole_s: float = 0.0
    ) -> dict:
        """Start the PostgreSQL proxy's faults (needs ``pg_proxy``); returns its counters."""
        body = {"probability": probability, "seconds": seconds, "black_hole_s": black_hole_s}
        return self._control("POST", "/pg-proxy/faults", json=body)

    def pg_proxy_counters(self) -> dict[str, Any]:
        """The PostgreSQL proxy's counters: connections, statements, lost_replies, resets, black_holes."""
        return self._control("GET", "/pg-proxy")

    def _control(
        self, method: str, path: str, timeout: float = CONTROL_TIMEOUT_S, json: object = None
    ) -> Any:
        """One call to the supervisor's control API; every failure is a LocalClusterError."""
        try:
            with EnvelopeClient(token=self.state["token"]) as client:
                return client.message(
                    method, f"{self.state['control_url']}{path}", json_body=json, timeout=timeout
                )
        except CallFailed as e:
            if e.answered:
                raise LocalClusterError(f"{method} {path} answered {e.status}: {e.text}") from e
            raise LocalClusterError(f"{method} {path}: {e.reach} ({e.__cause__})") from e

    # --- diagnostics ------------------------------------------------------------------------
    def stderr_tail(self, lines: int = 150) -> str:
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return "--- supervisor stderr (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    def _read_stdout(self) -> None:
        if self._process is None or self._process.stdout is None:
            raise RuntimeError("launch() first")
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _fail_start(self, what: str) -> None:
        try:
            self.stop()
        except LocalClusterError as error:
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
    return wait_for(lambda: (port := free_port(HOST)) != taken and port, 5, "a second free port")


def _alive(pid: int) -> bool:
    """A live (not zombie) process that still runs myqueue code: never a reused PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z" and b"myqueue" in cmdline
