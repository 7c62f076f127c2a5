"""A test-side stand-in for the kubelet: runs a Pod's real process on a loopback address.

The control plane of these tests has no kubelet and no container runtime. ``PodRunner`` watches
the Pods of one namespace and, for each, does what a kubelet would, as far as the tests need:

- image -> program: a container's image names one of ``images/*/Dockerfile`` (by the last part
  of its repository: ``myqueue/manager:0.1.0`` -> ``images/manager``); the Dockerfile's final
  stage gives ENTRYPOINT, CMD and ENV, combined with the container's ``command``/``args`` by
  Kubernetes' rules (``command`` replaces ENTRYPOINT and drops CMD; ``args`` replaces CMD). The
  program is then started locally: a console script of this package is mapped to this
  interpreter (``myqueue-broker`` -> ``python -m myqueue.broker``), ``python`` is this
  interpreter, anything else is looked up on PATH;
- init containers run in order, each to completion (retried on failure), before the container;
- env: the test's ``PYTHONPATH`` when set (pods run the code under test, e.g. a worktree's, not an
  installed copy), the image's ENV, then the container's ``env`` resolved (``value``, ``secretKeyRef``,
  ``fieldRef`` to name/namespace/podIP/serviceAccountName/hostIP);
- the Pod's ServiceAccount: no token is mounted (there is no /var/run/secrets here), so unless
  ``automountServiceAccountToken`` is false the process gets ``KUBECONFIG`` naming a kubeconfig
  with a TokenRequest token for ``spec.serviceAccountName`` — the program authenticates as that
  account, and RBAC is exactly what the Pod would have in a cluster;
- gives each Pod its own loopback address (127.0.77.2, 127.0.77.3, ... never reused in a run),
  the Pod's IP;
- writes ``status`` (phase, podIP, conditions, containerStatuses) and flips Ready once the
  readiness probe (httpGet) answers 2xx (no readiness probe: Ready once started); restarts the
  process when it exits, as ``restartPolicy`` says (Always, OnFailure; Never ends the Pod
  Succeeded or Failed);
- stops the process (SIGTERM, then SIGKILL after the grace period) when the Pod is deleted.

Two liberties are taken with the spec, both because there are no network namespaces, no cluster
DNS and no kube-proxy here:

1. ``0.0.0.0`` in an env value or an argument (listen on every address of the pod) is rewritten
   to the Pod's IP;
2. a Service's host name in an env value or an argument, followed by a port
   (``http://NAME.NAMESPACE.svc:5000``, also ``NAME.NAMESPACE``, ``NAME.NAMESPACE.svc.cluster.local``
   and ``//NAME:PORT``), is rewritten to ``IP:TARGETPORT`` of a Ready Pod behind the Service (its
   selector; a named targetPort is looked up in that Pod's container ports) — what cluster DNS
   plus kube-proxy would route to. The process starts only once every Service it names has a
   Ready backing Pod (waiting at most ``SERVICE_WAIT_S``, then it starts unresolved and fails as
   it would without DNS), and is restarted (restartCount + 1) if the backing Pod's address changes.

Pods are never bound to a node (no scheduler runs either), so the API server deletes them at
once, as it does for any unscheduled Pod. Everything it starts it stops, by PID (``stop()``).
"""

# ruff: noqa: S603 - a test harness that starts the programs it was given

from __future__ import annotations

import base64
import ctypes
import datetime
import itertools
import json
import logging
import os
import re
import shlex
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

import yaml
from kubernetes import client, config, watch
from kubernetes.client import ApiException

log = logging.getLogger("podrunner")

ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = ROOT / "images"
PROGRAMS: dict[str, list[str]] = {
    "myqueue-broker": [sys.executable, "-m", "myqueue.broker"],
    "myqueue-manager": [sys.executable, "-m", "myqueue.manager"],
    "myqueue-operator": [sys.executable, "-m", "myqueue_operator"],
    "python": [sys.executable],
    "python3": [sys.executable],
}
MAX_GRACE_S = 15.0
SERVICE_WAIT_S = 120.0  # longest wait for a Service named in env/args to get a Ready backing Pod
SERVICE_CHECK_S = 2.0  # how often a running process's Services are re-resolved
TOKEN_SECONDS = 4 * 3600
# Pod IPs, never reused in a process, shared by every runner (two namespaces' runners may overlap).
_POD_IPS = (f"127.0.{77 + n // 250}.{2 + n % 250}" for n in itertools.count())
_POD_IPS_LOCK = threading.Lock()


