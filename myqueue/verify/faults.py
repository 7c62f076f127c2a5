"""Faults a verify run injects into the local cluster it runs, each once, each bounded in time.

- ``kill-broker``: SIGKILL the broker hosting one of the run's partitions; the supervisor restarts it.
- ``pause-broker``: SIGSTOP such a broker for longer than the clients' timeout, then SIGCONT.
- ``kill-primary`` / ``kill-replica``: SIGKILL that manager; the supervisor restarts it.
- ``restart-postgres``: stop (fast mode) and start the supervisor's private PostgreSQL through its
  control API; the services stay up and must ride it out.
- ``partition-broker`` / ``partition-primary`` / ``partition-postgres``: cut all traffic of such a
  broker, of the managers (the primary and the replica share one namespace: the seed client finds
  the replica on the primary's host) or of the private PostgreSQL for as long as a pause, then
  restore it. The cluster runs with ``--netns`` (root): iptables DROP in the process's network
  namespace, or on the host for PostgreSQL's port (``myqueue.cluster.netns``).
- ``kill-member``: one member of the run's consumer group (``--group-consumers``, at least 2) stops
  as a crash would: no commit, no leave. Its partitions must move to the other members within the
  session timeout; records it had not committed come again (re-deliveries, not duplicates).
- ``lose-pg-replies``: the cluster runs with ``--pg-proxy`` (``pgproxy.py`` between every service
  and PostgreSQL); for as long as a pause each statement, with ``LOSE_PG_PROBABILITY``, is executed
  but loses its reply, or is reset mid-statement; then every connection is black-holed for longer
  than the services' PostgreSQL call timeout (``MYQUEUE_PG_CALL_TIMEOUT``). The fault line carries
  the proxy's counters.

After each fault the driver waits until the process is back (a new PID, ``/readyz``) and the
cluster has settled (every broker ready in the primary's view, the replica in sync) before the
next; a fault that does not recover within ``RECOVER_TIMEOUT_S`` is reported as a problem of the
run. Processes are signalled by the PID the supervisor reports, never by name. What the workload
does meanwhile is ``workload.py``'s business; this module only hurts and waits.
"""

import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from myqueue.cluster import defaults as cluster_defaults
from myqueue.cluster import probes
from myqueue.cluster.local import LocalCluster, LocalClusterError, wait_for
from myqueue.core import defaults as core_defaults
from myqueue.core.view import ClusterView
from myqueue.net.envelope import CallFailed

from .workload import Report, Workload

log = logging.getLogger(__name__)

RECOVER_TIMEOUT_S = 90.0  # a fault's process back and the cluster settled, or the run fails
PAUSE_MARGIN_S = 2.0  # a paused broker stays stopped this much longer than the client timeout
TRIGGER_TIMEOUT_S = 120.0  # the workload reaches a fault's point, or the fault is skipped
LOSE_PG_PROBABILITY = 0.2  # lose-pg-replies: the share of statements whose reply is lost or reset


class Fault(StrEnum):
    """One kind of fault ``--faults`` names."""

    KILL_BROKER = "kill-broker"
    PAUSE_BROKER = "pause-broker"
    KILL_PRIMARY = "kill-primary"
    KILL_REPLICA = "kill-replica"
    RESTART_POSTGRES = "restart-postgres"
    PARTITION_BROKER = "partition-broker"
    PARTITION_PRIMARY = "partition-primary"
    PARTITION_POSTGRES = "partition-postgres"
    LOSE_PG_REPLIES = "lose-pg-replies"
    KILL_MEMBER = "kill-member"


PARTITIONS = (Fault.PARTITION_BROKER, Fault.PARTITION_PRIMARY, Fault.PARTITION_POSTGRES)


def pg_call_timeout() -> float:
    """The services' PostgreSQL call timeout: they inherit verify's environment."""
    try:
        return float(os.environ.get("MYQUEUE_PG_CALL_TIMEOUT", core_defaults.PG_CALL_TIMEOUT_S))
    except ValueError:
        return core_defaults.PG_CALL_TIMEOUT_S


