"""A real one-node Kubernetes cluster for the e2e tier, on this machine, with no registry.

The project's control plane (``e2e/controlplane/controlplane.py``: etcd, kube-apiserver,
kube-controller-manager) plus a node made of kube-scheduler, kubelet, kube-proxy (iptables mode)
and containerd (Debian's, its own config, root and socket) with the CNI plugins of Debian's
``containernetworking-plugins``; CoreDNS as the cluster DNS. The images come from one archive made
by ``e2e/node/images.sh`` and are imported into containerd, so nothing is ever pulled.

    node = Node(images_archive, work_dir)
    node.start()          # guard rules first, then every daemon; returns once CoreDNS is Ready
    node.kubectl("get", "nodes")
    node.stop()           # pods, daemons, mounts, chains, bridges, rules: nothing is left
    node.leftovers()      # what stop() could not remove ([] after a clean stop)

Networking, chosen once here: the node's address is NODE_IP on an empty bridge (this kernel has
no dummy links), so nothing is advertised on the external interface; pods get POD_CIDR on the CNI
bridge; Services SERVICE_CIDR (the control plane's range). Before anything starts, GUARD rules drop
every packet to or from those ranges that would leave by the external interface: a pod that
connects to a ClusterIP in the moment before kube-proxy has programmed it would otherwise follow
the default route out of the machine (the dropped SYN is retransmitted and then meets
kube-proxy's rule). The apiserver must bind 0.0.0.0 (the tests reach it on 127.0.0.1, pods on
NODE_IP); connections to its port arriving on the external interface are dropped.

Also a command line: ``python3 e2e/node/node.py clean`` removes what a killed run left behind
(mounts, chains, bridges, rules); ``python3 e2e/node/node.py up ARCHIVE`` runs a node until Ctrl-C.
"""

# ruff: noqa: S603, S607 - a test harness starting the daemons it tests

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "e2e" / "controlplane"))

import controlplane  # noqa: E402
from controlplane import ControlPlane, ControlPlaneError, stop_process, tail, wait_for, wait_for_signal  # noqa: E402

NODE_NAME = "myqueue-node"
NODE_BRIDGE = "mqnode0"  # holds NODE_IP; an empty bridge (no dummy link type in this kernel)
NODE_IP = "10.250.0.1"
POD_BRIDGE = "mqpods0"
POD_CIDR = "10.88.0.0/24"
POD_GATEWAY = "10.88.0.1"
SERVICE_CIDR = controlplane.SERVICE_CLUSTER_IP_RANGE  # 10.0.0.0/24
CLUSTER_DNS_IP = "10.0.0.10"
CNI_NETWORK = "myqueue-pods"
CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
NODE_BINARIES = ("kubelet", "kube-scheduler", "kube-proxy", "coredns", "crictl")
HOST_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "iptables-save", "ip")
CNI_PLUGINS = ("bridge", "host-local", "firewall", "portmap", "loopback")
GUARD_COMMENT = "myqueue-e2e-node-guard"  # plain: iptables -S prints it back unquoted

REQUIRE_ENV = "MYQUEUE_REQUIRE_NODE"
IMAGES_ENV = "MYQUEUE_NODE_IMAGES"


class NodeError(RuntimeError):
    pass


