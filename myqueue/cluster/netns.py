"""Network namespaces for the local cluster, so that ``verify --faults partition-*`` can cut a
process's traffic for a while and restore it (``cluster up --netns``, root only).

Layout: one Linux bridge on the host holding ``10.241.N.1/24`` (the host's side: the supervisor,
its control API, the private PostgreSQL and the verify client), and one namespace per group of
children, joined to the bridge by a veth pair, with one address ``10.241.N.k`` and no route but
that connected /24: no default route, no NAT, no forwarding, so nothing leaves the machine.

- A broker gets a namespace of its own.
- The primary and the replica share one (``managers``): the seed client finds the replica on the
  primary's host (``readonly`` port), so both need the same address.

``cut(group)`` inserts ``iptables -j DROP`` for everything but loopback in the group's namespace
(both directions: INPUT and OUTPUT), which truly drops every packet of every connection, open
or new; ``heal`` deletes those rules. ``cut_host_port`` drops one TCP port on the host's address
(the private PostgreSQL, which stays on the host so that ``pg_ctl`` and ``pg_isready`` work as
ever): every client of it is in a namespace, so that cuts them all from it.

Names carry a fixed prefix and the supervisor's PID (``mqp<pid>...``), host rules a comment with
the same tag: ``teardown`` removes what this process made, ``remove_stale`` what a dead one left.
"""

import logging
import os
import re
import shutil
import subprocess  # noqa: S404 - argv lists only, never a shell
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import defaults

log = logging.getLogger(__name__)

PREFIX = defaults.NETNS_PREFIX  # every namespace, link and rule comment we create starts with this
SUBNET_PREFIX = defaults.NETNS_SUBNET_PREFIX
COMMAND_TIMEOUT_S = defaults.NETNS_COMMAND_TIMEOUT_S
TOOLS = ("ip", "iptables")
_TAG = re.compile(rf"^{PREFIX}(\d+)")


class NetnsError(RuntimeError):
    """Namespaces cannot be used here (not root, tools missing) or a command failed."""


