"""Defaults of the local cluster supervisor, in one documented place.

Ports, limits and timeouts shared with the services stay in ``myqueue.core.defaults``; these
only concern starting, watching and stopping local processes.
"""

import os

# --- restarting children ------------------------------------------------------------------
RESTART_BACKOFF_INITIAL_S = 0.1  # delay before the first restart of a child that died
RESTART_BACKOFF_MAX_S = 2.0  # the delay doubles per consecutive death up to this cap
STABLE_RUN_S = 10.0  # a child that ran this long before dying starts the backoff afresh
STARTUP_MAX_DEATHS = 5  # a child dying this often before the cluster is ready aborts startup
# Once the cluster is ready, a child dying this many times in a row, each time within STABLE_RUN_S
# of its start, is crash-looping: the supervisor stops the cluster and exits 1 instead of looping.
CRASH_LOOP_MAX_DEATHS = int(os.environ.get("MYQUEUE_CLUSTER_CRASH_LOOP_DEATHS", "8"))

# --- startup and shutdown ------------------------------------------------------------------
STARTUP_TIMEOUT_S = 90.0  # managers ready, brokers added and the replica in sync, or give up
POLL_INTERVAL_S = 0.1  # how often readiness conditions are polled
PROBE_TIMEOUT_S = 2.0  # one readiness/metadata request
SEED_CALL_TIMEOUT_S = 60.0  # one /brokers/add call (the primary waits for the broker itself)
KILL_WAIT_S = 5.0  # after SIGKILL, how long to wait for the process to be reaped
STOP_MARGIN_S = 5.0  # services drain for core SHUTDOWN_GRACE_S, then clean up: SIGKILL only after this more

# --- network namespaces (cluster up --netns, for verify's partition faults) ----------------------
NETNS_PREFIX = "mqp"  # namespaces, links and iptables rule comments: mqp<supervisor pid>...
NETNS_SUBNET_PREFIX = "10.241"  # the bridge takes the first 10.241.N.0/24 not on this host
NETNS_COMMAND_TIMEOUT_S = 10.0  # one ip or iptables command

# --- control API ---------------------------------------------------------------------------
CONTROL_MAX_BODY_BYTES = 4096  # the only body is {"name": ...}
PG_PROXY_MAX_FAULT_S = (
    600.0  # POST /pg-proxy/faults: the longest fault (random or black hole) one call starts
)

# --- private PostgreSQL --------------------------------------------------------------------
PG_DATA_DIR = ".mq-data"  # `cluster up --store postgres` without --dsn keeps its cluster here
PG_START_TIMEOUT_S = 60.0  # pg_ctl start, then pg_isready, must succeed within this
PG_STOP_TIMEOUT_S = 60.0  # pg_ctl stop -m fast
PG_DATABASE = "myqueue"  # the database created for the services
PG_SUPERUSER = "myqueue"  # the superuser created by initdb (it owns the database)
PG_OS_USER = "postgres"  # when running as root, PostgreSQL runs as this system user
PG_MAX_CONNECTIONS = 300  # five services with pools of PG_POOL_MAX each, per cluster, plus tests