def run(*args: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise NodeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result


def external_interface() -> str:
    """The interface of the default route: what must never carry the cluster's packets."""
    out = run("ip", "-j", "route", "show", "default").stdout
    routes = json.loads(out or "[]")
    if not routes:
        raise NodeError("no default route: cannot tell which interface to guard")
    return routes[0]["dev"]


def guard_rules(ext_if: str) -> list[list[str]]:
    """iptables rules (table, chain, spec) installed before anything starts, removed last.

    mangle/POSTROUTING sees every packet about to leave, routed, after kube-proxy's DNAT and before
    any masquerade: a pod's or the host's packet still addressed to the service range there was not
    programmed yet; one to or from the pod range has no business outside.
    """
    tag = ["-m", "comment", "--comment", GUARD_COMMENT]
    return [
        ["mangle", "POSTROUTING", "-o", ext_if, "-d", SERVICE_CIDR, *tag, "-j", "DROP"],
        ["mangle", "POSTROUTING", "-o", ext_if, "-d", POD_CIDR, *tag, "-j", "DROP"],
        ["mangle", "POSTROUTING", "-o", ext_if, "-s", POD_CIDR, *tag, "-j", "DROP"],
    ]


def missing_pieces(images_archive: Path | None) -> list[str]:
    """Everything the node needs that this machine lacks, each with how to get it."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (the node configures iptables, bridges and mounts)")
    bin_dir = controlplane.default_bin_dir()
    absent = [b for b in (*controlplane.BINARIES, *NODE_BINARIES) if not os.access(bin_dir / b, os.X_OK)]
    if absent:
        missing.append(f"{', '.join(absent)} in {bin_dir}: run e2e/controlplane/build.sh")
    tools = [t for t in HOST_TOOLS if not shutil.which(t)]
    if tools:
        missing.append(f"{', '.join(tools)}: apt-get install containerd runc iptables iproute2")
    plugins = [p for p in CNI_PLUGINS if not (CNI_BIN_DIR / p).exists()]
    if plugins:
        missing.append(
            f"CNI plugins {', '.join(plugins)} in {CNI_BIN_DIR}: apt-get install containernetworking-plugins"
        )
    if images_archive is None:
        missing.append(f"${IMAGES_ENV} (the archive of e2e/node/images.sh)")
    elif not images_archive.is_file():
        missing.append(f"{images_archive}: run e2e/node/images.sh {images_archive}")
    return missing


def _mounts_under(prefix: str) -> list[str]:
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    return [m for m in points if m == prefix or m.startswith(prefix.rstrip("/") + "/")]


def _iptables_rules(table: str) -> list[str]:
    return run("iptables", "-t", table, "-S").stdout.splitlines()


def clean_host(work_dir: Path | None = None) -> None:
    """Remove the node's marks on the host: idempotent, for stop() and after a killed run."""
    if work_dir is not None:
        for m in reversed(_mounts_under(str(work_dir))):
            run("umount", "-l", m, check=False)
    bin_dir = controlplane.default_bin_dir()
    if (bin_dir / "kube-proxy").exists():
        run(str(bin_dir / "kube-proxy"), "--cleanup", check=False)
    for table in ("filter", "nat", "mangle"):
        rules = _iptables_rules(table)
        # Jumps into the kubelet's, kube-proxy's and the CNI plugins' chains, then the chains.
        own = re.compile(r"-j (KUBE-|CNI-)")
        for rule in rules:
            if rule.startswith("-A ") and own.search(rule) and not re.match(r"-A (KUBE-|CNI-)", rule):
                run("iptables", "-t", table, "-D", *shlex.split(rule[3:]), check=False)
        chains = [r.split()[1] for r in rules if re.match(r"-N (KUBE-|CNI-)", r)]
        for chain in chains:
            run("iptables", "-t", table, "-F", chain, check=False)
        for chain in chains:
            run("iptables", "-t", table, "-X", chain, check=False)
        for rule in _iptables_rules(table):
            if GUARD_COMMENT in rule and rule.startswith("-A "):
                run("iptables", "-t", table, "-D", *shlex.split(rule[3:]), check=False)
    for link in (POD_BRIDGE, NODE_BRIDGE):
        run("ip", "link", "del", link, check=False)
    shutil.rmtree(f"/var/lib/cni/networks/{CNI_NETWORK}", ignore_errors=True)


def _links() -> list[str]:
    return sorted(link["ifname"] for link in json.loads(run("ip", "-j", "link", "show").stdout or "[]"))


def host_network_state() -> dict[str, list[str]]:
    """What the node must leave as it found it: the iptables rules of each table, the links."""
    state = {table: _iptables_rules(table) for table in ("filter", "nat", "mangle")}
    state["links"] = _links()
    return state


@dataclass
class Node:
    images_archive: Path
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="myqueue-node-")))
    start_timeout: float = 240.0
    cp: ControlPlane | None = None
    # (what, time.monotonic()) in order: the tests check the guard came before every daemon.
    timeline: list[tuple[str, float]] = field(default_factory=list)
    _procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    _pids_seen: dict[str, int] = field(default_factory=dict)
    _ip_forward: str = "0"
    _ext_if: str = ""

    # -- paths --
    @property
    def containerd_socket(self) -> Path:
        return self.work_dir / "containerd" / "containerd.sock"

    @property
    def kubeconfig(self) -> str:
        assert self.cp is not None and self.cp.kubeconfig
        return self.cp.kubeconfig

    def log(self, name: str) -> Path:
        return self.work_dir / "logs" / f"{name}.log"

    # -- public API --
    def start(self) -> Node:
        missing = missing_pieces(self.images_archive)
        if missing:
            raise NodeError("the e2e node cannot start; missing:\n  - " + "\n  - ".join(missing))
        (self.work_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._ext_if = external_interface()
        clean_host()  # what a killed earlier run may have left
        self._ip_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        try:
            self._install_guard()
            self._node_bridge()
            self._start_control_plane()
            self._start_containerd()
            self._import_images()
            self._start_node_daemons()
            self._wait_node_ready()
            self._start_coredns()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Every pod, daemon, mount, chain, bridge and rule of this node, in dependency order."""
        kubelet = self._proc("kubelet")
        if kubelet is not None:
            stop_process(kubelet)
        if self._proc("containerd") is not None and self.containerd_socket.exists():
            # Pods outlive the kubelet in containerd: stop and remove every sandbox while
            # containerd still runs them (it calls the CNI DEL, so no veth or address is left).
            self.crictl("rmp", "--force", "--all", check=False, timeout=180)
        for _, proc in reversed(self._procs):
            stop_process(proc)
        self._procs.clear()
        if self.cp is not None:
            self.cp.stop()
        clean_host(self.work_dir)
        Path("/proc/sys/net/ipv4/ip_forward").write_text(self._ip_forward + "\n")
        if not _mounts_under(str(self.work_dir)):  # never rm -r through a mount
            shutil.rmtree(self.work_dir, ignore_errors=True)
        self.timeline.append(("stopped", time.monotonic()))

    def leftovers(self) -> list[str]:
        """What a stop() left behind: daemons alive, mounts, chains, links, guard rules."""
        found = []
        for name, pid in self.pids.items():
            try:
                os.kill(pid, 0)
                found.append(f"process {name} (pid {pid}) still runs")
            except ProcessLookupError:
                pass
        found += [f"mount {m}" for m in _mounts_under(str(self.work_dir))]
        for table in ("filter", "nat", "mangle"):
            found += [f"iptables -t {table}: {r}" for r in _iptables_rules(table)
                      if re.search(r"KUBE-|CNI-", r) or GUARD_COMMENT in r]  # fmt: skip
        found += [f"link {li}" for li in _links() if li in (POD_BRIDGE, NODE_BRIDGE) or li.startswith("veth")]
        if self.work_dir.exists():
            found.append(f"work dir {self.work_dir}")
        return found

    @property
    def pids(self) -> dict[str, int]:
        """Every daemon of this node and its control plane, by name (kept after stop() for checks)."""
        return dict(self._pids_seen)

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 120, **kw
    ) -> subprocess.CompletedProcess:
        assert self.cp is not None
        return self.cp.kubectl(*args, check=check, timeout=timeout, **kw)

    def crictl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """crictl against this node's containerd (NodeError when it fails and ``check``)."""
        runtime = f"--runtime-endpoint=unix://{self.containerd_socket}"
        return run(
            str(controlplane.default_bin_dir() / "crictl"), runtime, *args, check=check, timeout=timeout
        )

    # -- steps --
    def _mark(self, what: str) -> None:
        self.timeline.append((what, time.monotonic()))

    def _install_guard(self) -> None:
        for table, chain, *spec in guard_rules(self._ext_if):
            run("iptables", "-t", table, "-I", chain, "1", *spec)
        for table, chain, *spec in guard_rules(self._ext_if):
            run("iptables", "-t", table, "-C", chain, *spec)  # present, or this raises
        self._mark("guard rules")

    def _node_bridge(self) -> None:
        run("ip", "link", "add", NODE_BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{NODE_IP}/32", "dev", NODE_BRIDGE)
        run("ip", "link", "set", NODE_BRIDGE, "up")
        self._mark("node bridge")

    def _start_control_plane(self) -> None:
        pki = self.work_dir / "cp" / "pki"
        self.cp = ControlPlane(
            controlplane.default_bin_dir(),
            self.work_dir / "cp",
            start_timeout=180,
            remove_work_dir=False,  # stop() removes work_dir as a whole, mounts first
            apiserver_args={
                # Pods reach the apiserver through the "kubernetes" Service -> NODE_IP:port.
                "bind-address": "0.0.0.0",  # noqa: S104 - the external interface is dropped in INPUT
                "advertise-address": NODE_IP,
                "endpoint-reconciler-type": "lease",
                # A real node: the Node authorizer and NodeRestriction for the kubelet's identity.
                "authorization-mode": "Node,RBAC",
                "enable-admission-plugins": "NodeRestriction",
                # kubectl logs/exec: the apiserver calls the kubelet with a client certificate.
                "kubelet-client-certificate": str(pki / "admin.crt"),
                "kubelet-client-key": str(pki / "admin.key"),
                # The node's name is in no DNS: reach the kubelet by its InternalIP.
                "kubelet-preferred-address-types": "InternalIP,Hostname",
            },
        )
        self._mark("etcd")
        self.cp.start()
        self._pids_seen.update(self.cp.pids)
        port = self.cp.url.rsplit(":", 1)[1] if self.cp.url else ""
        run("iptables", "-t", "filter", "-I", "INPUT", "1", "-i", self._ext_if, "-p", "tcp", "--dport", port,
            "-m", "comment", "--comment", GUARD_COMMENT, "-j", "DROP")  # fmt: skip
        self._mark("control plane")

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        with open(self.log(name), "ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.work_dir,
                start_new_session=True, preexec_fn=controlplane.set_pdeathsig,
            )  # fmt: skip
        self._procs.append((name, proc))
        self._pids_seen[name] = proc.pid
        self._mark(name)
        return proc

    def _start_containerd(self) -> None:
        sock = self.containerd_socket
        cni_conf = self.work_dir / "cni"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / f"10-{CNI_NETWORK}.conflist").write_text(json.dumps(_cni_conflist(), indent=1))
        config = self.work_dir / "containerd.toml"
        config.write_text(_containerd_config(self.work_dir / "containerd", sock, cni_conf))
        proc = self._spawn("containerd", ["containerd", "--config", str(config)])

        def answering() -> bool | controlplane.Falsy:
            self._died("containerd", proc)
            version = run("ctr", "--address", str(sock), "version", check=False)
            return version.returncode == 0 or controlplane.Falsy(version.stderr.strip()[-500:])

        wait_for("containerd answering", answering, timeout=60)

    def _died(self, name: str, proc: subprocess.Popen) -> bool:
        if proc.poll() is not None:
            raise NodeError(f"{name} exited with {proc.returncode}:\n{tail(self.log(name))}")
        return False

    def _import_images(self) -> None:
        t0 = time.monotonic()
        with open(self.images_archive, "rb") as archive:
            run("ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", "images", "import",
                "--no-unpack", "-", stdin=archive, timeout=600)  # fmt: skip
        self._mark(f"images imported in {time.monotonic() - t0:.1f}s")

    def _start_node_daemons(self) -> None:
        assert self.cp is not None
        bin_dir = controlplane.default_bin_dir()
        scheduler = self.cp.client_kubeconfig("scheduler", "/CN=system:kube-scheduler")
        self._spawn("kube-scheduler", [
            str(bin_dir / "kube-scheduler"), f"--kubeconfig={scheduler}",
            f"--authentication-kubeconfig={scheduler}", f"--authorization-kubeconfig={scheduler}",
            "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0", "--v=1",
        ])  # fmt: skip
        kubelet_root = self.work_dir / "kubelet"
        kubelet_root.mkdir(exist_ok=True)
        config = self.work_dir / "kubelet-config.json"
        config.write_text(
            json.dumps(_kubelet_config(self.cp.pki / "ca.crt", self.containerd_socket), indent=1)
        )
        kubelet = self.cp.client_kubeconfig("kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}")
        self._spawn("kubelet", [
            str(bin_dir / "kubelet"), f"--config={config}", f"--kubeconfig={kubelet}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}", f"--root-dir={kubelet_root}",
            f"--cert-dir={kubelet_root / 'pki'}", "--v=1",
        ])  # fmt: skip
        proxy_cfg = self.work_dir / "kube-proxy-config.json"
        proxy_cfg.write_text(
            json.dumps(
                _kube_proxy_config(self.cp.client_kubeconfig("kube-proxy", "/CN=system:kube-proxy")), indent=1
            )
        )
        self._spawn("kube-proxy", [str(bin_dir / "kube-proxy"), f"--config={proxy_cfg}", "--v=1"])

    def _wait_node_ready(self) -> None:
        assert self.cp is not None
        cp = self.cp

        def ready() -> object:
            for name, proc in self._procs:
                self._died(name, proc)
            status, node = cp.get(f"/api/v1/nodes/{NODE_NAME}")
            if status != 200 or not isinstance(node, dict):
                return controlplane.Falsy(f"GET node: {status}")
            conditions = {
                c["type"]: (c["status"], c.get("message", "")) for c in node["status"].get("conditions", [])
            }
            return conditions.get("Ready", ("?",))[0] == "True" or controlplane.Falsy(conditions)

        wait_for("node Ready", ready, timeout=self.start_timeout, interval=0.5)
        self._mark("node Ready")

    def _start_coredns(self) -> None:
        manifest = string.Template((HERE / "coredns.yaml").read_text()).substitute(
            COREDNS_VERSION=controlplane.versions()["COREDNS_VERSION"], CLUSTER_DNS_IP=CLUSTER_DNS_IP
        )
        self.kubectl("apply", "-f", "-", input=manifest)
        self.kubectl(
            "-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=120s", timeout=150
        )
        self._mark("CoreDNS Ready")

    # -- processes --
    def _proc(self, name: str) -> subprocess.Popen | None:
        return next((p for n, p in self._procs if n == name), None)


# --- configuration files -------------------------------------------------------------------------------
def _cni_conflist() -> dict:
    return {
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge", "bridge": POD_BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY}]],
                         "routes": [{"dst": "0.0.0.0/0"}]},
            },
            # Accepts the pods' forwarded traffic whatever the FORWARD policy (dockerd sets DROP).
            {"type": "firewall"},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }  # fmt: skip


