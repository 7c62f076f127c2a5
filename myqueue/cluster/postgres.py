"""A private PostgreSQL server in a directory of its own, for the local cluster and the tests.

It exists so that ``myqueue cluster up --store postgres`` and the test suite need nothing but
the PostgreSQL server binaries: no system cluster, no configuration by hand. On first use it
creates the cluster (initdb) with a generated password and scram-sha-256 authentication; it
listens on 127.0.0.1 only, keeps its Unix socket inside its own directory, and creates the
``myqueue`` database. It knows nothing of myqueue's schema (the services create their tables).

PostgreSQL refuses to run as root, so as root every server command runs as the ``postgres``
system user (``runuser``), which then owns the directory; every parent directory must be
searchable by that user.

Layout of ``data_dir``::

    pgdata/        the cluster (PGDATA), also the Unix socket directory
    password       the superuser's password (mode 0600)
    port           the TCP port, chosen once and reused by every later start
    postgres.log   the server log
"""

import logging
import os
import pwd
import secrets
import shutil
import subprocess  # noqa: S404 - argv lists only, never a shell
import time
from pathlib import Path
from types import TracebackType

import psycopg2
from psycopg2 import sql

from myqueue.core.defaults import DEFAULT_HOST

from . import defaults
from .ports import free_port

log = logging.getLogger(__name__)

_SERVER_BINARIES = ("initdb", "pg_ctl", "pg_isready")
_UNIX_SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes including the terminating NUL
_CONFIG_FILE = "myqueue.conf"
_HBA_FILE = "myqueue_hba.conf"  # with ``allow``: initdb's rules plus that network, rewritten at each start


class PostgresError(RuntimeError):
    """The private PostgreSQL could not be created, started or stopped."""


class PostgresNotInstalled(PostgresError):
    """The PostgreSQL server binaries were not found."""


