"""psycopg 3 against today's psycopg2 write path, same run, alternating (issue 12, item 5).

    python -m bench.pg_drivers [--dsn DSN] [--rounds 5] [--seconds 1.0] [--synchronous-commit on|off]

One broker's appends, one at a time, of batches of 100-byte records (1, 100 and 1,000 records a
batch), each acknowledged after its commit, into a scratch database created on the server of
``--dsn`` ($MYQUEUE_BENCH_DSN, else $MYQUEUE_TEST_DSN) and dropped at the end. With
``--synchronous-commit on`` (production) each commit waits for its WAL flush; ``off`` sets it off
for that database only, to show the drivers' and the server's CPU cost without the flush. Each
round runs every path on every size in turn (the order rotates per round), so load on the shared
machine falls on all of them alike; the table gives the median over rounds of records/s, µs
per append and this process's CPU µs per append, and each path's ratios to today's (results in
bench/results/pg_drivers-sync-*.json).

Paths:

- ``psycopg2-today``: ``PostgresStorage.append`` as the broker calls it (``Database.run`` and its
  pool; under 8 KiB ``SELECT mq_append`` with a hex-escaped ``bytea``, from 8 KiB binary COPY into
  the ``mq_append_input`` view whose trigger reports the offset by ``RAISE INFO``);
- ``psycopg2-today-seq``: the same for ``append_sequenced`` (the idempotent producer, the default);
- ``psycopg3-binary``: psycopg 3 with ``psycopg_pool.ConnectionPool`` (autocommit, the same libpq
  timeouts), ``SELECT mq_append(%b, %b, %b)`` with binary parameters for every size (no COPY, no
  notice), prepared by psycopg after its fifth use;
- ``psycopg3-binary-seq``: the same for ``mq_append_sequenced``;
- ``psycopg3-copy``: the psycopg 3 pool, batches from 8 KiB by ``COPY mq_append_input ... (FORMAT
  binary)`` with ``Copy.write_row`` and the result from a notice handler (below 8 KiB as
  ``psycopg3-binary``).
"""

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg2
import psycopg2.extensions

from myqueue.broker.storage import postgres as pg
from myqueue.core import framing
from myqueue.db.pool import connection_options

RECORD = b"x" * 100
SIZES = (1, 100, 1000)
# Bounds per measurement, so one round of the largest batches writes tens of MB, not GBs.
MAX_APPENDS = {1: 5000, 100: 2000, 1000: 300}
WARMUP = 20

Append = Callable[[int, bytes, int], int]  # (partition id, batch, count) -> base offset


def scratch_dsn(server_dsn: str, synchronous_commit: str) -> tuple[str, str]:
    name = f"mq_bench_{secrets.token_hex(4)}"
    _admin(server_dsn, f'CREATE DATABASE "{name}"')
    _admin(server_dsn, f'ALTER DATABASE "{name}" SET synchronous_commit = {synchronous_commit}')
    return name, psycopg2.extensions.make_dsn(server_dsn, dbname=name)


def _admin(dsn: str, statement: str) -> None:
    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


class Psycopg2Today:
    """The broker's own storage object: every hardening rule of db/pool.py included."""

    def __init__(self, dsn: str, sequenced: bool):
        self.store = pg.PostgresStorage(dsn, "bench-p2" + ("-seq" if sequenced else ""))
        self.sequenced = sequenced
        self.sequence: dict[str, int] = {}

    def partition(self, name: str) -> tuple[str, str]:
        self.store.host("bench", name)
        return ("bench", name)

    def append(self, where, batch: bytes, count: int) -> int:
        if not self.sequenced:
            return self.store.append(where[0], where[1], batch, count)
        seq = self.sequence.get(where[1], 0)
        base, duplicate = self.store.append_sequenced(where[0], where[1], batch, count, "bench-producer", seq)
        assert not duplicate
        self.sequence[where[1]] = seq + count
        return base

    def close(self) -> None:
        self.store.close()


