"""Raw PostgreSQL through psycopg2: the floor for persistent mode (workload 5).

The same server myqueue's PostgreSQL rows use ($MYQUEUE_BENCH_DSN, else the bench's private
server), default durability (fsync on, synchronous_commit on), one connection:

- ``blob-row``: the same data in myqueue's layout, one row per 1,000-message framed batch (the
  ``mq_batches`` columns, STORAGE EXTERNAL), one INSERT + COMMIT per batch;
- ``copy``: one row per message, COPY of 1,000 rows per COMMIT;
- ``commit-per-msg``: one INSERT + COMMIT per message (what a per-message durable ack costs).
"""

import io

import psycopg2

from myqueue.core import framing

from ..workloads import PAYLOAD, Row, Settings, bounded, failed, throughput

SYSTEM = "postgres"
TABLES = """
DROP TABLE IF EXISTS bench_raw_batches, bench_raw_rows;
CREATE TABLE bench_raw_batches (partition_id bigint NOT NULL, base_offset bigint NOT NULL,
    record_count integer NOT NULL, body bytea NOT NULL, PRIMARY KEY (partition_id, base_offset));
ALTER TABLE bench_raw_batches ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE TABLE bench_raw_rows (partition_id bigint NOT NULL, off bigint NOT NULL, body bytea NOT NULL,
    PRIMARY KEY (partition_id, off));
"""


def version(dsn: str) -> dict:
    with psycopg2.connect(dsn, connect_timeout=10) as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        server = cur.fetchone()[0]
    conn.close()
    return {"postgresql": server, "psycopg2": psycopg2.__version__.split()[0]}


def run(settings: Settings, dsn: str) -> list[Row]:
    if 5 not in settings.workloads:
        return []
    conn = psycopg2.connect(dsn, connect_timeout=10)
    rows = []
    try:
        with conn.cursor() as cur:
            cur.execute(TABLES)
        conn.commit()
        for name, make_step, count, notes in (
            (
                "blob-row",
                _blob_step,
                settings.produce_n,
                f"1 row per {settings.batch}-msg framed batch, INSERT+COMMIT each",
            ),
            ("copy", _copy_step, settings.produce_n, f"COPY {settings.batch} rows (1 per msg) per COMMIT"),
            ("commit-per-msg", _single_step, settings.produce_n, "INSERT+COMMIT per message"),
        ):
            try:
                step = make_step(conn, settings.batch)
                bounded(step, settings.batch * 5, 1.0)  # warm-up
                sent, secs = bounded(step, count, settings.time_limit)
                rows.append(throughput(f"{SYSTEM}/{name}", 5, sent, secs, notes))
            except Exception as e:  # noqa: BLE001
                conn.rollback()
                rows.append(failed(f"{SYSTEM}/{name}", 5, e))
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS bench_raw_batches, bench_raw_rows")
        conn.commit()
    finally:
        conn.close()
    return rows


def _blob_step(conn, batch: int):
    body = framing.encode_batch([PAYLOAD] * batch)
    state = {"offset": 0}

    def step() -> int:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO bench_raw_batches VALUES (1, %s, %s, %s)", (state["offset"], batch, body)
            )
        conn.commit()
        state["offset"] += batch
        return batch

    return step


def _copy_step(conn, batch: int):
    value = "\\\\x" + PAYLOAD.hex()
    state = {"offset": 0}

    def step() -> int:
        base = state["offset"]
        data = io.StringIO("".join(f"1\t{base + i}\t{value}\n" for i in range(batch)))
        with conn.cursor() as cur:
            cur.copy_expert("COPY bench_raw_rows (partition_id, off, body) FROM STDIN", data)
        conn.commit()
        state["offset"] += batch
        return batch

    return step


def _single_step(conn, batch: int):
    state = {"offset": 10**12}  # clear of the COPY rows

    def step() -> int:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO bench_raw_rows VALUES (1, %s, %s)", (state["offset"], PAYLOAD))
        conn.commit()
        state["offset"] += 1
        return 1

    return step
