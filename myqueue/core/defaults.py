"""Every default port, limit, timeout and batch size, in one documented place.

Services and the client read these as defaults; each can be overridden by a flag or an
environment variable where the component documents it.
"""

import os
from typing import TypeVar

N = TypeVar("N", int, float)


def _env(name: str, default: N) -> N:
    """``default``, or the number in environment variable ``name``, of the default's type (overload limits below)."""
    value = os.environ.get(name)
    return type(default)(value) if value else default


# --- addressing -------------------------------------------------------------------------
PRIMARY_PORT = 5000  # the seed's primary manager port
REPLICA_PORT = 5001  # the seed's read-only manager port
DEFAULT_HOST = "127.0.0.1"

# --- names and counts (validated at every edge) ------------------------------------------
MAX_NAME_LENGTH = 64  # topic, partition and broker names
MAX_GROUP_LENGTH = 128  # consumer group names on the fast path
MAX_PARTITIONS_PER_TOPIC = 1024
MAX_TOPICS = 10_000
MAX_BROKERS = 256
MAX_REBALANCE_BROKERS = 64  # brokers one rebalance request may name
MAX_PRODUCERS = 1_000_000  # registered seed-path producers (ids 0..N-1)
MAX_CONSUMERS = 1_000_000  # registered seed-path consumers (ids 0..N-1)
MAX_ID = 2**31 - 1  # producer/consumer ids on the wire

# --- sizes ----------------------------------------------------------------------------
MAX_MESSAGE_BYTES = 1024 * 1024  # 1 MiB per record (seed path and fast path)
MAX_BATCH_RECORDS = 100_000  # records in one fast-path append
MAX_BATCH_BYTES = 64 * 1024 * 1024  # one fast-path request body
MAX_JSON_BODY_BYTES = 2 * MAX_MESSAGE_BYTES  # seed-path JSON bodies: a message plus envelope
MAX_FETCH_RECORDS = 100_000
# record batch v2 (docs/record-format.md): what one record may carry beside its value
MAX_KEY_BYTES = 32 * 1024  # a key; a longer one is refused (TOO_LARGE)
MAX_HEADERS_PER_RECORD = 64
MAX_HEADER_NAME_BYTES = 256  # a header name's UTF-8 bytes
MAX_TIMESTAMP_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: a later create timestamp is refused
DEFAULT_FETCH_MAX_BYTES = 4 * 1024 * 1024
MAX_FETCH_WAIT_MS = 30_000

# --- timing ---------------------------------------------------------------------------
# manager -> broker request timeout; short so that a hung broker frees the manager's threads soon
BROKER_CALL_TIMEOUT_S = _env("MYQUEUE_BROKER_CALL_TIMEOUT_S", 5.0)
RECONCILE_INTERVAL_S = 1.0  # primary checks broker health and pushes assignments this often
VIEW_LONG_POLL_S = 20.0  # replica <- primary long-poll of the cluster view
VIEW_CONNECT_TIMEOUT_S = 5.0  # replica -> primary: connecting for the long-poll (a dead peer fails fast)
BROKER_READY_TIMEOUT_S = 30.0  # how long /brokers/add waits for a new broker to become ready
KUBERNETES_BROKER_START_TIMEOUT_S = 120.0  # --launcher kubernetes: Broker resource -> ready Pod (image pulls)
SHUTDOWN_GRACE_S = 10.0  # in-flight requests get this long after SIGTERM
# The primary's bound on a configuration write's store work (append, and the re-read of the log
# after an unknown outcome) and on waiting for the write lock; past it the write answers 503 +
# Retry-After and releases the lock. Environment: MYQUEUE_CONFIG_WRITE_TIMEOUT (seconds).
CONFIG_WRITE_TIMEOUT_S = 5.0
RETENTION_INTERVAL_S = _env("MYQUEUE_RETENTION_INTERVAL_S", 1.0)  # broker: retention pass interval
CONSUMER_IDLE_TIMEOUT_S = 20.0  # the seed consumer stopped after 20 s without a message