class Psycopg3:
    """psycopg 3 + psycopg_pool, autocommit, the same libpq timeouts as db/pool.py."""

    def __init__(self, dsn: str, mode: str):
        import psycopg_pool
        from psycopg.types.numeric import Int4, Int8

        self.int4, self.int8 = Int4, Int8
        self.mode = mode  # "binary", "binary-seq" or "copy"
        self.notices: dict[int, list[str]] = {}
        self.sequence: dict[int, int] = {}

        def configure(conn) -> None:
            box: list[str] = []
            self.notices[id(conn)] = box
            conn.add_notice_handler(lambda diag: box.append(diag.message_primary or ""))

        kwargs = dict(connection_options(), autocommit=True)
        self.pool = psycopg_pool.ConnectionPool(
            dsn, min_size=1, max_size=16, kwargs=kwargs, configure=configure, open=True
        )
        self.pool.wait(timeout=10)

    def partition(self, name: str) -> int:
        with self.pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO mq_partitions (topic, partition, owner) VALUES ('bench', %s, 'bench-p3') "
                "ON CONFLICT (topic, partition) DO UPDATE SET owner = EXCLUDED.owner RETURNING id",
                (name,),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def append(self, pid: int, batch: bytes, count: int) -> int:
        with self.pool.connection() as conn:
            if self.mode == "copy" and len(batch) >= pg.COPY_MIN_BYTES:
                box = self.notices[id(conn)]
                del box[:]
                with conn.cursor() as cur:
                    with cur.copy(pg._COPY_APPEND) as copy:
                        copy.set_types(["int8", "text", "int8", "int4", "bytea"])
                        copy.write_row((pid, None, 0, count, batch))
                result = pg._append_result(box)
                assert result is not None and result[0] is not None, box
                return result[0]
            if self.mode == "binary-seq":
                seq = self.sequence.get(pid, 0)
                row = conn.execute(
                    "SELECT base, duplicate FROM mq_append_sequenced(%b, %b, %b, %b, %b)",
                    (self.int8(pid), "bench-producer", self.int8(seq), self.int4(count), batch),
                    binary=True,
                ).fetchone()
                assert row is not None and not row[1]
                self.sequence[pid] = seq + count
                return int(row[0])
            row = conn.execute(
                "SELECT mq_append(%b, %b, %b)", (self.int8(pid), self.int4(count), batch), binary=True
            ).fetchone()
            assert row is not None
            return int(row[0])

    def close(self) -> None:
        self.pool.close()


def measure(append: Callable[[bytes, int], int], size: int, seconds: float) -> tuple[float, float, float]:
    """(records/s, µs per append, this process's CPU µs per append) for one path and size.

    The CPU figure (all of this process's threads: the driver, the pool, the encoding) is the one
    the load of a shared machine disturbs least."""
    batch = framing.encode_batch([RECORD] * size)
    for _ in range(WARMUP):
        append(batch, size)
    n = 0
    cpu = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    while n < MAX_APPENDS[size]:
        append(batch, size)
        n += 1
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    return n * size / elapsed, elapsed / n * 1e6, cpu / n * 1e6


def _without_dsn(args: list[str]) -> list[str]:
    """The arguments as given, the DSN (which may hold a password) replaced by a placeholder."""
    out = []
    for i, arg in enumerate(args):
        if i and args[i - 1] == "--dsn":
            out.append("DSN")
        else:
            out.append("--dsn=DSN" if arg.startswith("--dsn=") else arg)
    return out


