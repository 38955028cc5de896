"""The embedded servers' audit trail (role :class:`~clauseproof.targets.roles.AuditTrail`, BZ-SEC-1): the engines'
own audit plugins, turned on for the case on the harness's own server and turned off after it.

- PostgreSQL: pgaudit (Debian ``postgresql-<major>-pgaudit``), loaded by ``shared_preload_libraries`` — a restart of
  the embedded server, before and after — with ``pgaudit.log = 'write, ddl'`` and a ``log_line_prefix`` that names
  the user and database; the server log is read from where it stood after the restart.
- MariaDB: the ``server_audit`` plugin shipped with the server (``INSTALL SONAME``), ``server_audit_events =
  'QUERY_DDL,QUERY_DML'``, its own file in the instance's folder.
"""

from __future__ import annotations

import contextlib
import glob
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clauseproof.core.digest import Dialect
from clauseproof.core.errors import ClauseproofError, TargetUnavailable

#: The prefix of every server log line while the audit is on: time with milliseconds, pid, user@database.
PG_AUDIT_PREFIX = "%m [%p] %u@%d "


class EngineAudit:
    """Mixed into the embedded servers."""

    dialect: Dialect
    folder: Path | None
    label: str
    if TYPE_CHECKING:

        def connect(self, *, in_namespace: bool = True) -> Any: ...
        def stop_server(self) -> None: ...

    @property
    def audit_source(self) -> str:
        if self.dialect == "postgresql":
            return (
                "pgaudit on the embedded PostgreSQL (shared_preload_libraries, pgaudit.log = 'write, ddl', "
                f"log_line_prefix = '{PG_AUDIT_PREFIX}'), read from its server log"
            )
        return "MariaDB's server_audit plugin on the embedded server (QUERY_DDL, QUERY_DML), read from its file"

    def _sql(self, *statements: str) -> None:
        conn = self.connect(in_namespace=False)
        try:
            with conn.cursor() as cur:
                for s in statements:
                    cur.execute(s)
        finally:
            conn.close()

    def audit_start(self) -> None:
        assert self.folder is not None, "the server is not started"
        if self.dialect == "postgresql":
            if not glob.glob("/usr/lib/postgresql/*/lib/pgaudit.so"):
                raise TargetUnavailable(
                    "pgaudit is not installed", fix="apt-get install postgresql-15-pgaudit (./run installs it)"
                )
            self._sql(
                "ALTER SYSTEM SET shared_preload_libraries = 'pgaudit'",
                f"ALTER SYSTEM SET log_line_prefix = '{PG_AUDIT_PREFIX}'",
            )
            self._restart()  # pgaudit's settings exist once it is loaded
            self._sql("ALTER SYSTEM SET pgaudit.log = 'write, ddl'", "SELECT pg_reload_conf()")
            self._wait_setting("pgaudit.log", "write, ddl")
            self._audit_offset = (self.folder / "server.log").stat().st_size
            return
        path = self.folder / "audit.log"
        with contextlib.suppress(Exception):  # installed already (a second case on the same server)
            self._sql("INSTALL SONAME 'server_audit'")
        self._sql(
            f"SET GLOBAL server_audit_file_path = '{path}'",
            "SET GLOBAL server_audit_events = 'QUERY_DDL,QUERY_DML'",
            "SET GLOBAL server_audit_logging = ON",
        )
        self._audit_offset = path.stat().st_size if path.exists() else 0

    def _wait_setting(self, name: str, value: str, timeout: float = 10.0) -> None:
        """A reload reaches new sessions asynchronously: wait until one sees ``name = value``."""
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            conn = self.connect(in_namespace=False)
            try:
                with conn.cursor() as cur:
                    cur.execute(f"SHOW {name}")
                    seen = str(cur.fetchone()[0])
            finally:
                conn.close()
            if seen == value:
                return
            time.sleep(0.1)
        raise ClauseproofError(f"{self.label}: {name} did not reach new sessions within {timeout:g} s ({seen!r})")

    def _restart(self) -> None:
        self.stop_server()
        getattr(self, "start_again")()  # noqa: B009 (PostgreSQL's own; MariaDB never restarts here)

    def audit_entries(self) -> list[str]:
        assert self.folder is not None
        path = self.folder / ("server.log" if self.dialect == "postgresql" else "audit.log")
        if not path.exists():
            return []
        with path.open("rb") as f:
            f.seek(getattr(self, "_audit_offset", 0))
            lines = f.read().decode("utf-8", "replace").splitlines()
        if self.dialect == "postgresql":
            return [ln for ln in lines if "AUDIT:" in ln]
        return lines

    def audit_stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.dialect == "postgresql":
                self._sql(
                    "ALTER SYSTEM RESET pgaudit.log",
                    "ALTER SYSTEM RESET shared_preload_libraries",
                    "ALTER SYSTEM RESET log_line_prefix",
                )
                self._restart()
            else:
                self._sql("SET GLOBAL server_audit_logging = OFF")