# --- client fast path -------------------------------------------------------------------
# 0: a partition with no batch in flight sends a record at once; records queued while a batch is in
# flight go together when it returns (batches form under load, like Kafka's linger.ms=0).
PRODUCER_LINGER_MS = 0.0
PRODUCER_BATCH_RECORDS = 10_000
PRODUCER_BATCH_BYTES = 1024 * 1024
CLIENT_TIMEOUT_S = 10.0
CLI_PROGRESS_EVERY_S = float(
    os.environ.get("MYQUEUE_PROGRESS_EVERY_S", "5")
)  # produce/consume progress lines
# An idempotent producer resends a batch (same sequence) until this long after its first try,
# like Kafka's delivery.timeout.ms: long enough to ride out a broker restart or pause.
PRODUCER_DELIVERY_TIMEOUT_S = 60.0
CLIENT_RETRIES = 5
CLIENT_BACKOFF_S = 0.05  # first retry delay; doubles up to CLIENT_BACKOFF_MAX_S
CLIENT_BACKOFF_MAX_S = 2.0
CLIENT_IDLE_POLL_MAX_S = 0.5  # an idle consumer polls again after 0.05 s, doubling up to this
CLIENT_METADATA_MIN_INTERVAL_S = 0.05  # metadata refreshes are spaced at least this far apart
CLIENT_POOL_SIZE = 16  # pooled HTTP connections per host
PRODUCER_MAX_IN_FLIGHT = 4  # batches in flight at once, to different partitions (one per partition)

# --- services ---------------------------------------------------------------------------
SERVICE_THREADS = 16  # WSGI worker threads per service process
# Bounds on what clients can make a service hold (service/server.py). Each service refuses a body
# over its own limit from the Content-Length header (managers MAX_JSON_BODY_BYTES, brokers
# MAX_BATCH_BYTES), after the bearer token and before reading any of it; bodies are read by the
# event loop, so a slow upload holds no thread; all bodies held at once stay under
# SERVICE_BUFFER_BYTES (a request that would go over is answered 503 with Retry-After).
SERVICE_CONNECTION_LIMIT = 256  # open connections per service ($MYQUEUE_CONNECTION_LIMIT)
SERVICE_BUFFER_BYTES = 256 * 1024 * 1024  # request bodies held at once per service ($MYQUEUE_BUFFER_BYTES)
SERVICE_HEADER_BYTES = 64 * 1024  # a request's line and headers (431 over it)
SERVICE_IDLE_S = 120.0  # a kept-alive connection with no request is closed after this
SERVICE_READ_S = 30.0  # a request's head or body that stops arriving for this long: 408
PG_POOL_MIN = 1
PG_POOL_MAX = 16
# PostgreSQL connection timeouts (myqueue.db.pool), each overridden by its MYQUEUE_PG_* variable:
PG_CONNECT_TIMEOUT_S = 5  # MYQUEUE_PG_CONNECT_TIMEOUT: libpq connect_timeout
PG_KEEPALIVES_IDLE_S = 10  # MYQUEUE_PG_KEEPALIVES_IDLE: idle seconds before the first TCP keepalive
PG_KEEPALIVES_INTERVAL_S = 3  # MYQUEUE_PG_KEEPALIVES_INTERVAL: seconds between keepalive probes
PG_KEEPALIVES_COUNT = 3  # MYQUEUE_PG_KEEPALIVES_COUNT: unanswered probes before the connection is dead
PG_TCP_USER_TIMEOUT_MS = 15_000  # MYQUEUE_PG_TCP_USER_TIMEOUT: unacknowledged data before a reset
PG_STATEMENT_TIMEOUT_MS = 15_000  # MYQUEUE_PG_STATEMENT_TIMEOUT: server-side bound on any statement
PG_CALL_TIMEOUT_S = 20.0  # MYQUEUE_PG_CALL_TIMEOUT: client-side bound on waiting for one reply
PG_PING_TIMEOUT_S = 2.0  # MYQUEUE_PG_PING_TIMEOUT: /readyz's ping of the store

