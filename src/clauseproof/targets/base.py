"""The target interface: a database the suites run against, and its dialect's operations.

Every target kind (embedded, external, containers) works only inside its own namespace:
a schema ``clauseproof_<run>`` on PostgreSQL, a database of that name on the MySQL family.
It creates that namespace on start and drops only that on stop.
"""

from __future__ import annotations

import contextlib
import socket
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clauseproof.core.digest import Dialect, Digest, digest_sql
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text, msg

if TYPE_CHECKING:
    from clauseproof.targets.single.external import Profile

NAMESPACE_PREFIX = "clauseproof_"
CONNECT_TIMEOUT_S = 5
COPY_BLOCK = 1 << 20

PG_SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "shared_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "wal_compression",
    "data_checksums",
)
MYSQL_SETTINGS = (
    "version",
    "innodb_flush_log_at_trx_commit",
    "sync_binlog",
    "log_bin",
    "innodb_doublewrite",
    "innodb_buffer_pool_size",
    "innodb_log_file_size",
    "innodb_flush_method",
    "local_infile",
    "version_compile_machine",
    "version_compile_os",
)


@dataclass
class Endpoint:
    """Where and as whom to connect; the password is never written to results."""

    host: str
    port: int
    user: str
    database: str
    password: str | None = field(default=None, repr=False)
    unix_socket: str | None = None

    def client_args(self, dialect: str) -> list[str]:
        """Connection arguments of the engine's command-line clients (psql, pg_dump, … / mariadb, mariadb-dump)."""
        if dialect == "postgresql":
            return ["-h", self.host, "-p", str(self.port), "-U", self.user]
        return ["--no-defaults", "-h", self.host, "-P", str(self.port), "-u", self.user]

    def client_env(self, dialect: str) -> dict[str, str] | None:
        """The password for those clients, in the environment (never on a command line)."""
        if not self.password:
            return None
        return {"PGPASSWORD" if dialect == "postgresql" else "MYSQL_PWD": self.password}

    def public(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "user": self.user, "database": self.database}


def row_numbers(cur: Any, dialect: str, lo: int, hi: int) -> str:
    """A FROM item yielding column ``i`` = lo..hi, made on the server: ``generate_series`` on PostgreSQL, a
    recursive CTE on the MySQL family (whose session recursion limit is raised to fit, under MariaDB's name
    or MySQL's, whichever the server knows)."""
    if dialect == "postgresql":
        return f"generate_series({lo}, {hi}) AS g(i)"
    for setting in ("max_recursive_iterations", "cte_max_recursion_depth"):  # MariaDB, MySQL
        with contextlib.suppress(Exception):
            cur.execute(f"SET SESSION {setting} = {hi - lo + 1000}")
    return f"(WITH RECURSIVE g(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM g WHERE i < {hi}) SELECT i FROM g) AS g"


def check_reachable(host: str, port: int, what: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within ``timeout`` seconds, naming host and port, if nothing answers there."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ClauseproofError(
            f"cannot reach {what} at {host}:{port}: {reason}",
            checked=f"a TCP connection to {host}:{port} with a {timeout:g} s timeout",
            fix="start the server, or correct the host and port in the target URL or profile",
        ) from None


def open_endpoint(
    dialect: str, ep: Endpoint, database: str | None = None, pg_options: str = "", extra: dict[str, Any] | None = None
) -> Any:
    """A new autocommit DB-API connection to ``ep`` (psycopg 3 or PyMySQL); ``extra`` are further keyword
    arguments of the driver's ``connect`` (libpq parameters for psycopg)."""
    if dialect == "postgresql":
        import psycopg

        return psycopg.connect(
            host=ep.host,
            port=ep.port,
            user=ep.user,
            password=ep.password,
            dbname=database if database is not None else ep.database,
            connect_timeout=CONNECT_TIMEOUT_S,
            options=f"-c DateStyle=ISO {pg_options}".strip(),
            autocommit=True,
            **(extra or {}),
        )
    import pymysql

    from clauseproof.targets.pymysql_conn import connect as connect_mysql

    try:
        conn = connect_mysql(
            host=ep.host,
            port=ep.port,
            user=ep.user,
            password=ep.password or "",
            database=database if database is not None else (ep.database or None),
            connect_timeout=CONNECT_TIMEOUT_S,
            # PyMySQL's connect_timeout covers the TCP connect only; the greeting and the login are read with
            # read_timeout, so a port that accepts and never speaks (or a PostgreSQL server, which waits for the
            # client to speak first) would hang.  Bounded here, lifted below for the session's own queries.
            read_timeout=CONNECT_TIMEOUT_S,
            local_infile=True,
            autocommit=True,
            charset="utf8mb4",
            unix_socket=ep.unix_socket,
            **(extra or {}),
        )
    except pymysql.err.OperationalError as exc:
        if "timed out" in str(exc):
            raise ClauseproofError(
                f"the server at {ep.host}:{ep.port} accepted the connection but sent no MySQL greeting within "
                f"{CONNECT_TIMEOUT_S} s",
                checked="the MySQL protocol handshake",
                fix="check that a MySQL-family server listens there (a PostgreSQL port, say, stays silent)",
            ) from None
        raise
    conn._read_timeout = None  # a quirk of PyMySQL: the next read resets the socket's timeout from this
    return conn


