"""Helpers of the control-plane tests: kubectl, waiting on conditions, processes, ServiceAccount
kubeconfigs, and handles on the managers and the operator. Fixtures live in conftest.py."""

# ruff: noqa: S603, S607 - a test harness starting the programs it tests

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from controlplane import ControlPlane, Falsy, equal, stop_process, tail, wait_for  # noqa: F401 - re-exported for the tests

from tests.helpers import pipe


# --- helpers -------------------------------------------------------------------------------------------------
class Kubectl:
    def __init__(self, cp: ControlPlane, namespace: str):
        self.cp = cp
        self.namespace = namespace

    def __call__(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess:
        result = self.cp.kubectl("-n", self.namespace, *args, check=False, input=input)
        if check and result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def json(self, *args: str) -> dict:
        return json.loads(self("get", *args, "-o", "json").stdout)

    def get(self, kind: str, name: str) -> dict | None:
        result = self("get", kind, name, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            pytest.fail(f"kubectl get {kind} {name}: {result.stderr}")
        return json.loads(result.stdout)

    def apply(self, obj: dict | list[dict], *extra: str) -> subprocess.CompletedProcess:
        items = obj if isinstance(obj, list) else [obj]
        return self(
            "apply", *extra, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        )

    def events(self, name: str | None = None, source: str | None = "myqueue-operator") -> list[dict]:
        """Events about ``name`` (all objects: None) posted by ``source`` (anyone: None)."""
        items = self.json("events")["items"]
        return [
            e
            for e in items
            if (name is None or e["involvedObject"].get("name") == name)
            and (source is None or (e.get("source") or {}).get("component") == source)
        ]


def ready_condition(obj: dict | None) -> dict:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return {}


# --- checks for wait_for that say what they saw -----------------------------------------------------
# Each returns something truthy when the condition holds and a Falsy carrying the state it saw when
# not, so a wait that times out prints that state instead of "last: False".


def state_of(obj: dict | None) -> Any:
    """What a wait needs to show of an object: its conditions, phase, generations and deletion."""
    if obj is None:
        return "absent"
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    return {
        "name": f"{obj.get('kind', '?')}/{meta.get('name')}",
        "conditions": [
            {k: c.get(k) for k in ("type", "status", "reason", "message")}
            for c in status.get("conditions") or []
        ],
        "phase": status.get("phase"),
        "generation": meta.get("generation"),
        "observedGeneration": status.get("observedGeneration"),
        "deletionTimestamp": meta.get("deletionTimestamp"),
        "finalizers": meta.get("finalizers"),
    }


def is_ready(obj: dict | None) -> Any:
    """``obj`` when its Ready condition is True."""
    return obj if ready_condition(obj).get("status") == "True" else Falsy(state_of(obj))


def ready_and_observed(obj: dict | None) -> Any:
    """``obj`` when Ready and its status speaks of the current generation."""
    if ready_condition(obj).get("status") == "True" and obj is not None:
        if (obj.get("status") or {}).get("observedGeneration") == obj["metadata"].get("generation"):
            return obj
    return Falsy(state_of(obj))


def has_reason(obj: dict | None, reason: str, status: str | None = None) -> Any:
    """``obj`` when its Ready condition has ``reason`` (and ``status``, if given)."""
    c = ready_condition(obj)
    if c.get("reason") == reason and (status is None or c.get("status") == status):
        return obj
    return Falsy(state_of(obj))


def gone(obj: dict | None) -> Any:
    """True when the object no longer exists."""
    return True if obj is None else Falsy(state_of(obj))


def absent_from(item: Any, items: Any) -> Any:
    return True if item not in items else Falsy({f"{item} still in": items})


def present_in(item: Any, items: Any) -> Any:
    return True if item in items else Falsy({f"{item} missing from": items})


def service_account_kubeconfig(cp: ControlPlane, namespace: str, account: str, path: Path) -> str:
    """A kubeconfig that authenticates as ``namespace/account`` with a TokenRequest token."""
    token = cp.kubectl("-n", namespace, "create", "token", account, "--duration=4h").stdout.strip()
    admin = json.loads(Path(cp.kubeconfig).read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {
                "name": account,
                "context": {"cluster": admin["clusters"][0]["name"], "user": account, "namespace": namespace},
            }
        ],
        "current-context": account,
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return str(path)


@dataclass
class Managers:
    primary_port: int
    replica_port: int
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def primary(self) -> str:
        return f"http://127.0.0.1:{self.primary_port}"

    @property
    def replica(self) -> str:
        return f"http://127.0.0.1:{self.replica_port}"

    def metadata(self, url: str | None = None) -> dict:
        return requests.get(f"{url or self.primary}/v1/metadata", timeout=5).json()["message"]

    def seed_topics(self, url: str | None = None) -> dict:
        return requests.get(f"{url or self.replica}/topics", timeout=5).json()["message"]


def start_process(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_http_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"{url} exited with {process.returncode}:\n{tail(log)}")
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(f"{url} to be ready", ready, timeout=timeout)


class Operator:
    """``python -m myqueue_operator`` as a subprocess; ``restart()`` stops it by PID and starts it again."""

    def __init__(self, env: dict[str, str], log: Path, health_port: int):
        self.env = env
        self.log = log
        self.health = f"http://127.0.0.1:{health_port}/healthz"
        self.process: subprocess.Popen | None = None
        self.pids: list[int] = []

    def start(self) -> None:
        self.process = start_process(
            [sys.executable, "-m", "myqueue_operator", "--health", self.health, "--metrics-port", "0"],
            self.env,
            self.log,
        )
        self.pids.append(self.process.pid)
        wait_http_ready(self.health, self.process, self.log, timeout=60)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def restart(self, **env: str) -> None:
        """Stop by PID and start again, with ``env`` added to its environment."""
        self.stop()
        self.env.update(env)
        self.start()

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log, lines)

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_since(self, offset: int) -> str:
        with open(self.log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


class PortForward:
    """``kubectl port-forward`` for a pod the pod runner runs: 127.0.0.1:<free port> -> ``target``.

    The client takes one host with a primary and a replica port, as a user's machine has them with
    two port-forwards; here the two managers are pods on different loopback IPs. A thread accepts,
    and two threads per connection copy bytes each way. ``close()`` stops everything it opened.
    """

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name=f"port-forward-{self.port}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        try:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone may not)
        except OSError:
            pass
        self._server.close()
        for s in sockets:
            s.close()
        self._thread.join(timeout=5)


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A throwaway database: on $MYQUEUE_TEST_DSN's server (CI), else on a private server in a temp
    dir; dropped (and the server stopped) afterwards. Skips when there is no PostgreSQL at all."""
    from tests.helpers import fresh_database as database_on
    from tests.helpers import postgres_server

    with postgres_server(missing=pytest.skip) as server, database_on(server, prefix) as dsn:
        yield dsn
