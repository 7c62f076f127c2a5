"""The local cluster supervisor: one foreground process that runs a whole myqueue cluster.

It starts (a private PostgreSQL if asked, then) its control API, the primary and replica
managers, and asks the primary to add the brokers through the seed API, so that brokers are
started the way they are in production: by the primary, through its launcher (here, us). It
restarts any child that dies, and on SIGINT/SIGTERM stops brokers, replica, primary and the
private PostgreSQL, in that order. What the services do is theirs; this module only orders
their lives.
"""

import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any, TextIO, TypeVar

from psycopg2.extensions import make_dsn, parse_dsn

from myqueue.core import defaults as core_defaults
from myqueue.core.names import validate_broker_name
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.core.view import ClusterView

from . import defaults, probes
from .child import ManagedChild
from .commands import ChildSpec, Role, Store, broker_spec, manager_spec, ready_line, url
from .control import ControlServer
from .lifeline import Watchdog
from .netns import NetnsError, Network, check_available, remove_stale
from .pgproxy import PgProxy
from .ports import free_port, port_in_use
from .postgres import PostgresError, PrivatePostgres, server_env
from .statefile import remove_state, write_state

log = logging.getLogger(__name__)

T = TypeVar("T")
MANAGERS = "managers"  # the primary and replica share a namespace: the seed client finds both on one host


class SupervisorError(RuntimeError):
    """The cluster could not be brought up."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived while the cluster was starting."""


@dataclass(frozen=True)
class ClusterConfig:
    """What ``myqueue cluster up`` asked for; the defaults are the CLI's."""

    brokers: int = 3
    store: Store = Store.MEMORY
    dsn: str | None = None  # an existing PostgreSQL; without it (postgres store) a private one in data_dir
    data_dir: Path = Path(defaults.PG_DATA_DIR)
    host: str = core_defaults.DEFAULT_HOST
    primary_port: int = core_defaults.PRIMARY_PORT
    replica_port: int = core_defaults.REPLICA_PORT
    state_file: Path | None = None
    log_dir: Path | None = None
    grace_s: float = core_defaults.SHUTDOWN_GRACE_S + defaults.STOP_MARGIN_S  # SIGTERM to SIGKILL
    netns: bool = False  # children in network namespaces (root), so partitions can be injected (netns.py)
    pg_proxy: bool = False  # services reach PostgreSQL through a fault-injecting proxy (verify/pgproxy.py)

    def __post_init__(self) -> None:
        if not 0 <= self.brokers <= core_defaults.MAX_BROKERS:
            raise ValueError(f"brokers must be between 0 and {core_defaults.MAX_BROKERS}")
        if self.dsn and self.store is not Store.POSTGRES:
            raise ValueError("a DSN only makes sense with the postgres store")
        if self.netns and self.dsn:
            raise ValueError(
                "--netns runs its own PostgreSQL: the namespaces cannot reach another one; drop --dsn"
            )
        if self.pg_proxy and self.store is not Store.POSTGRES:
            raise ValueError("--pg-proxy needs the postgres store")