class Target(ABC):
    """A database target; subclasses start or reach the server."""

    kind: str = "abstract"
    dialect: Dialect
    #: Results from this target are not evidence (a simulator, say).
    simulated: bool = False
    #: What a vendor's profile declares about the system (None for a target the harness starts).
    profile: Profile | None = None

    def preflight(self) -> None:
        """What can be checked before the run without starting anything (binaries, reachability); raises a
        :class:`ClauseproofError` saying what is wrong.  Nothing by default."""
        return None

    def __init__(self, label: str, namespace: str) -> None:
        self.label = label
        self.namespace = namespace
        self.endpoint: Endpoint | None = None
        self._namespace_created = False

    # -- life cycle -------------------------------------------------------------------------
    @abstractmethod
    def start(self) -> None:
        """Make the server reachable and create the harness's namespace."""

    @abstractmethod
    def stop(self) -> None:
        """Drop the namespace and release whatever start() created. Never raises."""

    def describe(self) -> dict[str, Any]:
        """What the evidence records of this target (no secrets)."""
        return {
            "label": self.label,
            "kind": self.kind,
            "dialect": self.dialect,
            "namespace": self.namespace,
            "endpoint": self.endpoint.public() if self.endpoint else None,
            "simulated": self.simulated,
        }

    # -- connections ------------------------------------------------------------------------
    def tool(self, name: str) -> str:
        """The command-line client ``name`` to use with this target (from PATH unless a subclass knows better)."""
        return name

    def connect(self, *, in_namespace: bool = True) -> Any:
        """A new autocommit DB-API connection, inside the namespace unless told otherwise."""
        ep = self._ep()
        if self.dialect == "postgresql":
            return self._open(ep.database, f"-c search_path={self.namespace}" if in_namespace else "")
        return self._open(self.namespace if in_namespace else (ep.database or None), "")

    def connect_database(self, database: str) -> Any:
        """A new autocommit connection to a named database (its default schema on PostgreSQL)."""
        return self._open(database, "")

    def _open(self, database: str | None, pg_options: str) -> Any:
        # PostgreSQL sessions carry the run's namespace as their application name, so that what a stopped run
        # left running can be found and stopped (MySQL-family sessions are found by their database)
        extra = {"application_name": self.namespace} if self.dialect == "postgresql" else None
        return open_endpoint(self.dialect, self._ep(), database, pg_options, extra)

    def address(self) -> Endpoint:
        """Where the server listens and who the harness connects as (the password included: never record it;
        :meth:`Endpoint.public` is what the evidence may show)."""
        return self._ep()

    def _ep(self) -> Endpoint:
        if self.endpoint is None:
            raise RuntimeError(f"target {self.label} is not started")
        return self.endpoint

    def create_namespace(self) -> None:
        conn = self.connect(in_namespace=False)
        try:
            with conn.cursor() as cur:
                if self.dialect == "postgresql":
                    cur.execute(f"CREATE SCHEMA {self.namespace}")
                else:
                    cur.execute(f"CREATE DATABASE {self.namespace} CHARACTER SET utf8mb4")
            self._namespace_created = True
        finally:
            conn.close()

    def local_nodes(self) -> list[tuple[str, int, Path]]:
        """The nodes of this target running on this machine as processes the harness can read from ``/proc``:
        (name, the server's main pid, its data directory); empty where it cannot see them."""
        return []

    def drop_namespace(self) -> None:
        """Drop the harness's own namespace, and nothing else (statements of this run still running in it are
        stopped first: an interrupted run leaves nothing behind)."""
        if not self._namespace_created:
            return
        conn = self.connect(in_namespace=False)
        try:
            drop_run_objects(conn, self.dialect, self.namespace, databases=False)
            self._namespace_created = False
        finally:
            conn.close()

    # -- dialect operations -----------------------------------------------------------------
    def create_table(self, conn: Any, ddl_dir: Path, workload: str, table: str) -> str:
        """Drop and create ``table`` from the per-dialect DDL file; return the DDL used."""
        path = ddl_dir / self.dialect / f"{workload}.sql"
        try:
            ddl = path.read_text().format(table=table)
        except OSError:
            raise ClauseproofError(
                f"no {self.dialect} DDL for workload {workload!r}", checked=str(path), fix=f"add {path}"
            ) from None
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(ddl)
        return ddl

    def load_path(self, source: str) -> Text:
        """The client path a bulk load uses, in words, for the evidence."""
        if self.dialect == "postgresql":
            return msg("load_path_copy_memory" if source == "memory" else "load_path_copy_file")
        return msg("load_path_load_data_memory" if source == "memory" else "load_path_load_data_file")

    def bulk_load(
        self, conn: Any, table: str, columns: tuple[str, ...], *, data: bytes | None = None, path: Path | None = None
    ) -> None:
        """Load tab-separated rows into ``table`` from memory (``data``) or a client file (``path``)."""
        cols = ", ".join(columns)
        if self.dialect == "postgresql":
            with conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
                if data is not None:
                    mv = memoryview(data)
                    for i in range(0, len(mv), COPY_BLOCK):
                        cp.write(mv[i : i + COPY_BLOCK])
                else:
                    assert path is not None
                    with open(path, "rb") as f:
                        while block := f.read(COPY_BLOCK):
                            cp.write(block)
            return
        if path is None:
            raise ValueError("the MySQL family loads from a client file: pass path=")
        with conn.cursor() as cur:
            cur.execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {table} "
                f"FIELDS TERMINATED BY '\\t' LINES TERMINATED BY '\\n' ({cols})",
                (str(path),),
            )
            if conn.show_warnings():
                warnings = conn.show_warnings()[:3]
                raise ClauseproofError(
                    f"LOAD DATA into {table} raised warnings: {warnings}",
                    fix="check that the data file matches the table's DDL",
                )

    def digest(self, conn: Any, table: str, columns: tuple[str, ...]) -> Digest:
        """Row count and content digest of ``table``, computed on the server."""
        with conn.cursor() as cur:
            cur.execute(digest_sql(self.dialect, table, columns))
            count, total = cur.fetchone()
        return Digest(int(count), int(total))

    def truncate(self, conn: Any, table: str) -> None:
        with conn.cursor() as cur:
            cur.execute(f"TRUNCATE TABLE {table}")

    def server_environment(self) -> dict[str, Any]:
        """Server version and the settings that matter for durability and load speed."""
        conn = self.connect(in_namespace=False)
        try:
            with conn.cursor() as cur:
                if self.dialect == "postgresql":
                    cur.execute(
                        "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s) ORDER BY name",
                        (list(PG_SETTINGS),),
                    )
                    settings = dict(cur.fetchall())
                    cur.execute("SELECT version()")
                    version = cur.fetchone()[0]
                else:
                    cur.execute(
                        "SHOW GLOBAL VARIABLES WHERE Variable_name IN ("
                        + ", ".join(["%s"] * len(MYSQL_SETTINGS))
                        + ")",
                        MYSQL_SETTINGS,
                    )
                    settings = {n: v for n, v in cur.fetchall()}
                    cur.execute("SELECT CONCAT(VERSION(), ' ', @@version_comment)")
                    version = cur.fetchone()[0]
        finally:
            conn.close()
        return {"version": version, "settings": settings}


