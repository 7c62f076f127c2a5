"""Pure decisions of the supervisor: what to run, with which environment, and when to retry.

Kept apart from process handling so that argv, environment, backoff and the ready line can be
tested as plain functions. Services get the DSN through MYQUEUE_DSN, never on the command line,
where any local user could read it with ``ps``.
"""

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from myqueue.core.names import validate_broker_name

from . import defaults

DSN_ENV = "MYQUEUE_DSN"
LAUNCHER_TOKEN_ENV = "MYQUEUE_LAUNCHER_TOKEN"  # noqa: S105 - a variable name, not a secret


class Role(StrEnum):
    """What a supervised process is."""

    PRIMARY = "primary"
    REPLICA = "replica"
    BROKER = "broker"


class Store(StrEnum):
    """Where the services keep their state."""

    MEMORY = "memory"
    POSTGRES = "postgres"


@dataclass(frozen=True)
class ChildSpec:
    """Everything needed to (re)start one child process identically."""

    name: str
    role: Role
    host: str
    port: int
    argv: tuple[str, ...]
    env: Mapping[str, str | None] = field(default_factory=dict)  # on top of ours; None removes one

    @property
    def address(self) -> str:
        return url(self.host, self.port)


def url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def broker_spec(name: str, host: str, port: int, store: Store, dsn: str | None) -> ChildSpec:
    """A broker process; the name is validated here, before it reaches an argv."""
    name = validate_broker_name(name)
    argv = (
        sys.executable,
        "-m",
        "myqueue.broker",
        "--name",
        name,
        "--host",
        host,
        "--port",
        str(port),
        "--store",
        store.value,
    )
    return ChildSpec(name, Role.BROKER, host, port, argv, _env(store, dsn, token=None))


def manager_spec(
    role: Role,
    host: str,
    port: int,
    store: Store,
    dsn: str | None,
    *,
    primary_url: str | None = None,
    launcher_url: str | None = None,
    launcher_token: str | None = None,
) -> ChildSpec:
    """The primary (which launches brokers through us) or the replica (which follows the primary)."""
    argv = [
        sys.executable,
        "-m",
        "myqueue.manager",
        "--role",
        role.value,
        "--host",
        host,
        "--port",
        str(port),
        "--store",
        store.value,
    ]
    if role is Role.PRIMARY:
        if launcher_url is None or launcher_token is None:
            raise ValueError("the primary needs the launcher's URL and token")
        argv += ["--launcher", "local", "--launcher-url", launcher_url]
    elif role is Role.REPLICA:
        if primary_url is None:
            raise ValueError("the replica needs the primary's URL")
        argv += ["--primary-url", primary_url]
        launcher_token = None
    else:
        raise ValueError(f"{role} is not a manager role")
    return ChildSpec(role.value, role, host, port, tuple(argv), _env(store, dsn, launcher_token))


def _env(store: Store, dsn: str | None, token: str | None) -> dict[str, str | None]:
    """The variables a child gets on top of ours; None removes one it must not inherit."""
    if store is Store.POSTGRES and not dsn:
        raise ValueError("postgres store needs a DSN")
    return {
        DSN_ENV: dsn if store is Store.POSTGRES else None,
        LAUNCHER_TOKEN_ENV: token,
    }


def restart_delay(consecutive_deaths: int) -> float:
    """Seconds to wait before restarting a child that died ``consecutive_deaths`` times in a row.

    0.1, 0.2, 0.4, ... doubling up to RESTART_BACKOFF_MAX_S; 0 deaths means no wait.
    """
    if consecutive_deaths <= 0:
        return 0.0
    exponent = min(consecutive_deaths - 1, 32)  # bounded: 2**32 * 0.1 is far past any cap
    return min(defaults.RESTART_BACKOFF_INITIAL_S * 2**exponent, defaults.RESTART_BACKOFF_MAX_S)


def ready_line(primary_url: str, replica_url: str, brokers: int, store: Store) -> str:
    """The one line printed on stdout when the cluster is ready (scripts wait for it)."""
    return f"myqueue cluster ready: primary={primary_url} replica={replica_url} brokers={brokers} store={store.value}"