def baseline_of(label: str) -> str:
    return "psycopg2-today-seq" if label.endswith("-seq") else "psycopg2-today"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dsn", default=os.environ.get("MYQUEUE_BENCH_DSN") or os.environ.get("MYQUEUE_TEST_DSN")
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="time bound per path, size and round")
    parser.add_argument(
        "--synchronous-commit",
        choices=("on", "off"),
        default="on",
        help="on (production) waits for each commit's WAL flush; off leaves the drivers' and the server's CPU cost",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="default bench/results/pg_drivers-sync-<on|off>.json"
    )
    args = parser.parse_args(argv)
    if args.json is None:
        args.json = Path(__file__).parent / "results" / f"pg_drivers-sync-{args.synchronous_commit}.json"
    if not args.dsn:
        parser.error("give --dsn or set MYQUEUE_BENCH_DSN / MYQUEUE_TEST_DSN")

    import psycopg
    import psycopg_pool

    load_start = os.getloadavg()
    name, dsn = scratch_dsn(args.dsn, args.synchronous_commit)
    paths: dict[str, object] = {}
    try:
        paths = {
            "psycopg2-today": Psycopg2Today(dsn, sequenced=False),
            "psycopg3-binary": Psycopg3(dsn, "binary"),
            "psycopg3-copy": Psycopg3(dsn, "copy"),
            "psycopg2-today-seq": Psycopg2Today(dsn, sequenced=True),
            "psycopg3-binary-seq": Psycopg3(dsn, "binary-seq"),
        }
        paths["psycopg2-today"].store.ready()  # type: ignore[attr-defined]  # migrates the scratch database
        where = {
            (label, size): path.partition(f"{label}-{size}")
            for label, path in paths.items()
            for size in SIZES
        }  # type: ignore[attr-defined]
        samples: dict[tuple[str, int], list[tuple[float, float, float]]] = {key: [] for key in where}
        labels = list(paths)
        for rnd in range(args.rounds):
            order = labels[rnd % len(labels) :] + labels[: rnd % len(labels)]
            for size in SIZES:
                for label in order:
                    path, target = paths[label], where[(label, size)]
                    samples[(label, size)].append(
                        measure(lambda b, c, p=path, t=target: p.append(t, b, c), size, args.seconds)  # type: ignore[attr-defined]
                    )
                _admin(dsn, "TRUNCATE mq_batches")  # keep the scratch database small; offsets go on
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for path in paths.values():
            path.close()  # type: ignore[attr-defined]
        _admin(args.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    rows = []
    for size in SIZES:
        for label in labels:
            rates = [s[0] for s in samples[(label, size)]]
            micros = [s[1] for s in samples[(label, size)]]
            cpu = [s[2] for s in samples[(label, size)]]
            base_cpu = statistics.median(s[2] for s in samples[(baseline_of(label), size)])
            base_rate = statistics.median(s[0] for s in samples[(baseline_of(label), size)])
            rows.append(
                {
                    "path": label,
                    "records_per_batch": size,
                    "records_per_s": round(statistics.median(rates)),
                    "us_per_append": round(statistics.median(micros), 1),
                    "us_per_append_min": round(min(micros), 1),
                    "ratio_to_psycopg2": round(statistics.median(rates) / base_rate, 3),
                    "client_cpu_us_per_append": round(statistics.median(cpu), 1),
                    "client_cpu_ratio_to_psycopg2": round(statistics.median(cpu) / base_cpu, 3),
                }
            )
    print(
        f"{'path':22} {'batch':>6} {'records/s':>11} {'µs/append':>10} {'min µs':>9} {'vs today':>9}"
        f" {'cpu µs':>8} {'cpu vs today':>12}"
    )
    for r in rows:
        print(
            f"{r['path']:22} {r['records_per_batch']:>6} {r['records_per_s']:>11,} {r['us_per_append']:>10,.1f} "
            f"{r['us_per_append_min']:>9,.1f} {r['ratio_to_psycopg2']:>9.3f}"
            f" {r['client_cpu_us_per_append']:>8,.1f} {r['client_cpu_ratio_to_psycopg2']:>12.3f}"
        )
    facts = {
        "command": "python -m bench.pg_drivers "
        + " ".join(_without_dsn(argv if argv is not None else sys.argv[1:])),
        "rounds": args.rounds,
        "synchronous_commit": args.synchronous_commit,
        "load_average_start": load_start,
        "seconds_per_measurement": args.seconds,
        "psycopg2": psycopg2.__version__.split()[0],
        "psycopg": psycopg.__version__,
        "psycopg_pool": psycopg_pool.__version__,
        "psycopg_impl": psycopg.pq.__impl__,
        "load_average_end": os.getloadavg(),
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(facts, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