class Supervisor:
    """Runs one local cluster; also the ``ControlledCluster`` behind the control API."""

    def __init__(self, config: ClusterConfig, out: TextIO = sys.stdout):
        self.config = config
        self._out = out
        self._lock = threading.Lock()  # guards the broker tables and _shutting_down
        self._stop_requested = threading.Event()
        self._failure: str | None = None  # why the supervisor stops on its own (a crash-looping child)
        self._starting = False
        self._shutting_down = False
        self._wrote_state = False  # the state file is ours to remove only once this run wrote it
        self._session = probes.session()
        self._postgres: PrivatePostgres | None = None
        self._postgres_watchdog: Watchdog | None = None  # stops the private PostgreSQL if we are killed
        self._postgres_lock = threading.Lock()  # one start/stop of the private PostgreSQL at a time
        self._dsn = config.dsn
        self._pg_proxy: PgProxy | None = None  # with --pg-proxy: between every service and PostgreSQL
        self._control: ControlServer | None = None
        self._primary: ManagedChild | None = None
        self._replica: ManagedChild | None = None
        self._brokers: dict[str, ManagedChild] = {}
        self._broker_ports: dict[str, int] = {}  # kept after a broker stops: a re-add reuses its port
        self._network: Network | None = None  # with --netns: the bridge and the children's namespaces
        self._host = config.host  # where the host's side listens (the bridge's address with --netns)

    # --- foreground life --------------------------------------------------------------------
    def run(self) -> int:
        """Start, serve until SIGINT/SIGTERM, stop everything; 0 unless startup failed."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            while not self._stop_requested.wait(1.0):
                pass
            if self._failure is not None:
                log.error("stopping the cluster: %s", self._failure)
                return 1
            return 0
        except Interrupted:
            log.info("interrupted during startup")
            return 0
        except (SupervisorError, PostgresError, NetnsError, probes.ProbeError, OSError) as error:
            log.error("cluster startup failed: %s", error)
            return 1
        except Exception:
            log.exception("cluster startup failed")
            return 1
        finally:
            self.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s; stopping the cluster", signal.Signals(signum).name)
        self._stop_requested.set()
        if self._starting:
            raise Interrupted

    def start(self) -> None:
        """Bring the cluster up, write the state file and print the ready line."""
        self._starting = True
        try:
            self._start()
        finally:
            self._starting = False

    def _start(self) -> None:
        config = self.config
        if config.log_dir is not None:
            config.log_dir.mkdir(parents=True, exist_ok=True)
        self._check_ports_free()
        if config.netns:
            check_available()
            remove_stale()
            self._network = Network()
            self._network.create()
            self._host = self._network.host_address
        if config.store is Store.POSTGRES and not self._dsn:
            allow = f"{self._network.subnet}.0/24" if self._network is not None else None
            self._postgres = PrivatePostgres(config.data_dir, host=self._host, allow=allow)
            # Armed first: if we are SIGKILLed from here on, the watchdog stops the server.
            self._postgres_watchdog = Watchdog(self._postgres.stop_argv(), env=server_env())
            self._postgres.start()
            self._dsn = self._postgres.dsn
        if config.pg_proxy:
            self._start_pg_proxy()
        token = secrets.token_urlsafe(32)
        self._control = ControlServer(self, token, self._host)
        self._control.start()
        primary_url, replica_url = self._start_managers(self._control.url, token)
        deadline = time.monotonic() + defaults.STARTUP_TIMEOUT_S
        self._wait_for(
            "the managers to answer /readyz",
            lambda: self._answers_ready(self._primary) and self._answers_ready(self._replica),
            deadline,
        )
        expected = [f"broker{i}" for i in range(config.brokers)]
        listed = probes.listed_brokers(self._session, primary_url)
        for name in expected:
            if name not in listed:
                log.info("adding %s through %s/brokers/add", name, primary_url)
                probes.add_broker(self._session, primary_url, name)

        def settled_view() -> ClusterView | None:
            view = probes.metadata(self._session, primary_url)
            return (
                view if probes.settled(view, probes.metadata(self._session, replica_url), expected) else None
            )

        view = self._wait_for("every broker ready and the replica in sync", settled_view, deadline)
        if config.state_file is not None:
            self._wrote_state = True
            write_state(
                config.state_file,
                {
                    "control_url": self._control.url,
                    "token": token,
                    "supervisor_pid": os.getpid(),
                    "primary": primary_url,
                    "replica": replica_url,
                },
            )
        self._out.write(ready_line(primary_url, replica_url, len(view.brokers), config.store) + "\n")
        self._out.flush()

    def _start_pg_proxy(self) -> None:
        """Put a PgProxy in front of the store's host:port and hand the services its address instead."""
        if self._dsn is None:
            raise RuntimeError("a PgProxy needs the PostgreSQL store's DSN")
        params = parse_dsn(self._dsn)
        upstream = (params.get("host") or core_defaults.DEFAULT_HOST, int(params.get("port") or 5432))
        self._pg_proxy = PgProxy(*upstream, listen_host=self._host).start()
        self._dsn = make_dsn(**{**params, "host": self._pg_proxy.host, "port": str(self._pg_proxy.port)})
        log.info(
            "PostgreSQL proxy on %s:%s in front of %s:%s", self._pg_proxy.host, self._pg_proxy.port, *upstream
        )

    def _start_managers(self, launcher_url: str, token: str) -> tuple[str, str]:
        """Start the primary (which launches brokers through us) and the replica; their URLs."""
        config = self.config
        host = self._network.add(MANAGERS) if self._network is not None else config.host
        primary_url = url(host, config.primary_port)
        self._primary = ManagedChild(
            self._placed(
                MANAGERS,
                manager_spec(
                    Role.PRIMARY,
                    host,
                    config.primary_port,
                    config.store,
                    self._dsn,
                    launcher_url=launcher_url,
                    launcher_token=token,
                ),
            ),
            config.log_dir,
            on_restart=self._after_primary_restart,
            **self._crash_loop_limit(),
        )
        self._replica = ManagedChild(
            self._placed(
                MANAGERS,
                manager_spec(
                    Role.REPLICA, host, config.replica_port, config.store, self._dsn, primary_url=primary_url
                ),
            ),
            config.log_dir,
            **self._crash_loop_limit(),
        )
        self._primary.start()
        self._replica.start()
        return primary_url, self._replica.spec.address

    def _placed(self, group: str, spec: ChildSpec) -> ChildSpec:
        """``spec`` run inside ``group``'s network namespace with --netns (``ip netns exec`` keeps the PID)."""
        if self._network is None:
            return spec
        return replace(spec, argv=(*self._network.exec_prefix(group), *spec.argv))

    def _check_ports_free(self) -> None:
        """Fail fast if the managers' ports are taken (another cluster?): otherwise our probes
        would reach the process there and take it for ours."""
        config = self.config
        for role, port in ((Role.PRIMARY, config.primary_port), (Role.REPLICA, config.replica_port)):
            if port_in_use(config.host, port):
                raise SupervisorError(
                    f"port in use: {config.host}:{port}, the {role.value}'s port, already has a listener "
                    f"(another cluster?); stop it or choose another port with --{role.value}-port"
                )

    def _answers_ready(self, child: ManagedChild | None) -> bool:
        """``child`` itself listens on its port (not a stranger who took it) and answers /readyz."""
        pid = child.pid if child is not None else None
        if child is None or pid is None or probes.listens_on(pid, child.spec.port) is False:
            return False
        return probes.is_ready(self._session, child.spec.address)

    def _child_gave_up(self, child: ManagedChild) -> None:
        """A child is crash-looping: stop the whole cluster with a clear reason and exit 1."""
        self._failure = (
            f"{child.name} keeps crashing: it died {defaults.CRASH_LOOP_MAX_DEATHS} times in a row, each "
            f"within {defaults.STABLE_RUN_S:.0f} s of its start (last exit code {child.last_exit}); see its log"
        )
        self._stop_requested.set()

    def _wait_for(self, what: str, condition: Callable[[], T | None], deadline: float) -> T:
        """Poll ``condition`` until it returns something truthy, and return that; fail early if
        a child keeps dying."""
        while not (result := condition()):
            for child in self._children():
                if child.deaths >= defaults.STARTUP_MAX_DEATHS:
                    raise SupervisorError(
                        f"{child.name} died {child.deaths} times while waiting for {what} "
                        f"(last exit code {child.last_exit}); see its log"
                    )
            if time.monotonic() > deadline:
                raise SupervisorError(
                    f"timed out after {defaults.STARTUP_TIMEOUT_S:.0f} s waiting for {what}; "
                    f"processes: {self.processes()}"
                )
            if self._stop_requested.wait(defaults.POLL_INTERVAL_S):
                if self._failure is not None:
                    raise SupervisorError(self._failure)
                raise Interrupted
        return result

    def shutdown(self) -> None:
        """Stop brokers (together), then the replica, then the primary, then PostgreSQL."""
        with self._lock:
            self._shutting_down = True
            brokers = list(self._brokers.values())
        stoppers = [threading.Thread(target=child.stop, args=(self.config.grace_s,)) for child in brokers]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        for manager in (self._replica, self._primary):
            if manager is not None:
                manager.stop(self.config.grace_s)
        if self._control is not None:
            self._control.stop()
        if self._pg_proxy is not None:
            self._pg_proxy.stop()
        if self._postgres is not None:
            try:
                with self._postgres_lock:
                    self._postgres.stop()
            except Exception as error:
                log.error("could not stop the private PostgreSQL: %s", error)
        if self._network is not None:
            try:
                self._network.teardown()
            except Exception as error:
                log.error("could not remove the network namespaces: %s", error)
        if self._postgres_watchdog is not None:
            self._postgres_watchdog.disarm()
        if self._wrote_state and self.config.state_file is not None:
            remove_state(self.config.state_file)  # never another cluster's: only the file this run wrote
        self._session.close()
        log.info("cluster stopped")

    def _crash_loop_limit(self) -> dict[str, Any]:
        return {"max_consecutive_deaths": defaults.CRASH_LOOP_MAX_DEATHS, "on_give_up": self._child_gave_up}

    def _children(self) -> list[ManagedChild]:
        with self._lock:
            brokers = list(self._brokers.values())
        return [child for child in (self._primary, self._replica) if child is not None] + brokers

    # --- the ControlledCluster behind the control API ----------------------------------------------
    def processes(self) -> dict[str, dict[str, object]]:
        return {child.name: child.status() for child in self._children()}

    def start_broker(self, name: object) -> dict[str, str]:
        """Start broker ``name`` (idempotent: a running one's address is returned)."""
        valid = validate_broker_name(name)
        with self._lock:
            if self._shutting_down:
                raise Refusal(Reason.UNAVAILABLE, "the local cluster is shutting down")
            child = self._brokers.get(valid)
            if child is None:
                if len(self._brokers) >= core_defaults.MAX_BROKERS:
                    raise Refusal(Reason.LIMIT_REACHED, f"at most {core_defaults.MAX_BROKERS} brokers")
                port = self._broker_ports.get(valid) or self._unused_port()
                self._broker_ports[valid] = port
                host = self._broker_host(valid)
                spec = self._placed(valid, broker_spec(valid, host, port, self.config.store, self._dsn))
                child = ManagedChild(spec, self.config.log_dir, **self._crash_loop_limit())
                child.start()
                self._brokers[valid] = child
                log.info("started %s on %s (pid %s)", valid, spec.address, child.pid)
        return {"name": valid, "address": child.spec.address}

    def _broker_host(self, name: str) -> str:
        """Where broker ``name`` listens: its own namespace's address with --netns."""
        if self._network is None:
            return self.config.host
        try:
            return self._network.add(name)
        except NetnsError as error:
            raise Refusal(Reason.UNAVAILABLE, str(error)) from error

    def stop_broker(self, name: str) -> None:
        with self._lock:
            child = self._brokers.pop(name, None)
        if child is None:
            raise Refusal(Reason.BROKER_NOT_FOUND, f"no broker {name!r} runs here")
        child.stop(self.config.grace_s)
        log.info("stopped %s", name)

    def stop_postgres(self) -> None:
        """Stop the private PostgreSQL (fault injection: the services stay up and must cope)."""
        with self._postgres_lock:
            postgres = self._owned_postgres()
            log.info("stopping the private PostgreSQL on request")
            _as_refusal(postgres.stop)

    def start_postgres(self) -> None:
        """Start the private PostgreSQL again (a no-op when it runs) and wait until it is ready."""
        with self._postgres_lock:
            postgres = self._owned_postgres()
            log.info("starting the private PostgreSQL on request")
            _as_refusal(postgres.start)

    def cut_partition(self, target: str) -> None:
        """Cut ``target``'s traffic (a broker, ``primary``: the managers' namespace, ``postgres``)."""
        self._partition(target, cut=True)

    def heal_partition(self, target: str) -> None:
        self._partition(target, cut=False)

    def _partition(self, target: str, cut: bool) -> None:
        network = self._network
        if network is None:
            raise Refusal(Reason.NOT_FOUND, "this cluster runs no network namespaces (start it with --netns)")
        try:
            if target == "postgres":
                postgres = self._owned_postgres()
                (network.cut_host_port if cut else network.heal_host_port)(postgres.port)
            else:
                group = MANAGERS if target == Role.PRIMARY.value else target
                if group not in network.groups():
                    raise Refusal(
                        Reason.NOT_FOUND, f"no namespace for {target!r}; choose primary, postgres or a broker"
                    )
                (network.cut if cut else network.heal)(group)
        except NetnsError as error:
            raise Refusal(Reason.UNAVAILABLE, str(error)) from error
        log.info("%s the traffic of %s", "cut" if cut else "restored", target)

    def pg_proxy_faults(self, body: dict[str, object]) -> dict[str, object]:
        """Start the proxy's faults: ``{"probability": p, "seconds": s}`` random lost replies and resets
        for s seconds, and/or ``{"black_hole_s": b}`` forwarding nothing for b seconds."""
        proxy = self._owned_pg_proxy()
        probability = _number(body, "probability", 0.0, 1.0)
        seconds = _number(body, "seconds", 0.0, defaults.PG_PROXY_MAX_FAULT_S)
        black_hole_s = _number(body, "black_hole_s", 0.0, defaults.PG_PROXY_MAX_FAULT_S)
        if probability and seconds:
            proxy.random_faults(probability, seconds)
        if black_hole_s:
            proxy.black_hole(black_hole_s)
        log.info(
            "PostgreSQL proxy faults: p=%s for %s s, black hole %s s", probability, seconds, black_hole_s
        )
        return self.pg_proxy_counters()

    def pg_proxy_counters(self) -> dict[str, object]:
        return asdict(self._owned_pg_proxy().counters)

    def _owned_pg_proxy(self) -> PgProxy:
        if self._pg_proxy is None:
            raise Refusal(
                Reason.NOT_FOUND, "this cluster runs no PostgreSQL proxy (start it with --pg-proxy)"
            )
        return self._pg_proxy

    def _owned_postgres(self) -> PrivatePostgres:
        with self._lock:
            if self._shutting_down:
                raise Refusal(Reason.UNAVAILABLE, "the local cluster is shutting down")
        if self._postgres is None:
            raise Refusal(Reason.NOT_FOUND, "this cluster runs no private PostgreSQL (memory store or --dsn)")
        return self._postgres

    def _unused_port(self) -> int:
        """A free port no child of ours was given (callers hold ``_lock``)."""
        taken = {self.config.primary_port, self.config.replica_port, *self._broker_ports.values()}
        for _ in range(100):
            port = free_port(self.config.host)
            if port not in taken:
                return port
        raise Refusal(Reason.UNAVAILABLE, "no free port found")

    # --- a restarted primary ------------------------------------------------------------------
    def _after_primary_restart(self) -> None:
        threading.Thread(target=self._reregister_brokers, name="reregister-brokers", daemon=True).start()

    def _reregister_brokers(self) -> None:
        """Tell a restarted primary about the brokers that kept running (memory mode forgets them)."""
        if self._primary is None:
            raise RuntimeError("re-registering brokers before the primary was started")
        primary_url = self._primary.spec.address
        deadline = time.monotonic() + defaults.STARTUP_TIMEOUT_S
        with probes.session() as session:  # sessions are not shared across threads
            while not probes.is_ready(session, primary_url):
                if time.monotonic() > deadline or self._stop_requested.wait(defaults.POLL_INTERVAL_S):
                    return
            with self._lock:
                brokers = [(name, child.spec.address) for name, child in self._brokers.items()]
            for name, address in brokers:
                try:
                    probes.register_broker(session, primary_url, name, address)
                except probes.ProbeError as error:
                    log.warning("could not re-register %s with the restarted primary: %s", name, error)


def _number(body: dict[str, object], key: str, low: float, high: float) -> float:
    """``body[key]`` (0 when absent) as a number within [low, high], else a 400 refusal."""
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise Refusal(Reason.INVALID_REQUEST, f"{key} must be a number from {low:g} to {high:g}")
    return float(value)


def _as_refusal(operation: Callable[[], None]) -> None:
    """Run a PostgreSQL operation; its failure becomes a 503 the control API can answer."""
    try:
        operation()
    except PostgresError as error:
        raise Refusal(Reason.UNAVAILABLE, str(error)) from error
