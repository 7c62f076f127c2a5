"""A real Kubernetes control plane for tests: etcd + kube-apiserver (+ kube-controller-manager).

The binaries come from ``build.sh`` (compiled from the official Go modules and cached by version).
Everything listens on free 127.0.0.1 ports; all state (etcd data, certificates, logs, kubeconfig)
lives in ``work_dir``. Pure standard library plus ``openssl`` for the certificates.

    from controlplane import ControlPlane, ensure_binaries

    with ControlPlane(ensure_binaries(), "/tmp/cp") as cp:
        subprocess.run(["kubectl", "--kubeconfig", cp.kubeconfig, "get", "ns"], check=True)

``stop()`` terminates every process that ``start()`` started, by PID (SIGTERM, then SIGKILL
after a grace period), and removes ``work_dir``.
"""

# Test harness: it starts the binaries it was given and talks to its own loopback servers.
# ruff: noqa: S310, S603, S607

from __future__ import annotations

import base64
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
VERSIONS_FILE = HERE / "versions.env"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "helm")

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
_CLIENT_EXTS = [
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    "extendedKeyUsage=clientAuth",
]


class ControlPlaneError(RuntimeError):
    pass


# --- binaries -------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    """The pinned versions from versions.env (K8S_VERSION, ETCD_VERSION, HELM_VERSION)."""
    out = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        m = re.match(r'^([A-Z0-9_]+)="?([^"#\s]*)"?\s*(#.*)?$', line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


def default_bin_dir() -> Path:
    """Where build.sh puts the binaries (same rule as build.sh)."""
    cache = os.environ.get("MYQUEUE_CACHE_DIR") or str(Path.home() / ".cache" / "myqueue")
    return Path(cache) / "controlplane" / versions()["K8S_VERSION"] / "bin"


def missing_binaries(bin_dir: Path | str | None = None) -> list[str]:
    bin_dir = Path(bin_dir) if bin_dir else default_bin_dir()
    return [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]


def ensure_binaries(build: bool = True) -> Path:
    """Return the bin dir; run build.sh first if a binary is missing and ``build`` is true.

    build.sh is cheap when everything is cached (it only compares version stamps).
    """
    bin_dir = default_bin_dir()
    if missing_binaries(bin_dir):
        if not build:
            raise ControlPlaneError(f"control-plane binaries missing in {bin_dir}: run {BUILD_SCRIPT}")
        out = subprocess.run(
            ["bash", str(BUILD_SCRIPT), "--print-bin-dir"], check=True, stdout=subprocess.PIPE, text=True
        )
        bin_dir = Path(out.stdout.strip().splitlines()[-1])
    return bin_dir


REQUIRE_ENV = "MYQUEUE_REQUIRE_CONTROLPLANE"


def server_bin_dir_or_skip(skip: Callable[[str], NoReturn]) -> Path:
    """The server binaries for a test session (helm is not needed to run a control plane).

    Missing binaries call ``skip(reason)``, unless $MYQUEUE_REQUIRE_CONTROLPLANE is set (CI sets
    it): then they are built, so the tests that need them run instead of skipping.
    """
    missing = [b for b in missing_binaries() if b != "helm"]
    if missing and not os.environ.get(REQUIRE_ENV):
        skip(
            f"control-plane binaries not built ({', '.join(missing)} missing in {default_bin_dir()}): run "
            f"e2e/controlplane/build.sh, or set {REQUIRE_ENV}=1 to build them and require these tests"
        )
    return ensure_binaries(build=True)


# --- helpers --------------------------------------------------------------------------------


class Falsy:
    """A false answer of a ``wait_for`` check that carries the state it saw, for the failure message."""

    def __init__(self, state: object):
        self.state = state

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return repr(self.state)


def equal(got: object, want: object) -> bool | Falsy:
    """True when ``got == want``; else a Falsy showing both, for ``wait_for``'s message."""
    return True if got == want else Falsy({"got": got, "want": want})


def wait_for(what: str, check: Callable[[], object], timeout: float = 60.0, interval: float = 0.1):
    """Poll ``check()`` until it returns something truthy and return that; AssertionError after
    ``timeout`` seconds naming the last answer (a ``Falsy`` shows the state it carries)."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def stop_process(process: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; by PID, never by name."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def helm_runner(kubeconfig: str, namespace: str, home: Path) -> Callable[..., subprocess.CompletedProcess]:
    """``run(*args, check=True, timeout=240)``: the helm built with the control plane, against
    ``kubeconfig`` in ``namespace``, with its cache/config/data homes under ``home``."""
    binary = default_bin_dir() / "helm"
    if not os.access(binary, os.X_OK):
        raise ControlPlaneError(f"{binary} is not built ({BUILD_SCRIPT} builds it with the control plane)")
    env = {**os.environ, **{f"HELM_{k}_HOME": str(home / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}}

    def run(*args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess:
        argv = [str(binary), *args, "--kubeconfig", kubeconfig, "--namespace", namespace]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
        if check:
            assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    return run


def report_timings(terminalreporter, title: str, timings: dict[str, float], env_var: str) -> None:
    """A conftest's pytest_terminal_summary: the measured timings, also as JSON to $``env_var``."""
    if timings:
        terminalreporter.section(title)
        for key, value in timings.items():
            terminalreporter.write_line(f"{key}: {value:.2f} s")
        target = os.environ.get(env_var)
        if target:
            Path(target).write_text(json.dumps(timings, indent=2) + "\n")


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM: the manual entry points run until Ctrl-C."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.sigwait({signal.SIGINT, signal.SIGTERM})


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (a small race remains; start() retries on a lost race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_pdeathsig() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGTERM if the test process dies without calling stop()."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, for failure messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- the control plane ----------------------------------------------------------------------


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) on loopback, for tests.

    Attributes after start(): ``url`` (https://127.0.0.1:PORT), ``kubeconfig`` (path of an
    admin kubeconfig: CN=admin, O=system:masters), ``etcd_url``, ``pids`` (name -> pid).
    """

    def __init__(
        self,
        bin_dir: str | os.PathLike | None = None,
        work_dir: str | os.PathLike | None = None,
        *,
        controller_manager: bool = True,
        start_timeout: float = 90.0,
        stop_grace: float = 15.0,
        remove_work_dir: bool = True,
        apiserver_args: dict[str, str] | None = None,
    ) -> None:
        self.bin_dir = Path(bin_dir) if bin_dir else default_bin_dir()
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="myqueue-cp-"))
        self.controller_manager = controller_manager
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.remove_work_dir = remove_work_dir
        self.extra_apiserver_args = dict(apiserver_args or {})
        self.url: str | None = None
        self.etcd_url: str | None = None
        self.kubeconfig: str | None = None
        self._procs: list[tuple[str, subprocess.Popen]] = []
        self._logs: dict[str, Path] = {}

    # -- public API --

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self._procs}

    def start(self) -> ControlPlane:
        missing = missing_binaries(self.bin_dir)
        missing = [m for m in missing if m != "helm"]
        if missing:
            raise ControlPlaneError(f"missing binaries in {self.bin_dir}: {missing}; run {BUILD_SCRIPT}")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "logs").mkdir(exist_ok=True)
        self._make_certs()
        deadline = time.monotonic() + self.start_timeout
        try:
            # A free port can be taken between picking and binding: retry the start then.
            for attempt in range(3):
                try:
                    self._start_etcd(deadline)
                    self._start_apiserver(deadline)
                    break
                except _PortRace:
                    self._terminate_all()
                    if attempt == 2:
                        raise
            self.write_kubeconfig()
            if self.controller_manager:
                self._start_controller_manager(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate every started process by PID, then remove the work dir."""
        self._terminate_all()
        if self.remove_work_dir and self.work_dir.exists():
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 60, **kw
    ) -> subprocess.CompletedProcess:
        """Run kubectl against this control plane; returns the CompletedProcess (text mode)."""
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            check=check,
            timeout=timeout,
            capture_output=True,
            text=True,
            **kw,
        )

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, dict | str]:
        """GET ``path`` on the apiserver as admin; returns (status, parsed JSON or text)."""
        req = urllib.request.Request(self.url + path)
        try:
            with urllib.request.urlopen(req, context=self._ssl_context(), timeout=timeout) as r:
                status, body = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read().decode(errors="replace")
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    # -- certificates --

    def _make_certs(self) -> None:
        d = self.work_dir / "pki"
        d.mkdir(exist_ok=True)
        self.pki = d
        _openssl(
            "req",
            "-x509",
            *_EC_KEY,
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "30",
            "-subj",
            "/CN=myqueue-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            cwd=d,
        )

        sans = [
            "DNS:localhost",
            "IP:127.0.0.1",
            "IP:10.0.0.1",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
        self._leaf(
            "apiserver",
            "/CN=kube-apiserver",
            [
                "basicConstraints=CA:FALSE",
                "keyUsage=critical,digitalSignature,keyEncipherment",
                "extendedKeyUsage=serverAuth",
                "subjectAltName=" + ",".join(sans),
            ],
        )
        self._leaf("admin", "/O=system:masters/CN=admin", _CLIENT_EXTS)
        self._leaf("controller-manager", "/CN=system:kube-controller-manager", _CLIENT_EXTS)
        # Service-account token signing key pair (kube-apiserver signs, verifies; the
        # controller manager's token controller signs legacy tokens with the same key).
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key", cwd=d)
        _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)

    def _leaf(self, name: str, subject: str, exts: list[str]) -> None:
        """pki/NAME.key and NAME.crt, signed by this control plane's CA."""
        d = self.pki
        _openssl(
            "req", "-new", *_EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d
        )
        (d / f"{name}.ext").write_text("\n".join(exts) + "\n")
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "30", "-extfile", f"{name}.ext", cwd=d,
        )  # fmt: skip

    def client_kubeconfig(self, user: str, subject: str) -> str:
        """A client certificate for ``subject`` (e.g. ``/O=system:nodes/CN=system:node:NAME``) and a
        kubeconfig that presents it; returns the kubeconfig's path."""
        self._leaf(user, subject, _CLIENT_EXTS)
        return self.write_kubeconfig(user)

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    # -- processes --

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = self.work_dir / "logs" / f"{name}.log"
        self._logs[name] = log
        with open(log, "ab") as f:
            p = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                start_new_session=True,  # a Ctrl-C in the test's terminal is not theirs
                preexec_fn=set_pdeathsig,
            )
        self._procs.append((name, p))
        return p

    def _wait(self, name: str, proc: subprocess.Popen, deadline: float, ready) -> None:
        """Poll ``ready()`` until it is true; fail if the process exits or the deadline passes."""
        while True:
            if proc.poll() is not None:
                log = tail(self._logs[name])
                if "address already in use" in log:
                    raise _PortRace(name)
                raise ControlPlaneError(f"{name} exited with {proc.returncode} during start:\n{log}")
            try:
                if ready():
                    return
            except (OSError, ssl.SSLError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{name} not ready within {self.start_timeout}s:\n{tail(self._logs[name])}"
                )
            time.sleep(0.2)

    def _start_etcd(self, deadline: float) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        data = self.work_dir / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        p = self._spawn(
            "etcd",
            [
                "--name=default",
                f"--data-dir={data}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync=true",  # tests only: no durability needed
                "--log-level=warn",
            ],
        )

        def ready() -> bool:
            with urllib.request.urlopen(self.etcd_url + "/health", timeout=2) as r:
                return json.loads(r.read()).get("health") == "true"

        self._wait("etcd", p, deadline, ready)

    def _start_apiserver(self, deadline: float) -> None:
        port = free_port()
        self.url = f"https://127.0.0.1:{port}"
        pki = self.pki
        args = {
            # Flags as controller-runtime's envtest sets them (pkg/internal/testing/controlplane).
            "advertise-address": "127.0.0.1",  # no default route here: must be given
            "bind-address": "127.0.0.1",
            "secure-port": str(port),
            "etcd-servers": self.etcd_url,
            "tls-cert-file": str(pki / "apiserver.crt"),
            "tls-private-key-file": str(pki / "apiserver.key"),
            "client-ca-file": str(pki / "ca.crt"),
            "authorization-mode": "RBAC",
            "service-cluster-ip-range": SERVICE_CLUSTER_IP_RANGE,
            "service-account-issuer": self.url,
            "service-account-key-file": str(pki / "sa.pub"),
            "service-account-signing-key-file": str(pki / "sa.key"),
            "allow-privileged": "true",
            # The "kubernetes" Service cannot point at a loopback address (the apiserver logs an
            # error every 10s trying); tests reach the apiserver through the kubeconfig instead.
            "endpoint-reconciler-type": "none",
            "enable-priority-and-fairness": "false",  # as envtest: less background load
            "profiling": "false",
            "v": "1",
        }
        args.update(self.extra_apiserver_args)
        p = self._spawn("kube-apiserver", [f"--{k}={v}" for k, v in args.items()])

        def ready() -> bool:
            return self.get("/readyz", timeout=2)[0] == 200

        self._wait("kube-apiserver", p, deadline, ready)

    def write_kubeconfig(self, user: str = "admin") -> str:
        """A kubeconfig for ``user`` (pki/USER.crt, .key signed by this control plane's CA); its path."""
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "myqueue-test",
                    "cluster": {"server": self.url, "certificate-authority-data": _b64(self.pki / "ca.crt")},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": _b64(self.pki / f"{user}.crt"),
                        "client-key-data": _b64(self.pki / f"{user}.key"),
                    },
                }
            ],
            "contexts": [{"name": "myqueue-test", "context": {"cluster": "myqueue-test", "user": user}}],
            "current-context": "myqueue-test",
        }
        path = self.work_dir / f"{user}.kubeconfig"
        path.write_text(json.dumps(cfg, indent=2))  # JSON is YAML: kubectl reads it as is
        path.chmod(0o600)
        if user == "admin":
            self.kubeconfig = str(path)
        return str(path)

    def _start_controller_manager(self, deadline: float) -> None:
        # Its own identity, as kubeadm sets it up; each controller then uses its own
        # ServiceAccount (RBAC bootstrap roles system:controller:*).
        self.write_kubeconfig("controller-manager")
        pki = self.pki
        p = self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.work_dir / 'controller-manager.kubeconfig'}",
                "--leader-elect=false",
                "--secure-port=0",
                "--controllers=*",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--v=1",
            ],
        )

        # Running controllers, seen from outside: the serviceaccount controller has created
        # the "default" ServiceAccount in "default", and the root-CA publisher its ConfigMap.
        def ready() -> bool:
            return (
                self.get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200
                and self.get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")[0] == 200
            )

        self._wait("kube-controller-manager", p, deadline, ready)

    def _terminate_all(self) -> None:
        # Reverse start order: controller manager, apiserver, etcd.
        procs, self._procs = self._procs, []
        for _, p in reversed(procs):
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + self.stop_grace
            while p.poll() is None and time.monotonic() < end:
                time.sleep(0.05)
            if p.poll() is None:
                try:
                    p.kill()
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)


class _PortRace(ControlPlaneError):
    pass


if __name__ == "__main__":  # manual use: python3 controlplane.py  (Ctrl-C to stop)
    import sys

    cp = ControlPlane(ensure_binaries(), remove_work_dir=True)
    cp.start()
    print(f"url={cp.url}\nkubeconfig={cp.kubeconfig}\npids={cp.pids}", flush=True)
    try:
        wait_for_signal()
    finally:
        cp.stop()
        sys.exit(0)