def check_available(euid: int | None = None) -> None:
    """NetnsError unless we are root and ``ip`` and ``iptables`` are installed."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        raise NetnsError(
            f"network partition faults (cluster up --netns) need root: they create network namespaces, veth "
            f"pairs and iptables rules; running as uid {euid}"
        )
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise NetnsError(
            f"network partition faults need {', '.join(missing)} (Debian: apt-get install iproute2 iptables)"
        )


def _run(argv: Sequence[str], check: bool = True) -> str:
    result = subprocess.run(  # noqa: S603
        list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if check and result.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed (exit {result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dead_tag(name: str) -> bool:
    match = _TAG.match(name)
    return match is not None and not _alive(int(match.group(1)))


def leftovers(tag: str = PREFIX) -> dict[str, list[str]]:
    """Namespaces, links and host iptables rules named with ``tag`` (by default: any of ours)."""

    def ours(name: str) -> bool:
        return name.startswith(tag) and (tag == PREFIX or not name[len(tag) :][:1].isdigit())

    namespaces = [line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line.strip()]
    links = [
        line.split(":")[1].strip().split("@")[0] for line in _run(["ip", "-o", "link", "show"]).splitlines()
    ]
    rules = [line for line in _run(["iptables", "-S"]).splitlines() if ours(_rule_tag(line))]
    return {
        "namespaces": [n for n in namespaces if ours(n)],
        "links": [n for n in links if ours(n)],
        "rules": rules,
    }


def _rule_tag(rule: str) -> str:
    match = re.search(r'--comment "?([A-Za-z0-9_-]+)', rule)
    return match.group(1) if match else ""


def remove_stale() -> None:
    """Remove what supervisors that are no longer running left behind (a crash, a SIGKILL)."""
    found = leftovers()
    for namespace in found["namespaces"]:
        if _dead_tag(namespace):
            log.warning("removing stale network namespace %s", namespace)
            _run(["ip", "netns", "del", namespace], check=False)
    for link in leftovers()["links"]:
        if _dead_tag(link):
            log.warning("removing stale link %s", link)
            _run(["ip", "link", "del", link], check=False)
    for rule in found["rules"]:
        if _dead_tag(_rule_tag(rule)):
            log.warning("removing stale iptables rule %s", rule)
            _delete_rule(rule)


def _delete_rule(rule: str) -> None:
    """``-A CHAIN spec`` as printed by ``iptables -S``, deleted with ``-D CHAIN spec``."""
    parts = rule.replace('"', "").split()
    if parts and parts[0] == "-A":
        _run(["iptables", "-D", *parts[1:]], check=False)


@dataclass
class Network:
    """One supervisor's bridge and namespaces; ``teardown`` is safe to call at any point."""

    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    subnet: str = ""
    _groups: dict[str, tuple[str, str]] = field(default_factory=dict)  # group -> (namespace, address)
    _cut: set[str] = field(default_factory=set)
    _host_rules: dict[int, list[list[str]]] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"{self.tag}b"

    @property
    def host_address(self) -> str:
        return f"{self.subnet}.1"

    def create(self) -> None:
        """The bridge and its host address, in the first free 10.241.N.0/24."""
        taken = _run(["ip", "-o", "-4", "addr", "show"])
        third = next((n for n in range(256) if f" {SUBNET_PREFIX}.{n}." not in taken), None)
        if third is None:
            raise NetnsError(f"no free {SUBNET_PREFIX}.N.0/24 on this host")
        self.subnet = f"{SUBNET_PREFIX}.{third}"
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{self.host_address}/24", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])

    def add(self, group: str) -> str:
        """A namespace for ``group`` (idempotent) joined to the bridge; its address."""
        if group in self._groups:
            return self._groups[group][1]
        index = len(self._groups) + 2
        if index > 250:
            raise NetnsError("too many network namespaces for one cluster")
        namespace, address = f"{self.tag}-{group}", f"{self.subnet}.{index}"
        host_end, inner_end = f"{self.tag}h{index}", f"{self.tag}n{index}"
        self._groups[group] = (namespace, address)  # before creating: teardown removes a half-made one
        _run(["ip", "netns", "add", namespace])
        _run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", inner_end])
        _run(["ip", "link", "set", inner_end, "netns", namespace])
        _run(["ip", "link", "set", host_end, "master", self.bridge, "up"])
        inside = ["ip", "netns", "exec", namespace]
        _run([*inside, "ip", "link", "set", "lo", "up"])
        _run([*inside, "ip", "addr", "add", f"{address}/24", "dev", inner_end])
        _run([*inside, "ip", "link", "set", inner_end, "up"])
        return address

    def exec_prefix(self, group: str) -> tuple[str, ...]:
        """argv prefix that runs a command in ``group``'s namespace (``ip netns exec`` execs it: same PID)."""
        return ("ip", "netns", "exec", self._groups[group][0])

    def groups(self) -> list[str]:
        return list(self._groups)

    # --- partitions -------------------------------------------------------------------------
    def cut(self, group: str) -> None:
        """Drop every packet into and out of ``group``'s namespace except on its loopback."""
        if group not in self._groups:
            raise KeyError(group)
        if group in self._cut:
            return
        for rule in self._namespace_rules():
            _run([*self.exec_prefix(group), "iptables", "-I", *rule])
        self._cut.add(group)

    def heal(self, group: str) -> None:
        if group not in self._groups:
            raise KeyError(group)
        if group not in self._cut:
            return
        for rule in self._namespace_rules():
            _run([*self.exec_prefix(group), "iptables", "-D", *rule])
        self._cut.discard(group)

    def cut_host_port(self, port: int) -> None:
        """Drop TCP to and from ``port`` on the host's bridge address (its clients are all in namespaces)."""
        if port in self._host_rules:
            return
        comment = ["-m", "comment", "--comment", self.tag]
        rules = [
            ["INPUT", "-d", self.host_address, "-p", "tcp", "--dport", str(port), *comment, "-j", "DROP"],
            ["OUTPUT", "-s", self.host_address, "-p", "tcp", "--sport", str(port), *comment, "-j", "DROP"],
        ]
        self._host_rules[port] = []
        for rule in rules:
            _run(["iptables", "-I", *rule])
            self._host_rules[port].append(rule)

    def heal_host_port(self, port: int) -> None:
        for rule in self._host_rules.pop(port, []):
            _run(["iptables", "-D", *rule])

    def is_cut(self, target: str | int) -> bool:
        return target in self._cut or target in self._host_rules

    @staticmethod
    def _namespace_rules() -> list[list[str]]:
        return [["INPUT", "!", "-i", "lo", "-j", "DROP"], ["OUTPUT", "!", "-o", "lo", "-j", "DROP"]]

    # --- teardown ---------------------------------------------------------------------------
    def teardown(self) -> None:
        """Remove host rules, namespaces (their veth ends and rules go with them) and the bridge."""
        for port in list(self._host_rules):
            for rule in self._host_rules.pop(port):
                _run(["iptables", "-D", *rule], check=False)
        for namespace, _ in self._groups.values():
            _run(["ip", "netns", "del", namespace], check=False)
        self._groups.clear()
        self._cut.clear()
        for link in leftovers(self.tag)["links"]:  # a half-made veth, then the bridge
            _run(["ip", "link", "del", link], check=False)
