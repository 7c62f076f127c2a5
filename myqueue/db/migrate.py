"""The PostgreSQL schema's version and the ordered migrations that reach it.

The schema is package data, ``myqueue/db/migrations/NNNN_<name>.sql``, numbered from 0001 without
gaps; the database records the version it is at in ``mq_schema_version`` (one row). ``migrate``
applies every file above that version in order, each file and its version bump in one
transaction, so a failed migration leaves the database at the version before it. Brokers and
managers of one cluster start at once against one database: every step runs under a
transaction-scoped advisory lock and re-reads the version under it, so each migration is applied
once however many runners race, and a runner that finds nothing to do changes nothing.

A database made before versioning (no ``mq_schema_version``, the objects present) reads as
version 0; ``0001_initial.sql`` is that code's schema written only with ``IF NOT EXISTS`` and
``CREATE OR REPLACE``, so applying it keeps every row and the database is adopted as version 1.
Migrations from 0002 on run exactly once and need no such guards. A database at a version this
code does not know (written by a newer myqueue) is refused with ``SchemaTooNew``: running older
code against a newer schema could corrupt it.

To change the schema, add the next file (e.g. ``0002_records_v2.sql``); never edit an applied one.
Which tables a component uses is its own business: every component applies the whole series.
"""

import logging
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import psycopg2.extensions

from myqueue.db.pool import Database

log = logging.getLogger(__name__)

# The keys the broker's and the managers' stores locked around their schema before versioning, so
# a process of the previous release starting during an upgrade waits for the migration too.
LOCK_KEYS = (0x6D71_6272, 0x6D71_6D67)  # "mqbr", "mqmg"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS mq_schema_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   integer NOT NULL
)
"""


class SchemaTooNew(RuntimeError):
    """The database's schema is newer than any migration this code ships."""


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str


@cache
def migrations() -> tuple[Migration, ...]:
    """The shipped migrations in order; raises if the numbering has a gap or a duplicate."""
    found = []
    for entry in resources.files("myqueue.db").joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    numbers = [m.version for m in found]
    if numbers != list(range(1, len(found) + 1)):
        raise RuntimeError(f"myqueue/db/migrations must be numbered 1, 2, ... without gaps, found {numbers}")
    return tuple(found)


def latest_version() -> int:
    return len(migrations())


def current_version(cur: psycopg2.extensions.cursor) -> int:
    """The version recorded in the database: 0 when it has none (new, or made before versioning)."""
    cur.execute("SELECT to_regclass('mq_schema_version') IS NOT NULL")
    if not cur.fetchone()[0]:
        return 0
    cur.execute("SELECT version FROM mq_schema_version")
    row = cur.fetchone()
    return 0 if row is None else int(row[0])


def migrate(db: Database, known: tuple[Migration, ...] | None = None) -> int:
    """Bring the database to the last of ``known`` (default: the shipped ``migrations()``), one
    transaction per migration; returns that version.

    Safe to call from many processes at once and again at every start. Raises ``SchemaTooNew``
    for a database past the last known version, and whatever a failed migration raised (its
    transaction rolled back, the database left at the version before it)."""
    known = migrations() if known is None else known
    while True:
        applied = db.run(lambda cur: _step(cur, known), idempotent=True)
        if applied is None:
            return len(known)


def _step(cur: psycopg2.extensions.cursor, known: tuple[Migration, ...]) -> Migration | None:
    """Under the lock: apply the next pending migration and record it, or None when up to date.

    A replay after a lost COMMIT is safe: it re-reads the version and finds the step done."""
    for key in LOCK_KEYS:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
    version = current_version(cur)
    if version > len(known):
        raise SchemaTooNew(
            f"the database's schema is version {version}, newer than this myqueue knows "
            f"(up to {len(known)}): run a myqueue release that knows it, or use another database"
        )
    if version == len(known):
        return None
    step = known[version]
    cur.execute(step.sql)
    cur.execute(_VERSION_TABLE)
    cur.execute(
        "INSERT INTO mq_schema_version (version) VALUES (%s) "
        "ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version",
        (step.version,),
    )
    log.info("PostgreSQL schema migrated to version %d (%s)", step.version, step.name)
    return step