#: Databases a run makes beside its namespace (the backup suite's data set and restore).
RUN_DATABASES = ("_data", "_restored", "_other")


#: How long :func:`stop_run_sessions` waits for the stopped sessions to be gone.
STOP_SESSIONS_S = 10.0


def stop_run_sessions(conn: Any, dialect: str, namespace: str) -> int:
    """Stop this user's sessions that work for the run ``namespace`` (a statement sent before an interruption
    runs on in the server): PostgreSQL sessions named after the namespace or in its databases, MySQL-family
    sessions in its databases.  Returns how many were stopped."""
    assert namespace.startswith(NAMESPACE_PREFIX)
    dbs = [namespace + suffix for suffix in ("", *RUN_DATABASES)]
    with conn.cursor() as cur:
        if dialect == "postgresql":
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                "AND usename = current_user AND (application_name = %s OR datname = ANY(%s))",
                (namespace, dbs),
            )
            pids = [int(r[0]) for r in cur.fetchall()]
            for pid in pids:
                cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
            # pg_terminate_backend only signals: wait (bounded) until they are gone, or a DROP DATABASE right after
            # fails with "being accessed by other users" and the run's database stays behind
            deadline = time.monotonic() + STOP_SESSIONS_S
            while pids and time.monotonic() < deadline:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
                if int(cur.fetchone()[0]) == 0:
                    break
                time.sleep(0.05)
            return len(pids)
        cur.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
            f"AND DB IN ({', '.join(['%s'] * len(dbs))})",
            tuple(dbs),
        )
        ids = [int(r[0]) for r in cur.fetchall()]
        for i in ids:
            with contextlib.suppress(Exception):  # ended meanwhile
                cur.execute(f"KILL {i}")
        return len(ids)


def drop_run_objects(conn: Any, dialect: str, namespace: str, *, databases: bool = True) -> list[str]:
    """Stop the run's sessions, then drop its namespace (and, with ``databases``, the databases named after it).
    Only names that start with the run's namespace are touched.  Returns what was dropped."""
    assert namespace.startswith(NAMESPACE_PREFIX)
    stop_run_sessions(conn, dialect, namespace)
    dropped = []
    with conn.cursor() as cur:
        if databases:
            for suffix in RUN_DATABASES:
                cur.execute(f"DROP DATABASE IF EXISTS {namespace}{suffix}")
                dropped.append(namespace + suffix)
        if dialect == "postgresql":
            cur.execute(f"DROP SCHEMA IF EXISTS {namespace} CASCADE")
        else:
            cur.execute(f"DROP DATABASE IF EXISTS {namespace}")
        dropped.append(namespace)
    return dropped