def find_bindir(versions_root: Path = Path("/usr/lib/postgresql")) -> Path:
    """The directory holding initdb, pg_ctl and pg_isready.

    Looked up in order: ``pg_config --bindir``, the newest ``<versions_root>/*/bin`` (Debian's
    layout), and wherever ``initdb`` on PATH points to.
    """
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run(  # noqa: S603
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
        )
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))
    candidates += sorted(versions_root.glob("*/bin"), key=_version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if all((bindir / name).is_file() for name in _SERVER_BINARIES):
            return bindir
    raise PostgresNotInstalled(
        "PostgreSQL server binaries (initdb, pg_ctl, pg_isready) were not found via pg_config, "
        "/usr/lib/postgresql/*/bin or PATH; install PostgreSQL (Debian: apt-get install postgresql) "
        "or point myqueue at an existing server with --dsn"
    )


def _version_key(bindir: Path) -> tuple[int, str]:
    version = bindir.parent.name
    return (int(version) if version.isdigit() else -1, version)


class PrivatePostgres:
    """One PostgreSQL server owned by one directory; ``start`` is idempotent across runs.

    ``port`` None reuses the port remembered in the directory, or picks a free one the first
    time. Not thread-safe: one owner starts and stops it.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        host: str = DEFAULT_HOST,
        allow: str | None = None,
    ):
        self.data_dir = Path(data_dir).absolute()
        self.host = host
        self.allow = allow  # a further client network (CIDR) allowed in, e.g. the local cluster's namespaces
        self._requested_port = port
        self._port: int | None = None
        self._bindir: Path | None = None
        self._owner: tuple[int, int] | None = None  # (uid, gid) of the server user when we are root

    # --- public surface -----------------------------------------------------------------
    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def port(self) -> int:
        if self._port is None:
            raise PostgresError("the private PostgreSQL has not been started")
        return self._port

    @property
    def dsn(self) -> str:
        """A libpq URI for the ``myqueue`` database (the password is URL-safe by construction)."""
        return self.dsn_for(defaults.PG_DATABASE)

    def dsn_for(self, database: str) -> str:
        password = (self.data_dir / "password").read_text().strip()
        return f"postgresql://{defaults.PG_SUPERUSER}:{password}@{self.host}:{self.port}/{database}"

    def start(self) -> None:
        """Create the cluster if there is none, start the server and create the database."""
        self._bindir = find_bindir()
        self._prepare_directory()
        if not (self.pgdata / "PG_VERSION").is_file():
            self._initdb()
        self._write_config()
        if self._running():
            log.info("PostgreSQL in %s is already running; using it", self.pgdata)
        else:
            self._pg_ctl(
                ["start", "-l", str(self.log_file), "-w", "-t", str(int(defaults.PG_START_TIMEOUT_S))]
            )
        self._wait_ready()
        self._create_database()
        log.info("private PostgreSQL ready on %s:%d (data in %s)", self.host, self.port, self.pgdata)

    def stop(self) -> None:
        """Stop the server (fast mode: open transactions are rolled back); no-op if it is down."""
        if not (self.pgdata / "PG_VERSION").is_file():
            return
        if self._bindir is None:
            self._bindir = find_bindir()
        if not self._running():
            return
        self._pg_ctl(["stop", "-m", "fast", "-w", "-t", str(int(defaults.PG_STOP_TIMEOUT_S))])

    def stop_argv(self) -> list[str]:
        """The command ``stop`` runs, for a watchdog that must stop the server after we are gone."""
        if self._bindir is None:
            self._bindir = find_bindir()
        argv = [str(self._binary("pg_ctl")), "-D", str(self.pgdata), "stop", "-m", "fast"]
        return self._as_server_user([*argv, "-w", "-t", str(int(defaults.PG_STOP_TIMEOUT_S))])

    def __enter__(self) -> "PrivatePostgres":
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- the directory ----------------------------------------------------------------------
    def _prepare_directory(self) -> None:
        socket_path = self.pgdata / ".s.PGSQL.65535"
        if len(os.fsencode(socket_path)) > _UNIX_SOCKET_PATH_MAX:
            raise PostgresError(
                f"data dir {self.data_dir} is too long a path for PostgreSQL's Unix socket "
                f"(at most {_UNIX_SOCKET_PATH_MAX - 25} characters); choose a shorter one"
            )
        if os.geteuid() == 0:
            self._owner = _server_user()
            self._check_reachable()
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._owner is not None:
            os.chown(self.data_dir, *self._owner)
        password_file = self.data_dir / "password"
        if not password_file.exists():
            if (self.pgdata / "PG_VERSION").exists():
                raise PostgresError(f"{self.pgdata} holds a cluster but {password_file} is missing")
            self._write_private(password_file, secrets.token_urlsafe(24) + "\n")
        self._port = self._remembered_port()

    def _remembered_port(self) -> int:
        port_file = self.data_dir / "port"
        if self._requested_port is not None:
            port = self._requested_port
        elif port_file.is_file():
            port = int(port_file.read_text().strip())
        else:
            port = free_port(self.host)
        self._write_private(port_file, f"{port}\n")
        return port

    def _check_reachable(self) -> None:
        """As root, before creating anything: the postgres user must reach the directory, i.e.
        search every directory on its path (the directory itself is then made its own)."""
        existing = next(path for path in self.data_dir.parents if path.exists())
        reach = subprocess.run(  # noqa: S603
            self._as_server_user(["test", "-x", str(existing)]), cwd="/", capture_output=True, check=False
        )
        if reach.returncode != 0:
            raise PostgresError(
                f"the '{defaults.PG_OS_USER}' system user cannot reach {self.data_dir}: a parent "
                "directory is not searchable by other users (e.g. mode 0700, as under /root or "
                "pytest's tmp dirs); choose a data dir elsewhere or pass --dsn"
            )

    def _write_private(self, path: Path, text: str) -> None:
        """Write a file only its owner can read (the postgres user, as root), atomically."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        if self._owner is not None:
            os.chown(tmp, *self._owner)
        os.replace(tmp, path)

    # --- the server -------------------------------------------------------------------------
    def _initdb(self) -> None:
        log.info("creating a PostgreSQL cluster in %s", self.pgdata)
        self._run(
            [
                str(self._binary("initdb")),
                "-D",
                str(self.pgdata),
                "-U",
                defaults.PG_SUPERUSER,
                f"--pwfile={self.data_dir / 'password'}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ],
            "initdb",
        )
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\n# written by myqueue: settings of the private cluster\ninclude_if_exists = '{_CONFIG_FILE}'\n"
            )

    def _write_config(self) -> None:
        hba_setting = ""
        if self.allow:  # initdb's rules (loopback, scram) plus that network
            rules = [
                "local all all",
                "host all all 127.0.0.1/32",
                "host all all ::1/128",
                f"host all all {self.allow}",
            ]
            self._write_private(self.pgdata / _HBA_FILE, "".join(f"{rule} scram-sha-256\n" for rule in rules))
            hba_setting = f"hba_file = '{self.pgdata / _HBA_FILE}'\n"
        self._write_private(
            self.pgdata / _CONFIG_FILE,
            hba_setting + f"listen_addresses = '{self.host}'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.pgdata}'\n"
            f"max_connections = {defaults.PG_MAX_CONNECTIONS}\n",
        )

    def _running(self) -> bool:
        status = subprocess.run(  # noqa: S603
            self._as_server_user([str(self._binary("pg_ctl")), "status", "-D", str(self.pgdata)]),
            cwd=self.data_dir,
            env=server_env(),
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def _pg_ctl(self, args: list[str]) -> None:
        self._run([str(self._binary("pg_ctl")), "-D", str(self.pgdata), *args], f"pg_ctl {args[0]}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + defaults.PG_START_TIMEOUT_S
        argv = [str(self._binary("pg_isready")), "-h", self.host, "-p", str(self.port), "-t", "2", "-q"]
        while subprocess.run(argv, env=server_env(), check=False).returncode != 0:  # noqa: S603
            if time.monotonic() > deadline:
                raise PostgresError(
                    f"PostgreSQL on {self.host}:{self.port} not ready after {defaults.PG_START_TIMEOUT_S:.0f} s; "
                    f"see {self.log_file}"
                )
            time.sleep(defaults.POLL_INTERVAL_S)

    def _create_database(self) -> None:
        connection = psycopg2.connect(self.dsn_for("postgres"), connect_timeout=10)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (defaults.PG_DATABASE,))
                if cursor.fetchone() is None:
                    cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(defaults.PG_DATABASE)))
        finally:
            connection.close()

    # --- running commands -------------------------------------------------------------------
    def _binary(self, name: str) -> Path:
        if self._bindir is None:
            raise RuntimeError(f"{name}: start() first (it finds the PostgreSQL binaries)")
        return self._bindir / name

    def _run(self, argv: list[str], what: str) -> None:
        result = subprocess.run(  # noqa: S603
            self._as_server_user(argv),
            cwd=self.data_dir,
            env=server_env(),
            capture_output=True,
            text=True,
            start_new_session=True,  # the server must not get the terminal's Ctrl-C before the services stop
            check=False,
        )
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()
            raise PostgresError(
                f"{what} failed (exit {result.returncode}): {output}; server log: {self.log_file}"
            )

    @staticmethod
    def _as_server_user(argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["runuser", "-u", defaults.PG_OS_USER, "--", *argv]


def _server_user() -> tuple[int, int]:
    try:
        user = pwd.getpwnam(defaults.PG_OS_USER)
    except KeyError:
        raise PostgresError(
            f"running as root, PostgreSQL must run as the '{defaults.PG_OS_USER}' system user, which "
            "does not exist (initdb refuses root); create it, run as another user, or pass --dsn"
        ) from None
    return user.pw_uid, user.pw_gid


def server_env() -> dict[str, str]:
    """Our environment without libpq variables (PGPORT, PGHOST...) that would redirect commands."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}