def _containerd_config(root: Path, socket: Path, cni_conf: Path) -> str:
    # restrict_oom_score_adj: this machine's bounding set lacks CAP_SYS_RESOURCE, so nobody may
    # lower oom_score_adj below 0 and runc fails the sandbox's -998 ("can't get final child's PID
    # from pipe: EOF"); clamped to containerd's own instead. SystemdCgroup false: no systemd here.
    return f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  enable_unprivileged_ports = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf}"
"""


def _kubelet_config(client_ca: Path, containerd_socket: Path) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(client_ca)}},
        "authorization": {"mode": "AlwaysAllow"},  # only the apiserver's client certificate gets in
        "cgroupDriver": "cgroupfs",  # no systemd
        "failCgroupV1": False,  # this machine's cgroups are v1
        "containerRuntimeEndpoint": f"unix://{containerd_socket}",
        "clusterDNS": [CLUSTER_DNS_IP],
        "clusterDomain": "cluster.local",
        "address": NODE_IP,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "failSwapOn": False,
        "resolvConf": "/etc/resolv.conf",
        "serializeImagePulls": False,
        # A test machine's disk is shared: evict only when really short, never GC imported images.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "podCIDR": POD_CIDR,
        "maxPods": 60,
    }  # fmt: skip


def _kube_proxy_config(kubeconfig: str) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig},
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "nodePortAddresses": [f"{NODE_IP}/32"],  # NodePorts on the node's address only
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "conntrack": {"maxPerCore": 0, "min": 0},  # a module parameter here: leave the kernel's
    }


def _main(argv: list[str]) -> int:
    if argv[:1] == ["clean"]:
        clean_host()
        return 0
    if argv[:1] == ["up"] and len(argv) == 2:
        node = Node(Path(argv[1]))
        node.start()
        print(f"KUBECONFIG={node.kubeconfig}\npids={node.pids}", flush=True)
        try:
            wait_for_signal()
        finally:
            node.stop()
            print("\n".join(node.leftovers()) or "nothing left behind", flush=True)
        return 0
    print("usage: node.py clean | node.py up IMAGES_ARCHIVE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(_main(sys.argv[1:]))
    except (NodeError, ControlPlaneError) as e:
        print(e, file=sys.stderr)
        sys.exit(1)