def parse_faults(text: str | Sequence[str] | None) -> tuple[Fault, ...]:
    """``kill-broker,pause-broker`` (or a list of names) as Faults in order, each once; ValueError
    naming the choices for an unknown one."""
    if not text:
        return ()
    names = text.split(",") if isinstance(text, str) else list(text)
    faults: list[Fault] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        try:
            fault = Fault(name)
        except ValueError:
            choices = ", ".join(f.value for f in Fault)
            raise ValueError(f"unknown fault {name!r}; choose from {choices}") from None
        if fault not in faults:
            faults.append(fault)
    return tuple(faults)


def schedule(messages: int, faults: int) -> tuple[list[int], list[int]]:
    """(triggers, gates): fault ``i`` is injected once ``triggers[i]`` messages were acknowledged,
    and no more than ``gates[i]`` are sent before it was. Faults spread evenly; each has traffic
    in flight when it lands and after it."""
    slots = faults + 1
    triggers = [max(1, messages * (i + 1) // slots) for i in range(faults)]
    gates = [t + max(1, messages // (2 * slots)) for t in triggers]
    return triggers, gates


@dataclass
class FaultDriver:
    """Injects ``faults`` into ``cluster`` while a workload runs (``run`` is its ``during``)."""

    cluster: LocalCluster
    faults: Sequence[Fault]
    triggers: Sequence[int]
    pause_s: float
    report: Report
    problems: list[str] = field(default_factory=list)

    def run(self, workload: Workload) -> None:
        progress = workload.progress
        try:
            for index, fault in enumerate(self.faults):
                if not progress.wait_acked(self.triggers[index], TRIGGER_TIMEOUT_S):
                    self._problem(
                        f"{fault}: not injected, {self.triggers[index]} acknowledgements did not come in time"
                    )
                    continue
                try:
                    self._inject(fault, workload, index)
                except (LocalClusterError, OSError) as error:
                    self._problem(f"{fault}: {error}")
                finally:
                    progress.open_gate(index)
        finally:
            progress.open_all()

    def _problem(self, text: str) -> None:
        self.problems.append(text)
        self.report(f"fault {text}")

    def _inject(self, fault: Fault, workload: Workload, index: int) -> None:
        started = time.monotonic()
        if fault is Fault.KILL_MEMBER:
            self._kill_member(workload, index, started)
            return
        if fault in (Fault.KILL_BROKER, Fault.PAUSE_BROKER, Fault.PARTITION_BROKER):
            victim, hosted = self._victim_broker(workload, index)
            what = f"{victim} (hosting {', '.join(hosted)})"
        elif fault is Fault.PARTITION_POSTGRES:
            victim = what = "postgres"
        else:
            victim = "replica" if fault is Fault.KILL_REPLICA else "primary"
            what = "primary and replica (one namespace)" if fault is Fault.PARTITION_PRIMARY else victim
        if fault in PARTITIONS:
            self.cluster.cut(victim)
            try:
                workload.progress.open_gate(index)
                time.sleep(self.pause_s)  # the fault itself: a partition longer than the clients' timeout
            finally:
                self.cluster.heal(victim)
            detail = f"traffic of {what} cut (iptables DROP) for {self.pause_s:.1f} s, then restored"
        elif fault is Fault.LOSE_PG_REPLIES:
            detail = self._lose_pg_replies(workload, index)
        elif fault is Fault.RESTART_POSTGRES:
            self.cluster.stop_postgres()
            workload.progress.open_gate(index)
            down = time.monotonic() - started
            self.cluster.start_postgres()
            detail = f"PostgreSQL stopped in {down:.1f} s and started again"
        elif fault is Fault.PAUSE_BROKER:
            pid = self.cluster.pid(victim)
            os.kill(pid, signal.SIGSTOP)
            try:
                workload.progress.open_gate(index)
                time.sleep(self.pause_s)  # the fault itself: a pause longer than the clients' timeout
            finally:
                os.kill(pid, signal.SIGCONT)
            detail = f"{what} (pid {pid}) stopped for {self.pause_s:.1f} s, then continued"
        else:
            pid = self.cluster.kill(victim, signal.SIGKILL)
            workload.progress.open_gate(index)
            self.cluster.wait_restarted(victim, pid, RECOVER_TIMEOUT_S)
            detail = f"{what} (pid {pid}) killed with SIGKILL; back as pid {self.cluster.pid(victim)}"
        self._wait_settled(max(1.0, started + RECOVER_TIMEOUT_S - time.monotonic()))
        self.report(
            f"fault {fault}: {detail}; cluster ready again {time.monotonic() - started:.1f} s after the fault"
        )

    def _lose_pg_replies(self, workload: Workload, index: int) -> str:
        """Random lost replies and resets for a pause, then a black hole longer than the call timeout."""
        self.cluster.pg_proxy_faults(probability=LOSE_PG_PROBABILITY, seconds=self.pause_s)
        workload.progress.open_gate(index)
        time.sleep(self.pause_s)  # the fault itself: random faults for this long
        black_hole_s = pg_call_timeout() + PAUSE_MARGIN_S
        self.cluster.pg_proxy_faults(black_hole_s=black_hole_s)
        time.sleep(black_hole_s)  # the fault itself: no reply, no reset, for longer than the timeout
        counters = self.cluster.pg_proxy_counters()
        if not counters["lost_replies"] + counters["resets"]:
            self.problems.append(f"{Fault.LOSE_PG_REPLIES}: the proxy injected no fault ({counters})")
        return (
            f"PostgreSQL replies lost or reset at random (p={LOSE_PG_PROBABILITY}) for {self.pause_s:.1f} s, "
            f"then black-holed for {black_hole_s:.1f} s: {counters['lost_replies']} lost replies, "
            f"{counters['resets']} resets, {counters['black_holes']} black hole(s) "
            f"in {counters['statements']} statements on {counters['connections']} connections"
        )

    def _kill_member(self, workload: Workload, index: int, started: float) -> None:
        member_id = workload.kill_member()
        workload.progress.open_gate(index)
        if member_id is None:
            self._problem(f"{Fault.KILL_MEMBER}: needs --group-consumers 2 or more")
            return
        url = f"{self.cluster.primary_url}/v1/groups/{workload.group}"
        last: dict = {}

        def moved() -> bool:
            nonlocal last
            with probes.session() as session:
                try:
                    last = session.message("GET", url, timeout=cluster_defaults.PROBE_TIMEOUT_S)
                except CallFailed:
                    return False
            owners = [p["owner"] for p in last.get("partitions", [])]
            return bool(owners) and None not in owners and member_id not in owners

        try:
            wait_for(moved, RECOVER_TIMEOUT_S, f"the partitions of member {member_id} moved")
        except LocalClusterError as error:
            self._problem(f"{Fault.KILL_MEMBER}: {error}; last seen: {last}")
            return
        self.report(
            f"fault {Fault.KILL_MEMBER}: member {member_id} of {workload.group} stopped without commit or leave; "
            f"its partitions moved to the other members in {time.monotonic() - started:.1f} s"
        )

    def _victim_broker(self, workload: Workload, index: int) -> tuple[str, list[str]]:
        """The broker hosting one of the run's partitions (a different one per fault where possible)."""
        view = self._metadata(self.cluster.primary_url)
        if view is None:
            raise LocalClusterError("the primary does not answer /v1/metadata; cannot choose a broker")
        ours = [view.owner(t, p) for t, p in workload.partitions]
        brokers = sorted({b for b in ours if b})
        if not brokers:
            raise LocalClusterError("none of the run's partitions has a broker")
        victim = brokers[index % len(brokers)]
        return victim, [
            f"{t}:{p}" for (t, p), b in zip(workload.partitions, ours, strict=True) if b == victim
        ]

    def _metadata(self, base_url: str) -> ClusterView | None:
        with probes.session() as session:
            return probes.metadata(session, base_url)

    def _wait_settled(self, timeout: float) -> None:
        """Every child runs and answers /readyz, every broker is ready for the primary, the replica in sync."""

        def settled() -> bool:
            processes = self.cluster.processes()
            if not all(self.cluster.is_ready(name) for name in processes):
                return False
            brokers = [name for name, info in processes.items() if info.get("role") == "broker"]
            with probes.session() as session:
                primary = probes.metadata(session, self.cluster.primary_url)
                replica = probes.metadata(session, self.cluster.replica_url)
                return probes.settled(primary, replica, brokers)

        wait_for(settled, timeout, "the cluster to settle after the fault", interval=0.2)
