"""Supervised child processes: restart after a death (same argv), stop by PID with a deadline.

Uses small Python programs instead of the services, so it tests the supervision alone.
"""

import os
import signal
import sys
import time

from myqueue.cluster.child import ManagedChild
from myqueue.cluster.commands import ChildSpec, Role
from tests.helpers import wait_until

SLEEPER = "import time\nwhile True: time.sleep(0.05)"
STUBBORN = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ignoring SIGTERM', flush=True)\nwhile True: time.sleep(0.05)"


def spec(code: str, name: str = "broker0", **env) -> ChildSpec:
    return ChildSpec(name, Role.BROKER, "127.0.0.1", 1, (sys.executable, "-c", code), env)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_killed_child_is_restarted_with_the_same_command_and_counted(tmp_path):
    child = ManagedChild(spec(SLEEPER), log_dir=tmp_path)
    child.start()
    try:
        first = wait_until(lambda: child.pid, 5, message=lambda: f"no pid; last exit {child.last_exit}")
        os.kill(first, signal.SIGKILL)
        second = wait_until(lambda: child.pid not in (None, first) and child.pid, 5, message="no restart")
        assert child.status() == {
            "pid": second,
            "address": "http://127.0.0.1:1",
            "role": "broker",
            "restarts": 1,
        }
        assert child.deaths == 1 and child.last_exit == -signal.SIGKILL
        with open(f"/proc/{second}/cmdline", "rb") as handle:
            assert handle.read().split(b"\0")[:2] == [sys.executable.encode(), b"-c"]
    finally:
        child.stop(grace=5)
    assert child.pid is None and gone(second)


def test_a_crashing_child_backs_off_instead_of_spinning(tmp_path):
    child = ManagedChild(spec("raise SystemExit(3)"), log_dir=tmp_path)
    child.start()
    try:
        wait_until(
            lambda: child.deaths >= 4,
            10,
            message=lambda: f"deaths {child.deaths}, last exit {child.last_exit}",
        )
        # deaths 1..4 waited 0.1 + 0.2 + 0.4 s before the restarts: far fewer than a spinning loop
        started = time.monotonic()
        deaths = child.deaths
        wait_until(lambda: child.deaths > deaths, 5, message=lambda: f"deaths still {child.deaths}")
        assert time.monotonic() - started >= 0.3
        assert child.last_exit == 3
    finally:
        child.stop(grace=5)


def test_stop_kills_a_child_that_ignores_sigterm_after_the_grace_period(tmp_path):
    child = ManagedChild(spec(STUBBORN), log_dir=tmp_path)
    child.start()
    log = tmp_path / "broker0.log"
    wait_until(
        lambda: log.exists() and "ignoring SIGTERM" in log.read_text(),
        10,
        message=lambda: f"log: {log.read_text()[-2000:] if log.exists() else 'absent'}",
    )
    pid = child.pid
    started = time.monotonic()
    child.stop(grace=0.5)
    assert 0.5 <= time.monotonic() - started < 5
    assert gone(pid)
    assert child.status()["restarts"] == 0


def test_environment_overrides_add_and_remove_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("MYQUEUE_LAUNCHER_TOKEN", "inherited")
    code = "import os\nprint('token', os.environ.get('MYQUEUE_LAUNCHER_TOKEN'), 'dsn', os.environ.get('MYQUEUE_DSN'), flush=True)\nimport time\nwhile True: time.sleep(0.05)"
    child = ManagedChild(spec(code, MYQUEUE_LAUNCHER_TOKEN=None, MYQUEUE_DSN="dbname=x"), log_dir=tmp_path)
    child.start()
    try:
        log = tmp_path / "broker0.log"
        wait_until(
            lambda: log.exists() and "token" in log.read_text(),
            10,
            message=lambda: f"log: {log.read_text()[-2000:] if log.exists() else 'absent'}",
        )
        assert log.read_text().strip() == "token None dsn dbname=x"
    finally:
        child.stop(grace=5)


def test_output_goes_to_stderr_prefixed_with_the_name(capfd):
    child = ManagedChild(
        spec(
            "print('hello from the child', flush=True)\nimport time\nwhile True: time.sleep(0.05)",
            name="broker7",
        )
    )
    child.start()
    try:
        seen = ""

        def printed() -> bool:
            nonlocal seen
            seen += capfd.readouterr().err
            return "[broker7] hello from the child" in seen

        wait_until(printed, 10, message=lambda: seen)
    finally:
        child.stop(grace=5)
