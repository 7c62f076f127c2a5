"""A test-side stand-in for the kubelet: runs a Pod's real process on a loopback address.

The control plane of these tests has no kubelet and no container runtime. ``PodRunner`` watches
the Pods of one namespace and, for each, does what a kubelet would, as far as the tests need:

- starts the container's ``command`` as a local process (a program name is mapped to this
  interpreter, e.g. ``myqueue-broker`` -> ``python -m myqueue.broker``), with the container's
  ``env`` resolved (``value``, ``secretKeyRef``, ``fieldRef`` to name/namespace/podIP);
- gives each Pod its own loopback address (127.0.77.2, 127.0.77.3, ... never reused in a run), the
  Pod's IP: with no network namespaces, an env value ``0.0.0.0`` (listen on every address of the
  pod) is rewritten to that IP — the only liberty taken with the spec;
- writes ``status`` (phase Running, podIP, conditions, containerStatuses) and flips Ready once the
  readiness probe (httpGet) answers 2xx; restarts the process if it exits (restartCount + 1);
- stops the process (SIGTERM, then SIGKILL after the grace period) when the Pod is deleted.

Pods are never bound to a node (no scheduler runs either), so the API server deletes them at
once, as it does for any unscheduled Pod. Everything it starts it stops, by PID (``stop()``).
"""

# ruff: noqa: S603 - a test harness that starts the programs it was given

from __future__ import annotations

import base64
import ctypes
import datetime
import itertools
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client, config, watch
from kubernetes.client import ApiException

log = logging.getLogger("podrunner")

PROGRAMS: dict[str, list[str]] = {
    "myqueue-broker": [sys.executable, "-m", "myqueue.broker"],
    "myqueue-manager": [sys.executable, "-m", "myqueue.manager"],
    "myqueue-operator": [sys.executable, "-m", "myqueue_operator"],
}
MAX_GRACE_S = 15.0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class RunningPod:
    """One Pod's process and the thread that owns it."""

    name: str
    uid: str
    ip: str
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    process: subprocess.Popen | None = None
    restarts: int = 0
    pids: list[int] = field(default_factory=list)