# Consumer groups whose name starts with this prefix belong to the managers' seed path.
SEED_GROUP_PREFIX = "myqueue.seed."
# Group membership (issue 14): set by the coordinator and told to members in every heartbeat reply,
# as KIP-848 does (group.consumer.session.timeout.ms 45 s, heartbeat.interval.ms 5 s in Kafka; ours
# are shorter because a member here is cheap to re-add and the tests kill members on purpose).
GROUP_SESSION_TIMEOUT_MS = _env("MYQUEUE_GROUP_SESSION_TIMEOUT_MS", 10_000)
GROUP_HEARTBEAT_INTERVAL_MS = _env("MYQUEUE_GROUP_HEARTBEAT_INTERVAL_MS", 1_000)
MAX_GROUP_MEMBERS = 1_000  # members of one group
# A consumer's auto-commit stores what it read at most this often (and always on a revoke and on
# close), as Kafka's auto.commit.interval.ms (5 s there): one commit per poll cost a group member
# 7-8 % of its CPU in bench/groups.py's catch-up; what the interval adds is at most this much
# re-delivery after a crash.
CLIENT_AUTO_COMMIT_INTERVAL_S = 1.0
CLIENT_PATTERN_REFRESH_S = 5.0  # a consumer subscribed to a topic pattern looks for new matches this often
MAX_GROUPS = 10_000  # groups the coordinator keeps

# --- overload protection: a slow broker or idle waiters must not stall unrelated requests ---
# Each is read from the environment variable named in it when the process starts.
MANAGER_THREADS = _env("MYQUEUE_MANAGER_THREADS", 32)  # WSGI worker threads of each manager
# Per broker, per manager: requests waiting on that broker at once (a seed produce counts while it
# queues for its partition's grouped append); one more waits this long for a slot, then is refused.
BROKER_MAX_CONCURRENT_CALLS = _env("MYQUEUE_BROKER_MAX_CONCURRENT_CALLS", 16)  # half of MANAGER_THREADS
BROKER_SLOT_WAIT_S = _env("MYQUEUE_BROKER_SLOT_WAIT_S", 0.5)
# Circuit breaker: after this many timeouts in a row a broker is not called (refused at once, nothing
# sent) for the cool-down; then one call probes it (as does the primary's health check).
BROKER_BREAKER_TIMEOUTS = _env("MYQUEUE_BROKER_BREAKER_TIMEOUTS", 3)
BROKER_BREAKER_COOLDOWN_S = _env("MYQUEUE_BROKER_BREAKER_COOLDOWN_S", 2.0)
# GET /v1/view?wait=N long-polls held at once on the primary, in all and per client address; beyond
# that a long-poll that would wait is answered 503 + Retry-After (a newer view is still answered).
VIEW_MAX_WAITERS = _env("MYQUEUE_VIEW_MAX_WAITERS", 8)
VIEW_MAX_WAITERS_PER_CLIENT = _env("MYQUEUE_VIEW_MAX_WAITERS_PER_CLIENT", 4)
RETRY_AFTER_S = _env("MYQUEUE_RETRY_AFTER_S", 1)  # Retry-After of the managers' 503 answers
# A memory-mode primary answers a new seed producer id only once the replica holds the view naming
# it (so a restarted primary, recovering from that view, never hands the id out again); how long it
# waits for that. myqueue-manager --replica-confirm-timeout / MYQUEUE_REPLICA_CONFIRM_TIMEOUT_S.
REPLICA_CONFIRM_TIMEOUT_S = 5.0

# --- metrics (docs/metrics.md) --------------------------------------------------------------------
# A broker scrape reads its partitions' offsets and sizes from PostgreSQL in one aggregate query,
# bounded server-side by this statement timeout; a scrape that hits it reports the stats as failed.
METRICS_PG_STATEMENT_TIMEOUT_MS = _env("MYQUEUE_METRICS_PG_TIMEOUT_MS", 2_000)
# Consumer groups with series of their own per broker; the rest are summed under group="_other".
METRICS_MAX_GROUPS = _env("MYQUEUE_METRICS_MAX_GROUPS", 100)
# The primary's consumer-group gauges read each partition's committed and end offsets from its
# broker at scrape time: each call waits at most this long, and past the deadline the rest of the
# partitions are left out of that scrape (a broker down never holds a scrape for long).
METRICS_GROUP_CALL_TIMEOUT_S = 0.5
METRICS_GROUP_DEADLINE_S = 3.0
