"""One supervised child process: started, watched, restarted with backoff, stopped by PID.

A watcher thread per child is the only one that waits on the process; when the process dies
without being asked to, the watcher starts the same ChildSpec again (same argv, same port)
after ``restart_delay``. Output goes line by line to the supervisor's stderr, prefixed with the
child's name, or to ``<log_dir>/<name>.log``. Thread-safe: the control API, the watcher and the
main thread use it concurrently; ``_lock`` guards the current process and the counters.
"""

import logging
import os
import signal
import subprocess  # noqa: S404 - argv lists only, never a shell
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from myqueue.core.logs import json_line, log_format_from_env

from . import defaults
from .commands import ChildSpec, restart_delay
from .lifeline import die_with_parent

log = logging.getLogger(__name__)

_stderr_lock = threading.Lock()  # one prefixed line at a time on the shared stderr


class ManagedChild:
    """A child process kept running until ``stop``."""

    def __init__(
        self,
        spec: ChildSpec,
        log_dir: Path | None = None,
        on_restart: Callable[[], None] | None = None,
        *,
        max_consecutive_deaths: int | None = None,
        on_give_up: Callable[["ManagedChild"], None] | None = None,
    ):
        self.spec = spec
        self._max_deaths = max_consecutive_deaths  # None: restart for ever
        self._on_give_up = on_give_up  # called on the watcher thread when it stops restarting
        self._log_dir = log_dir
        self._on_restart = on_restart  # called on the watcher thread after each restart
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._restarts = 0
        self._deaths = 0
        self._last_exit: int | None = None
        self._watcher = threading.Thread(target=self._watch, name=f"watch-{spec.name}", daemon=True)
        self._spawned = threading.Event()  # the watcher made its first attempt to start the process
        self._spawn_error: OSError | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        """The running process's PID; None while it is down (between a death and its restart)."""
        with self._lock:
            process = self._process
        return process.pid if process is not None and process.returncode is None else None

    @property
    def deaths(self) -> int:
        with self._lock:
            return self._deaths

    @property
    def last_exit(self) -> int | None:
        with self._lock:
            return self._last_exit

    def status(self) -> dict[str, object]:
        """This child as the control API's GET /processes shows it."""
        with self._lock:
            restarts = self._restarts
        return {
            "pid": self.pid,
            "address": self.spec.address,
            "role": self.spec.role.value,
            "restarts": restarts,
        }

    def start(self) -> None:
        """Start the process, from the watcher thread: the child's PDEATHSIG is tied to the thread
        that forks it, and the watcher lives as long as the child is watched."""
        self._watcher.start()
        self._spawned.wait()
        if self._spawn_error is not None:
            raise self._spawn_error

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns once the process is reaped."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            if not self._wait_gone(process, grace):
                log.warning(
                    "%s (pid %d) did not stop within %.0f s; killing it", self.name, process.pid, grace
                )
                process.send_signal(signal.SIGKILL)
                self._wait_gone(process, defaults.KILL_WAIT_S)
        elif self._watcher.ident is not None:
            self._watcher.join(defaults.KILL_WAIT_S)  # it was between a death and a restart

    def _wait_gone(self, process: subprocess.Popen[bytes], timeout: float) -> bool:
        """Wait for the watcher to see the exit (or for the process itself, if never watched)."""
        if self._watcher.ident is not None:
            self._watcher.join(timeout)
            return not self._watcher.is_alive()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    # --- the watcher ----------------------------------------------------------------------
    def _watch(self) -> None:
        try:
            with self._lock:
                self._process = self._spawn()
        except OSError as error:
            self._spawn_error = error
            return
        finally:
            self._spawned.set()
        consecutive = 0
        while True:
            with self._lock:
                process = self._process
            started = time.monotonic()
            code = process.wait() if process is not None else None
            if self._stopping.is_set():
                return
            ran = time.monotonic() - started
            consecutive = 1 if ran >= defaults.STABLE_RUN_S else consecutive + 1
            delay = restart_delay(consecutive)
            with self._lock:
                self._deaths += 1
                self._last_exit = code
            if self._max_deaths is not None and consecutive >= self._max_deaths:
                log.error(
                    "%s died %d times in a row, each within %.0f s of its start (last exit code %s); "
                    "not restarting it",
                    self.name,
                    consecutive,
                    defaults.STABLE_RUN_S,
                    code,
                )
                if self._on_give_up is not None:
                    self._on_give_up(self)
                return
            log.warning("%s exited with %s after %.1f s; restarting in %.1f s", self.name, code, ran, delay)
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._process = self._spawn()
                except OSError as error:
                    log.error("could not restart %s: %s", self.name, error)
                    self._process = None
                    continue
                self._restarts += 1
            if self._on_restart is not None:
                self._on_restart()

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for key, value in self.spec.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        if self._log_dir is not None:
            with (self._log_dir / f"{self.name}.log").open("ab") as log_file:
                return subprocess.Popen(  # noqa: S603
                    self.spec.argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent(),
                )
        process = subprocess.Popen(  # noqa: S603
            self.spec.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        if process.stdout is None:  # stdout=PIPE always gives one
            raise RuntimeError(f"{self.name}: no stdout pipe")
        threading.Thread(
            target=_pump, args=(process.stdout, self.name), name=f"log-{self.name}", daemon=True
        ).start()
        return process


def _pump(stream: IO[bytes], name: str) -> None:
    """Copy a child's output to our stderr, one line at a time, until it closes: prefixed with the
    child's name in the text format; in the JSON format its JSON records as they are (they name
    the process) and anything else wrapped as a record of the same shape."""
    as_json = log_format_from_env() == "json"
    with stream:
        for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if not as_json:
                line = f"[{name}] {line}"
            elif not line.startswith("{"):
                line = json_line(name, line)
            with _stderr_lock:
                sys.stderr.write(f"{line}\n")
                sys.stderr.flush()