class PodRunner:
    """Runs the Pods of ``namespace`` as local processes; ``start()``/``stop()``."""

    def __init__(self, kubeconfig: str, namespace: str, log_dir: Path, programs: Mapping[str, list[str]] = PROGRAMS):
        self.namespace = namespace
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.programs = dict(programs)
        self._api_client = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self._api_client)
        self._pods: dict[str, RunningPod] = {}  # uid -> pod
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._ips = (f"127.0.{77 + n // 250}.{2 + n % 250}" for n in itertools.count())
        self.events: list[tuple[str, str]] = []  # (what, pod name), for diagnostics

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> PodRunner:
        self._watcher = threading.Thread(target=self._watch_loop, name="podrunner-watch", daemon=True)
        self._watcher.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher:
            self._watcher.join(timeout=30)
        with self._lock:
            pods = list(self._pods.values())
        for pod in pods:
            pod.stop.set()
        for pod in pods:
            if pod.thread:
                pod.thread.join(timeout=MAX_GRACE_S + 10)

    def running(self) -> dict[str, RunningPod]:
        """Pod name -> its running record (pods whose process this runner owns now)."""
        with self._lock:
            return {p.name: p for p in self._pods.values() if not p.stop.is_set()}

    def all_pids(self) -> list[int]:
        with self._lock:
            return [pid for p in self._pods.values() for pid in p.pids]

    # --- watching ---------------------------------------------------------------------------------------------
    def _watch_loop(self) -> None:
        resource_version = None
        while not self._stopping.is_set():
            try:
                if resource_version is None:
                    listing = self.core.list_namespaced_pod(self.namespace)
                    resource_version = listing.metadata.resource_version
                    for pod in listing.items:
                        self._on_pod("ADDED", pod)
                    self._forget_missing({p.metadata.uid for p in listing.items})
                stream = watch.Watch().stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    resource_version=resource_version,
                    timeout_seconds=2,  # short: stop() is noticed within seconds
                    allow_watch_bookmarks=True,
                )
                for event in stream:
                    obj = event["object"]
                    resource_version = obj.metadata.resource_version
                    if event["type"] != "BOOKMARK":
                        self._on_pod(event["type"], obj)
                    if self._stopping.is_set():
                        break
            except ApiException as e:
                if e.status == 410:  # resource version too old: list again
                    resource_version = None
                    continue
                log.warning("pod watch failed: %s", e)
                self._stopping.wait(0.5)
            except Exception:  # noqa: BLE001 - keep acting as the kubelet whatever happens
                log.exception("pod watch failed")
                resource_version = None
                self._stopping.wait(0.5)

    def _forget_missing(self, uids: set[str]) -> None:
        with self._lock:
            gone = [p for uid, p in self._pods.items() if uid not in uids]
        for pod in gone:
            pod.stop.set()

    def _on_pod(self, kind: str, pod) -> None:
        uid = pod.metadata.uid
        with self._lock:
            known = self._pods.get(uid)
        if kind == "DELETED" or pod.metadata.deletion_timestamp:
            if known and not known.stop.is_set():
                self.events.append(("stop", pod.metadata.name))
                known.stop.set()
            return
        if known is None and pod.status.phase in (None, "Pending"):
            running = RunningPod(name=pod.metadata.name, uid=uid, ip=next(self._ips))
            running.thread = threading.Thread(
                target=self._run_pod, args=(running, pod), name=f"pod-{pod.metadata.name}", daemon=True
            )
            with self._lock:
                self._pods[uid] = running
            self.events.append(("start", pod.metadata.name))
            running.thread.start()

    # --- one pod ------------------------------------------------------------------------------------------------
    def _env(self, pod, container, ip: str) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONUNBUFFERED": "1", "HOME": str(self.log_dir)}
        for item in container.env or []:
            if item.value_from is None:
                value = item.value or ""
            elif item.value_from.secret_key_ref is not None:
                ref = item.value_from.secret_key_ref
                secret = self.core.read_namespaced_secret(ref.name, self.namespace)
                value = base64.b64decode((secret.data or {})[ref.key]).decode()
            elif item.value_from.field_ref is not None:
                path = item.value_from.field_ref.field_path
                value = {"metadata.name": pod.metadata.name, "metadata.namespace": self.namespace, "status.podIP": ip}[path]
            else:
                raise ValueError(f"env {item.name}: unsupported valueFrom")
            env[item.name] = ip if value == "0.0.0.0" else value  # noqa: S104 - see the module docstring
        return env

    def _argv(self, container) -> list[str]:
        command = list(container.command or []) + list(container.args or [])
        if not command:
            raise ValueError("the container has no command (the runner does not read image entrypoints)")
        program = self.programs.get(command[0])
        if program is None:
            found = shutil.which(command[0], path=str(Path(sys.executable).parent)) or shutil.which(command[0])
            if not found:
                raise ValueError(f"no local program for {command[0]!r}")
            program = [found]
        return program + command[1:]

    def _patch_status(self, running: RunningPod, status: dict) -> bool:
        try:
            self.core.patch_namespaced_pod_status(running.name, self.namespace, {"status": status})
        except ApiException as e:
            if e.status in (404, 409):
                return False
            raise
        return True

    def _status(self, pod, running: RunningPod, *, ready: bool, started: str, state: dict | None = None) -> dict:
        container = pod.spec.containers[0]
        flag = "True" if ready else "False"
        return {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": running.ip,
            "podIPs": [{"ip": running.ip}],
            "startTime": started,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": _now()},
                {"type": "Ready", "status": flag, "lastTransitionTime": _now()},
            ],
            "containerStatuses": [
                {
                    "name": container.name,
                    "image": container.image,
                    "imageID": "",
                    "containerID": f"podrunner://{running.process.pid if running.process else 0}",
                    "ready": ready,
                    "started": True,
                    "restartCount": running.restarts,
                    "state": state or {"running": {"startedAt": started}},
                }
            ],
        }

    def _probe(self, container, ip: str) -> bool:
        probe = container.readiness_probe
        if probe is None or probe.http_get is None:
            return True
        port = probe.http_get.port
        if isinstance(port, str) and not port.isdigit():
            port = next(p.container_port for p in container.ports or [] if p.name == port)
        url = f"http://{ip}:{port}{probe.http_get.path or '/'}"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback http
                return 200 <= response.status < 400
        except (urllib.error.URLError, OSError):
            return False

    def _run_pod(self, running: RunningPod, pod) -> None:
        container = pod.spec.containers[0]
        grace = min(float(pod.spec.termination_grace_period_seconds or 30), MAX_GRACE_S)
        started = _now()
        try:
            argv = self._argv(container)
            env = self._env(pod, container, running.ip)
        except (ValueError, KeyError, ApiException) as e:
            log.warning("pod %s cannot run: %s", running.name, e)
            self._patch_status(running, {"phase": "Failed", "message": str(e), "reason": "PodRunnerError"})
            return
        log_path = self.log_dir / f"{running.name}-{running.uid[:8]}.log"
        while not running.stop.is_set():
            with open(log_path, "ab") as out:
                running.process = subprocess.Popen(
                    argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    cwd=self.log_dir, start_new_session=True, preexec_fn=_set_pdeathsig,
                )  # fmt: skip
            running.pids.append(running.process.pid)
            if not self._patch_status(running, self._status(pod, running, ready=False, started=started)):
                break
            ready = False
            while not running.stop.is_set() and running.process.poll() is None:
                if not ready and self._probe(container, running.ip):
                    ready = True
                    self._patch_status(running, self._status(pod, running, ready=True, started=started))
                running.stop.wait(0.1 if not ready else 0.2)
            if running.stop.is_set():
                break
            code = running.process.returncode
            running.restarts += 1
            log.info("pod %s: process exited with %s; restarting", running.name, code)
            terminated = {"terminated": {"exitCode": code, "finishedAt": _now(), "reason": "Error"}}
            self._patch_status(running, self._status(pod, running, ready=False, started=started, state=terminated))
            running.stop.wait(0.5)  # restart backoff
        self._terminate(running, grace)

    @staticmethod
    def _terminate(running: RunningPod, grace: float) -> None:
        process = running.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
