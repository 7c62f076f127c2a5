"""The peer benchmark (issue 6): myqueue against Redis Streams, NATS JetStream, Kafka and raw PostgreSQL.

    python -m bench --quick          # about 2-3 minutes
    python -m bench                  # full mode: 1 M-message catch-up, 20 s latency runs, ...
    python -m bench --systems myqueue,redis --workloads 1,3 --profile /tmp/prof

Starts every system itself on 127.0.0.1, runs the same workloads against each in this one run,
prints a table and the issue's targets next to the measured ratios, and writes
bench/results/latest.json (rows plus machine facts and versions). Every process it starts is
stopped by PID when it ends, also on an exception, Ctrl-C or SIGTERM.

Needs: Debian's redis-server, redis-tools, PostgreSQL server binaries, Java 17 and Maven (the
Kafka jars are fetched once from Maven Central into ~/.cache/myqueue-bench), Go (nats-server is
built once from its module into the same cache), and
``pip install -e '.[bench]' -c constraints.txt``. A system that cannot start gets FAILED rows with
the reason; the others still run.
"""

import argparse
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

from . import procs, profile, report
from .workloads import WORKLOADS, Row, Settings, failed

SYSTEMS = ["myqueue", "redis", "nats", "kafka", "postgres"]
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small counts and short runs (about 2-3 minutes)"
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {SYSTEMS}")
    parser.add_argument(
        "--workloads", default=",".join(map(str, WORKLOADS)), help="comma-separated subset of 1..7"
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("MYQUEUE_BENCH_DSN"),
        help="PostgreSQL for myqueue-pg and raw PostgreSQL (default $MYQUEUE_BENCH_DSN, else a private server)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="py-spy speedscope profiles of myqueue's broker/primary during its workloads",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run everything N times and report each row's median round by msgs/s (a shared machine's "
        "rates swing by a third between runs; the targets then compare medians)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {sorted(unknown)}")
    settings = Settings.make(args.quick, {int(w) for w in args.workloads.split(",") if w})

    signal.signal(signal.SIGTERM, _interrupt)
    facts = report.machine_facts()
    # A --dsn may carry a password: keep it out of the printed command and the JSON.
    shown = " ".join(argv if argv is not None else sys.argv[1:])
    facts["command"] = "python -m bench " + re.sub(r"password=\S+", "password=***", shown)
    versions: dict = {}
    rows: list[Row] = []  # this round's; the rounds' medians after the last
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="mq-peer-bench-"))
    os.chmod(workdir, 0o755)  # the private PostgreSQL runs as the postgres user below it

    def phase(name: str, fn, *fn_args) -> None:
        t0 = time.monotonic()
        print(f"[{t0 - started:6.1f} s] {name} ...", file=sys.stderr, flush=True)
        try:
            got = fn(*fn_args)
        except Exception as e:  # noqa: BLE001 - one system failing must not end the run
            got = [failed(name, min(settings.workloads), e)]
        rows.extend(got)
        print(
            f"[{time.monotonic() - started:6.1f} s] {name}: {len(got)} rows in {time.monotonic() - t0:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    def version_of(name: str, fn, *fn_args) -> None:
        try:
            versions.update(fn(*fn_args))
        except Exception as e:  # noqa: BLE001
            versions[name] = f"unknown ({e})"

    needs_pg = ("postgres" in systems and 5 in settings.workloads) or (
        "myqueue" in systems and bool(settings.workloads & {2, 5, 6})
    )
    round_rows: list[list[Row]] = []
    try:
        dsn = (args.dsn or _private_postgres(workdir)) if needs_pg else None
        for n in range(args.rounds):
            if args.rounds > 1:
                print(f"round {n + 1} of {args.rounds}", file=sys.stderr, flush=True)
            rows = []
            # a directory a round: a server's state (Kafka's formatted log dir) is not reused
            round_dir = workdir / f"round-{n + 1}"
            round_dir.mkdir(mode=0o755)
            _one_round(systems, settings, round_dir, dsn, args.profile, phase, version_of if n == 0 else None)
            round_rows.append(rows)
    except KeyboardInterrupt:
        print("interrupted: stopping everything the bench started", file=sys.stderr, flush=True)
        procs.cleanup(workdir)
        return 130
    procs.cleanup(workdir)

    rows = report.median_rows(round_rows)
    facts["rounds"] = args.rounds
    report.finish(facts, started, procs.warnings)
    facts["versions"] = versions
    results = report.median_targets(round_rows)
    print()
    print(f"{facts['command']}  ({'quick' if settings.quick else 'full'} mode)  {facts['date_utc']}")
    print(
        f"{facts['cpu_count']} x {facts['cpu_model']}, {facts['memory_gib']} GiB, {facts['os']}, Python {facts['python']}; "
        f"load average {facts['loadavg_start'][0]:.1f} at start, {facts['loadavg_end'][0]:.1f} at end; {facts['duration_s']} s"
    )
    print("versions: " + "; ".join(f"{k} {v}" for k, v in versions.items()))
    print()
    print(report.table(rows))
    print()
    print("Durability-matched produce (issue 17), one block a class:")
    print(report.durability_table(rows))
    print()
    print(report.format_targets(results))
    for warning in procs.warnings:
        print(f"warning: {warning}")
    if args.profile and args.profile.is_dir():
        print()
        for path in sorted(args.profile.glob("*.json")):
            try:
                print(profile.summary(path, top=12))
            except (OSError, ValueError, KeyError) as e:
                print(f"{path.name}: unreadable ({e})")
    settings_doc = {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(settings).items()}
    report.write_json(args.out, facts, settings_doc, rows, results)
    print(f"\nwrote {args.out}")
    return 0


def _one_round(systems, settings, workdir, dsn, profile_dir, phase, version_of) -> None:
    """Every chosen system once, in the order of SYSTEMS; versions read when ``version_of`` is given."""

    def version(name: str, fn, *fn_args) -> None:
        if version_of is not None:
            version_of(name, fn, *fn_args)

    if "myqueue" in systems:
        from .peers import myqueue

        version("myqueue", myqueue.version)
        phase("myqueue memory", myqueue.run, settings, workdir, "memory", None, profile_dir)
    if "redis" in systems:
        from .peers import redis

        version("redis", redis.version)
        phase("redis", redis.run, settings, workdir)
    if "nats" in systems:
        from .peers import nats

        version("nats", nats.version)
        phase("nats", nats.run, settings, workdir)
    if "kafka" in systems:
        from .peers import kafka

        version("kafka", kafka.version)
        phase("kafka", kafka.run, settings, workdir)
    if dsn is not None:
        from .peers import postgres

        version("postgresql", postgres.version, dsn)
        if "myqueue" in systems:
            from .peers import myqueue

            phase("myqueue postgres", myqueue.run, settings, workdir, "postgres", dsn, profile_dir)
            phase(
                "myqueue postgres, synchronous_commit off",
                myqueue.run,
                *(settings, workdir, "postgres", dsn, profile_dir, "off"),
            )
        if "postgres" in systems:
            phase("postgres", postgres.run, settings, dsn)


def _private_postgres(workdir: Path) -> str:
    from myqueue.cluster.postgres import PrivatePostgres

    server = PrivatePostgres(workdir / "pg")
    procs.on_exit("private PostgreSQL", server.stop)
    server.start()
    return server.dsn


if __name__ == "__main__":
    raise SystemExit(main())
