"""One verify run end to end: (a local cluster,) the workload, the faults, the check.

``run`` is what ``myqueue verify`` calls and what a program may call: against a cluster at
``broker``, or with ``local=True`` against a ``myqueue cluster up`` it starts on free loopback
ports (``myqueue.cluster.local``) and stops afterwards — the only case where ``faults`` may be
injected. Each phase reports one line through ``report``; the result is the ``Verdict``.
"""

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from myqueue.cluster.local import LocalCluster, LocalClusterError
from myqueue.cluster.netns import NetnsError, check_available

from .faults import PARTITIONS, PAUSE_MARGIN_S, Fault, FaultDriver, parse_faults, schedule
from .history import Verdict, check
from .progress import Progress
from .workload import Report, Workload, WorkloadConfig

STORES = ("memory", "postgres")


@dataclass(frozen=True)
class LocalConfig:
    """The local cluster a run starts (``--local``)."""

    store: str = "memory"
    brokers: int = 3
    dsn: str | None = None  # an existing PostgreSQL for the postgres store
    data_dir: Path | None = None  # else a private PostgreSQL here (default: a temporary directory)

    def __post_init__(self) -> None:
        if self.store not in STORES:
            raise ValueError(f"store must be one of {', '.join(STORES)}, not {self.store!r}")
        if not 1 <= self.brokers <= 16:
            raise ValueError("a local cluster for verify has 1 to 16 brokers")
        if (self.dsn or self.data_dir) and self.store != "postgres":
            raise ValueError("--dsn and --data-dir need --store postgres")
        if self.dsn and self.data_dir:
            raise ValueError("give --dsn or --data-dir, not both")


def run(
    *,
    local: bool = False,
    store: str = "memory",
    brokers: int = 3,
    dsn: str | None = None,
    data_dir: str | Path | None = None,
    faults: str | Sequence[str] | None = None,
    strict_writes: bool = False,
    strict_delivery: bool = False,
    report: Report | None = None,
    **workload: object,
) -> Verdict:
    """Run a bounded workload, check its history and return the verdict.

    ``workload`` takes ``WorkloadConfig``'s fields (``broker``, ``messages``, ``producers``, ...);
    ``broker`` and ``replica_port`` are ignored with ``local``. Raises ValueError for bad options
    (before touching any cluster), LocalClusterError when the local cluster cannot start, and the
    client's MyQueueError when the cluster cannot be reached for setup.
    """
    report = report or (lambda line: None)
    chosen = parse_faults(faults)
    known = {f.name for f in fields(WorkloadConfig)}
    unknown = sorted(set(workload) - known)
    if unknown:
        raise ValueError(f"unknown option(s): {', '.join(unknown)}")
    config = WorkloadConfig(**workload)  # type: ignore[arg-type]
    if not local:
        if chosen:
            raise ValueError(
                "--faults needs --local: verify injects faults only into a cluster it runs itself"
            )
        if dsn or data_dir or store != "memory":
            raise ValueError("--store, --dsn and --data-dir describe a local cluster: add --local")
        return _check_run(config, report, strict_writes, strict_delivery)
    if config.listener is not None:
        raise ValueError("--listener names the brokers' address outside their cluster: not with --local")
    local_config = LocalConfig(store, brokers, dsn, Path(data_dir) if data_dir else None)
    if Fault.RESTART_POSTGRES in chosen and (store != "postgres" or dsn):
        raise ValueError(
            "restart-postgres needs --store postgres without --dsn (a PostgreSQL verify runs itself)"
        )
    if Fault.KILL_MEMBER in chosen and config.group_consumers < 2:
        raise ValueError("kill-member needs --group-consumers 2 or more")
    if Fault.LOSE_PG_REPLIES in chosen and store != "postgres":
        raise ValueError("lose-pg-replies needs --store postgres")
    if set(chosen) & set(PARTITIONS):
        if dsn or (Fault.PARTITION_POSTGRES in chosen and store != "postgres"):
            raise ValueError(
                "partition faults need a PostgreSQL verify runs itself (no --dsn; "
                "partition-postgres: --store postgres)"
            )
        try:
            check_available()
        except NetnsError as error:
            raise ValueError(str(error)) from None
    return _run_local(config, local_config, chosen, report, strict_writes, strict_delivery)


def _check_run(
    config: WorkloadConfig,
    report: Report,
    strict_writes: bool,
    strict_delivery: bool,
    driver: FaultDriver | None = None,
    gates: list[int] | None = None,
) -> Verdict:
    workload = Workload(config, report, Progress(gates))
    history = workload.run(driver.run if driver else None)
    verdict = check(history, strict_writes=strict_writes, strict_delivery=strict_delivery)
    if not config.keep_topics:
        workload.delete_topics()
    if driver is not None and driver.problems:
        verdict = replace(verdict, problems=verdict.problems + tuple(driver.problems))
    return verdict


def _run_local(
    config: WorkloadConfig,
    local: LocalConfig,
    faults: tuple[Fault, ...],
    report: Report,
    strict_writes: bool,
    strict_delivery: bool,
) -> Verdict:
    workdir = Path(tempfile.mkdtemp(prefix="mq-verify-"))
    temporary_data = None
    data_dir = local.data_dir
    if local.store == "postgres" and not local.dsn and data_dir is None:
        # Directly under /tmp: as root the server runs as the postgres user, who must reach it.
        temporary_data = data_dir = Path(tempfile.mkdtemp(prefix="mq-verify-pg-"))
    cluster = LocalCluster(
        workdir,
        store=local.store,
        brokers=local.brokers,
        dsn=local.dsn,
        data_dir=data_dir,
        netns=bool(set(faults) & set(PARTITIONS)),
        pg_proxy=Fault.LOSE_PG_REPLIES in faults,
    )
    try:
        cluster.start()
        report(f"cluster: {cluster.ready_line}")
        config = replace(config, broker=cluster.primary_address, replica_port=cluster.replica_port)
        driver = gates = None
        if faults:
            triggers, gates = schedule(config.messages, len(faults))
            driver = FaultDriver(cluster, faults, triggers, config.client_timeout + PAUSE_MARGIN_S, report)
        verdict = _check_run(config, report, strict_writes, strict_delivery, driver, gates)
    finally:
        try:
            cluster.stop()
        except LocalClusterError as error:
            report(f"cluster: did not stop cleanly: {error}")
        shutil.rmtree(workdir, ignore_errors=True)
        if temporary_data is not None:
            shutil.rmtree(temporary_data, ignore_errors=True)
    return verdict