def _next_ip() -> str:
    with _POD_IPS_LOCK:
        return next(_POD_IPS)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


# --- images ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Image:
    """What the final stage of a Dockerfile says about the process: ENTRYPOINT, CMD, ENV."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def _exec_form(value: str) -> tuple[str, ...]:
    value = value.strip()
    if value.startswith("["):
        return tuple(json.loads(value))
    return ("/bin/sh", "-c", value)  # shell form


def parse_dockerfile(text: str) -> Image:
    """ENTRYPOINT, CMD and ENV of the last stage (instructions before the last FROM are another stage's)."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = {}
    for line in lines:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            entrypoint, cmd, env = (), (), {}
        elif instruction == "ENTRYPOINT":
            entrypoint, cmd = _exec_form(rest), ()  # a new ENTRYPOINT resets CMD, as Docker does
        elif instruction == "CMD":
            cmd = _exec_form(rest)
        elif instruction == "ENV":
            words = shlex.split(rest)
            if words and "=" not in words[0]:  # legacy form: ENV KEY value
                env[words[0]] = " ".join(words[1:])
            else:
                env.update(word.split("=", 1) for word in words)
    return Image(entrypoint, cmd, tuple(env.items()))


def load_images(directory: Path = IMAGES_DIR) -> dict[str, Image]:
    """``images/NAME/Dockerfile`` -> {NAME: Image}."""
    return {
        p.parent.name: parse_dockerfile(p.read_text()) for p in sorted(Path(directory).glob("*/Dockerfile"))
    }


def image_name(reference: str) -> str:
    """The last part of an image's repository: ``registry:5000/myqueue/broker:0.1.0@sha256:..`` -> ``broker``."""
    repository = reference.split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def container_argv(container, images: Mapping[str, Image]) -> list[str]:
    """The container's process, by Kubernetes' rules for command/args over ENTRYPOINT/CMD."""
    image = images.get(image_name(container.image or ""), Image())
    if container.command:
        argv = list(container.command) + list(container.args or [])
    else:
        argv = list(image.entrypoint) + (list(container.args) if container.args else list(image.cmd))
    if not argv:
        raise ValueError(
            f"the container has no command and image {container.image!r} matches no images/*/Dockerfile"
        )
    return argv


# --- services ----------------------------------------------------------------------------------------------------
def _service_pattern(name: str, namespace: str) -> re.Pattern[str]:
    n, ns = re.escape(name), re.escape(namespace)
    return re.compile(rf"(?<![\w.-])(//)?{n}(\.{ns}(?:\.svc(?:\.cluster\.local)?)?)?:(\d+)(?!\d)")


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
    services: dict[str, str] = field(default_factory=dict)  # Service name -> backing pod IP used at start
    exit_code: int | None = None  # restartPolicy Never/OnFailure: how it ended


class PodRunner:
    """Runs the Pods of ``namespace`` as local processes; ``start()``/``stop()``."""

    def __init__(
        self,
        kubeconfig: str,
        namespace: str,
        log_dir: Path,
        programs: Mapping[str, list[str]] = PROGRAMS,
        images: Mapping[str, Image] | None = None,
    ):
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.programs = dict(programs)
        self.images = dict(load_images() if images is None else images)
        self._api_client = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self._api_client)
        self._pods: dict[str, RunningPod] = {}  # uid -> pod
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
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

    def live_pids(self) -> list[int]:
        """PIDs of processes this runner started that have not exited (and been reaped) yet."""
        with self._lock:
            pods = list(self._pods.values())
        return [p.process.pid for p in pods if p.process is not None and p.process.poll() is None]

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
            running = RunningPod(name=pod.metadata.name, uid=uid, ip=_next_ip())
            running.thread = threading.Thread(
                target=self._run_pod, args=(running, pod), name=f"pod-{pod.metadata.name}", daemon=True
            )
            with self._lock:
                self._pods[uid] = running
            self.events.append(("start", pod.metadata.name))
            running.thread.start()

    # --- one pod: environment, credentials, Services ----------------------------------------------------------
    def _env(self, pod, container, ip: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONUNBUFFERED": "1",
            "HOME": str(self.log_dir),
        }
        if os.environ.get("PYTHONPATH"):  # pods run the code under test (a worktree), not an installed copy
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        env.update(self.images.get(image_name(container.image or ""), Image()).env)
        for item in container.env or []:
            if item.value_from is None:
                value = item.value or ""
            elif item.value_from.secret_key_ref is not None:
                ref = item.value_from.secret_key_ref
                secret = self.core.read_namespaced_secret(ref.name, self.namespace)
                value = base64.b64decode((secret.data or {})[ref.key]).decode()
            elif item.value_from.field_ref is not None:
                path = item.value_from.field_ref.field_path
                value = {
                    "metadata.name": pod.metadata.name,
                    "metadata.namespace": self.namespace,
                    "metadata.uid": pod.metadata.uid,
                    "status.podIP": ip,
                    "status.hostIP": "127.0.0.1",
                    "spec.serviceAccountName": pod.spec.service_account_name or "default",
                }[path]
            else:
                raise ValueError(f"env {item.name}: unsupported valueFrom")
            env[item.name] = value
        return {k: v.replace("0.0.0.0", ip) for k, v in env.items()}  # noqa: S104 - liberty 1 (module docstring)

    def _argv(self, container, ip: str) -> list[str]:
        command = [a.replace("0.0.0.0", ip) for a in container_argv(container, self.images)]  # noqa: S104 - liberty 1
        program = self.programs.get(command[0])
        if program is None:
            found = shutil.which(command[0], path=str(Path(sys.executable).parent)) or shutil.which(
                command[0]
            )
            if not found:
                raise ValueError(f"no local program for {command[0]!r}")
            program = [found]
        return program + command[1:]

    def _service_account_kubeconfig(self, pod, running: RunningPod) -> str | None:
        """A kubeconfig authenticating as the Pod's ServiceAccount (None: no token for this Pod)."""
        if pod.spec.automount_service_account_token is False:
            return None
        account = pod.spec.service_account_name or "default"
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=TOKEN_SECONDS)
        )
        deadline = time.monotonic() + SERVICE_WAIT_S
        while (
            True
        ):  # the ServiceAccount may be created just after the Pod (helm orders it first; users may not)
            try:
                token = self.core.create_namespaced_service_account_token(
                    account, self.namespace, request
                ).status.token
                break
            except ApiException as e:
                if e.status != 404 or time.monotonic() > deadline or running.stop.wait(0.5):
                    raise
        admin = yaml.safe_load(Path(self.kubeconfig).read_text())
        cluster = admin["clusters"][0]
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [
                {
                    "name": account,
                    "context": {"cluster": cluster["name"], "user": account, "namespace": self.namespace},
                }
            ],
            "current-context": account,
        }
        path = self.log_dir / f"{running.name}-{running.uid[:8]}.kubeconfig"
        path.write_text(json.dumps(kubeconfig))
        path.chmod(0o600)
        return str(path)

    def _backing_ip(self, service) -> str | None:
        """The IP of a Ready, not deleting Pod selected by ``service`` (None: there is none)."""
        selector = (service.spec.selector or {}) if service.spec else {}
        if not selector:
            return None
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        ).items
        for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp):
            if pod.metadata.deletion_timestamp or not (pod.status and pod.status.pod_ip):
                continue
            if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
                return pod.status.pod_ip
        return None

    def _target_port(self, service, port: int, ip: str) -> int | None:
        for p in service.spec.ports or []:
            if p.port != port:
                continue
            target = p.target_port if p.target_port is not None else p.port
            if isinstance(target, int) or str(target).isdigit():
                return int(target)
            backing = next(
                (
                    q
                    for q in self.core.list_namespaced_pod(self.namespace).items
                    if q.status and q.status.pod_ip == ip
                ),
                None,
            )
            for container in backing.spec.containers if backing else []:
                for cp in container.ports or []:
                    if cp.name == target:
                        return cp.container_port
        return None

    def _resolve_services(self, texts: list[str]) -> tuple[dict[str, str], set[str]]:
        """Services named in ``texts``: ({name: backing ip}, {names without a Ready backing pod})."""
        found: dict[str, str] = {}
        waiting: set[str] = set()
        for service in self.core.list_namespaced_service(self.namespace).items:
            name = service.metadata.name
            pattern = _service_pattern(name, self.namespace)
            if not any(m.group(1) or m.group(2) for text in texts for m in pattern.finditer(text)):
                continue
            ip = self._backing_ip(service)
            if ip:
                found[name] = ip
            else:
                waiting.add(name)
        return found, waiting

    def _rewrite(self, text: str, targets: Mapping[str, str]) -> str:
        """Liberty 2: Service host names (with a port) -> the backing Pod's IP and target port."""
        for name, ip in targets.items():
            service = self.core.read_namespaced_service(name, self.namespace)

            def replace(m: re.Match[str], service=service, ip=ip) -> str:
                if not (m.group(1) or m.group(2)):  # a bare "name:port" is not taken for a host name
                    return m.group(0)
                port = self._target_port(service, int(m.group(3)), ip)
                return m.group(0) if port is None else f"{m.group(1) or ''}{ip}:{port}"

            text = _service_pattern(name, self.namespace).sub(replace, text)
        return text

    def _prepare(self, pod, container, running: RunningPod) -> tuple[list[str], dict[str, str]] | None:
        """argv and env of ``container``, Services resolved (waiting for them); None when stopped."""
        argv = self._argv(container, running.ip)
        env = self._env(pod, container, running.ip)
        texts = [*argv, *env.values()]
        deadline = time.monotonic() + SERVICE_WAIT_S
        while True:
            targets, waiting = self._resolve_services(texts)
            if not waiting:
                break
            if time.monotonic() > deadline:
                log.warning(
                    "pod %s: no Ready pod behind %s; starting unresolved", running.name, sorted(waiting)
                )
                break
            if running.stop.wait(0.2):
                return None
        running.services = dict(targets)
        argv = [self._rewrite(a, targets) for a in argv]
        env = {k: self._rewrite(v, targets) for k, v in env.items()}
        kubeconfig = self._service_account_kubeconfig(pod, running)
        if kubeconfig:
            env["KUBECONFIG"] = kubeconfig
        return argv, env

    def _services_moved(self, running: RunningPod) -> bool:
        """Has a Service this process was started with moved to another backing pod?"""
        for name, ip in running.services.items():
            try:
                service = self.core.read_namespaced_service(name, self.namespace)
            except ApiException:
                continue
            now = self._backing_ip(service)
            if now and now != ip:
                log.info("pod %s: Service %s moved from %s to %s; restarting", running.name, name, ip, now)
                return True
        return False

    # --- one pod: status -------------------------------------------------------------------------------------------
    def _patch_status(self, running: RunningPod, status: dict) -> bool:
        try:
            self.core.patch_namespaced_pod_status(running.name, self.namespace, {"status": status})
        except ApiException as e:
            if e.status in (404, 409):
                return False
            raise
        return True

    def _status(self, pod, running: RunningPod, *, ready: bool, started: str, state: dict | None = None,
                phase: str = "Running") -> dict:  # fmt: skip
        container = pod.spec.containers[0]
        flag = "True" if ready else "False"
        return {
            "phase": phase,
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

    def _init_status(self, running: RunningPod, started: str, waiting_on: str) -> dict:
        return {
            "phase": "Pending",
            "hostIP": "127.0.0.1",
            "podIP": running.ip,
            "podIPs": [{"ip": running.ip}],
            "startTime": started,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized",
                 "message": f"init container {waiting_on} has not completed", "lastTransitionTime": _now()},
                {"type": "Ready", "status": "False", "lastTransitionTime": _now()},
            ],
        }  # fmt: skip

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

    # --- one pod: processes -------------------------------------------------------------------------------------------
    def _spawn(
        self, running: RunningPod, argv: list[str], env: dict[str, str], log_path: Path
    ) -> subprocess.Popen:
        with open(log_path, "ab") as out:
            running.process = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.log_dir, start_new_session=True, preexec_fn=_set_pdeathsig,
            )  # fmt: skip
        running.pids.append(running.process.pid)
        return running.process

    def _run_init_containers(
        self, pod, running: RunningPod, started: str, log_path: Path, grace: float
    ) -> bool:
        """Each init container to completion, in order (a failed one is retried); False when stopped."""
        for container in pod.spec.init_containers or []:
            while not running.stop.is_set():
                self._patch_status(running, self._init_status(running, started, container.name))
                prepared = self._prepare(pod, container, running)
                if prepared is None:
                    return False
                process = self._spawn(running, *prepared, log_path)
                while process.poll() is None and not running.stop.wait(0.1):
                    pass
                if running.stop.is_set():
                    self._terminate(running, grace)
                    return False
                if process.returncode == 0:
                    break
                log.info(
                    "pod %s: init container %s exited with %s; retrying",
                    running.name,
                    container.name,
                    process.returncode,
                )
                running.stop.wait(1.0)  # back-off
        return not running.stop.is_set()

    def _run_pod(self, running: RunningPod, pod) -> None:
        container = pod.spec.containers[0]
        grace = min(float(pod.spec.termination_grace_period_seconds or 30), MAX_GRACE_S)
        policy = pod.spec.restart_policy or "Always"
        started = _now()
        log_path = self.log_dir / f"{running.name}-{running.uid[:8]}.log"
        try:
            if not self._run_init_containers(pod, running, started, log_path, grace):
                return
            while not running.stop.is_set():
                prepared = self._prepare(pod, container, running)
                if prepared is None:
                    break
                process = self._spawn(running, *prepared, log_path)
                if not self._patch_status(running, self._status(pod, running, ready=False, started=started)):
                    break
                ready = False
                next_check = time.monotonic() + SERVICE_CHECK_S
                moved = False
                while not running.stop.is_set() and process.poll() is None:
                    if not ready and self._probe(container, running.ip):
                        ready = True
                        self._patch_status(running, self._status(pod, running, ready=True, started=started))
                    if running.services and time.monotonic() > next_check:
                        next_check = time.monotonic() + SERVICE_CHECK_S
                        if self._services_moved(running):
                            moved = True
                            self._terminate(running, grace)
                            break
                    running.stop.wait(0.1 if not ready else 0.2)
                if running.stop.is_set():
                    break
                code = process.returncode
                terminated = {"terminated": {"exitCode": code, "finishedAt": _now(),
                                             "reason": "Completed" if code == 0 else "Error"}}  # fmt: skip
                if not moved and (policy == "Never" or (policy == "OnFailure" and code == 0)):
                    running.exit_code = code
                    phase = "Succeeded" if code == 0 else "Failed"
                    self._patch_status(
                        running,
                        self._status(
                            pod, running, ready=False, started=started, state=terminated, phase=phase
                        ),
                    )
                    log.info("pod %s: process exited with %s; pod %s", running.name, code, phase)
                    running.stop.set()
                    return
                running.restarts += 1
                log.info("pod %s: process exited with %s; restarting", running.name, code)
                self._patch_status(
                    running, self._status(pod, running, ready=False, started=started, state=terminated)
                )
                running.stop.wait(0.5)  # restart backoff
        except (ValueError, KeyError, ApiException) as e:
            log.warning("pod %s cannot run: %s", running.name, e)
            self._patch_status(running, {"phase": "Failed", "message": str(e), "reason": "PodRunnerError"})
        finally:
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
