"""The operator's settings: every default in one place, read once from the environment.

Pure: ``OperatorConfig.from_env(environ)`` takes a mapping, so tests build configs without
touching ``os.environ``. kopf settings derived from it live in ``__main__``/``handlers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from myqueue.core.logs import LOG_FORMATS

GROUP = "myqueue.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
BROKERS = "brokers"
TOPICS = "topics"

# --- defaults ---------------------------------------------------------------------------------
DEFAULT_BROKER_IMAGE = "myqueue/broker:0.1.0"
BROKER_PORT = 8080  # every broker container listens here; the Service exposes the same port
BROKER_UID = 10001  # the image's non-root user
PRIMARY_TIMEOUT_S = 10.0  # one call to the primary manager
REGISTER_TIMEOUT_S = 45.0  # POST /v1/brokers may wait behind a /brokers/add holding the primary's write lock
BROKER_TIMEOUT_S = 3.0  # GET /v1/partitions on a broker, for end offsets
GROUPS_TIMEOUT_S = 3.0  # GET /v1/groups[/<group>] on the primary, for a Topic's status.groups
GROUPS_DEADLINE_S = 5.0  # no group describe is started after this long in one Topic reconcile
RESYNC_S = 10.0  # timers: re-read the primary and refresh status this often
TIMER_EXIT_POLL_S = 1.0  # how often kopf re-checks a timer still running when its resource is deleted
RETRY_DELAY_S = 5.0  # TemporaryError delay: primary unreachable, no ready broker, pod not ready
BLOCKED_DELETE_DELAY_S = 5.0  # re-check a blocked Broker deletion this often
WATCH_SERVER_TIMEOUT_S = 300  # kopf: ask the API server to end each watch after this long ...
WATCH_CLIENT_TIMEOUT_S = 330.0  # ... and give up on a silent watch connection after this long
FINALIZER = "myqueue.io/finalizer"
ANNOTATION_PREFIX = "myqueue.io"
# On a Broker, consent to let it go although it holds partitions: "move-partitions" (unregister it,
# the primary moves them to other brokers) or "release-uninstall" (the chart's pre-delete hook: the
# whole release goes, so it is not unregistered and its partitions stay placed on it; the data stays
# in PostgreSQL and a reinstall of the release finds both).
ON_DELETE_ANNOTATION = "myqueue.io/on-delete"
MOVE_PARTITIONS = "move-partitions"
RELEASE_UNINSTALL = "release-uninstall"
SPEC_HASH_ANNOTATION = "myqueue.io/spec-hash"  # on the Pod: the Broker spec it was rendered from
# On a Broker, a request to the operator: "add-brokers" moves partitions onto it (Strimzi's
# KafkaRebalance mode add-brokers); removed once done, the outcome in status.rebalance.
REBALANCE_ANNOTATION = "myqueue.io/rebalance"
ADD_BROKERS = "add-brokers"
ROLL_LOCK = "*rolling-update*"  # the namespace's lock for a rolling update's turns (no Broker is named so)


class AddressMode(StrEnum):
    """Which address the operator registers a broker under."""

    SERVICE = "service"  # http://NAME.NAMESPACE.svc:8080 — stable across Pod replacements
    POD_IP = "pod-ip"  # http://POD_IP:8080 — no cluster DNS needed (the control-plane tests)


class ConfigError(ValueError):
    """The operator's environment is incomplete or contradictory."""


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator needs to know; see operator/README.md for each variable."""

    primary_url: str
    namespace: str | None  # None: every namespace (MYQUEUE_CLUSTERWIDE=1)
    broker_image: str = DEFAULT_BROKER_IMAGE
    dsn_secret: str | None = None
    primary_token: str | None = None
    token_secret: str | None = None  # a Secret with key "token": broker pods get it as MYQUEUE_TOKEN
    address_mode: AddressMode = AddressMode.SERVICE
    image_pull_policy: str = "IfNotPresent"
    resync_s: float = RESYNC_S
    retry_delay_s: float = RETRY_DELAY_S
    log_format: str = "text"  # MYQUEUE_LOG_FORMAT, passed on to the broker pods

    @classmethod
    def from_env(cls, env: Mapping[str, str], pod_namespace: str | None = None) -> OperatorConfig:
        """Build from MYQUEUE_* variables; ``pod_namespace`` is the in-cluster default namespace."""
        primary = (env.get("MYQUEUE_PRIMARY_URL") or "").rstrip("/")
        if not primary.startswith(("http://", "https://")):
            raise ConfigError("MYQUEUE_PRIMARY_URL must be the primary manager's URL (http://host:port)")
        clusterwide = env.get("MYQUEUE_CLUSTERWIDE", "").lower() in ("1", "true", "yes")
        namespace = env.get("MYQUEUE_NAMESPACE") or pod_namespace
        if clusterwide:
            namespace = None
        elif not namespace:
            raise ConfigError("set MYQUEUE_NAMESPACE (the namespace to watch) or MYQUEUE_CLUSTERWIDE=1")
        try:
            mode = AddressMode(env.get("MYQUEUE_ADDRESS_MODE", AddressMode.SERVICE.value))
        except ValueError as e:
            raise ConfigError("MYQUEUE_ADDRESS_MODE must be 'service' or 'pod-ip'") from e
        log_format = (env.get("MYQUEUE_LOG_FORMAT") or "text").lower()
        if log_format not in LOG_FORMATS:
            raise ConfigError(f"MYQUEUE_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
        return cls(
            primary_url=primary,
            namespace=namespace,
            broker_image=env.get("MYQUEUE_BROKER_IMAGE") or DEFAULT_BROKER_IMAGE,
            dsn_secret=env.get("MYQUEUE_DSN_SECRET") or None,
            primary_token=env.get("MYQUEUE_TOKEN") or None,
            token_secret=env.get("MYQUEUE_TOKEN_SECRET") or None,
            address_mode=mode,
            image_pull_policy=env.get("MYQUEUE_BROKER_PULL_POLICY") or "IfNotPresent",
            resync_s=_positive(env, "MYQUEUE_OPERATOR_RESYNC_S", RESYNC_S),
            retry_delay_s=_positive(env, "MYQUEUE_OPERATOR_RETRY_S", RETRY_DELAY_S),
            log_format=log_format,
        )


def _positive(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as e:
        raise ConfigError(f"{key} must be a number of seconds") from e
    if value <= 0:
        raise ConfigError(f"{key} must be positive")
    return value
