"""The embedded servers' own diagnosis (role :class:`~clauseproof.targets.roles.Diagnosis`, SX-RDS-5): what a stock
PostgreSQL or MariaDB offers an operator, with nothing of the harness's in between.

- Slow-query analysis: the engine's slow log, turned on at the server level of the harness's own server only —
  PostgreSQL's ``log_min_duration_statement`` (``ALTER SYSTEM``, then a reload; the server log is read from where it
  stood), MariaDB's ``slow_query_log`` with ``long_query_time`` and ``log_output=TABLE`` (``mysql.slow_log`` is read).
  What was changed is set back by :meth:`diagnosis_stop`.
- Health status: the engine's catalogs — sessions waiting for a lock (``pg_stat_activity`` with
  ``pg_blocking_pids``; InnoDB's lock waits) and connections against ``max_connections`` — read through a connection
  held open, so that the status answers while every other connection is taken.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clauseproof.core.digest import Dialect
from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.roles import Health, SlowQuery

#: What the stand-ins count as slow (PostgreSQL's log_min_duration_statement, MariaDB's long_query_time).
SLOW_THRESHOLD_S = 1.0
#: A session that has waited this long for a lock is a problem of the health status.
LOCK_WAIT_PROBLEM_S = 1.0
#: How long a reload may take to reach new sessions.
RELOAD_WAIT_S = 10.0

_PG_DURATION = re.compile(r"duration: ([0-9.]+) ms\s+(?:statement|execute [^:]*): (.*)")


class EngineDiagnosis:
    """Mixed into the embedded servers (which give ``connect``, ``dialect``, ``folder`` and ``label``)."""

    dialect: Dialect
    folder: Path | None
    label: str
    if TYPE_CHECKING:  # given by the target it is mixed into

        def connect(self, *, in_namespace: bool = True) -> Any: ...

    @property
    def diagnosis_source(self) -> str:
        if self.dialect == "postgresql":
            return (
                f"the embedded PostgreSQL's own server log (log_min_duration_statement = {SLOW_THRESHOLD_S:g} s) and "
                "catalogs (pg_stat_activity, pg_blocking_pids, max_connections)"
            )
        return (
            f"the embedded MariaDB's own slow log (slow_query_log, long_query_time = {SLOW_THRESHOLD_S:g} s, "
            "log_output = TABLE: mysql.slow_log) and catalogs (InnoDB lock waits, Threads_connected, max_connections)"
        )

    # -- slow-query analysis ----------------------------------------------------------------------
    def slow_query_start(self) -> float:
        conn = self.connect(in_namespace=False)
        try:
            with conn.cursor() as cur:
                if self.dialect == "postgresql":
                    self._log_offset = self._server_log().stat().st_size
                    cur.execute(f"ALTER SYSTEM SET log_min_duration_statement = '{int(SLOW_THRESHOLD_S * 1000)}ms'")
                    cur.execute("SELECT pg_reload_conf()")
                else:
                    cur.execute("SELECT @@global.slow_query_log, @@global.long_query_time, @@global.log_output")
                    self._mysql_before = cur.fetchone()
                    cur.execute("SELECT NOW(6)")
                    self._slow_since = cur.fetchone()[0]
                    cur.execute(
                        f"SET GLOBAL long_query_time = {SLOW_THRESHOLD_S}, log_output = 'TABLE', slow_query_log = ON"
                    )
        finally:
            conn.close()
        self._wait_reloaded()
        return SLOW_THRESHOLD_S

    def _wait_reloaded(self) -> None:
        """New sessions see the threshold (a reload is asynchronous; a global variable reaches new sessions)."""
        sql = "SHOW log_min_duration_statement" if self.dialect == "postgresql" else "SELECT @@long_query_time"
        want = f"{int(SLOW_THRESHOLD_S * 1000)}ms" if self.dialect == "postgresql" else SLOW_THRESHOLD_S
        deadline = time.monotonic() + RELOAD_WAIT_S
        seen: Any = None
        while time.monotonic() < deadline:
            conn = self.connect(in_namespace=False)
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
                    seen = cur.fetchone()[0]
            finally:
                conn.close()
            if (
                seen == want
                or (self.dialect == "postgresql" and seen == f"{int(SLOW_THRESHOLD_S)}s")
                or (self.dialect != "postgresql" and float(seen) == SLOW_THRESHOLD_S)
            ):
                return
            time.sleep(0.1)
        raise ClauseproofError(
            f"{self.label}: the slow-query threshold did not reach new sessions within {RELOAD_WAIT_S:g} s "
            f"(they see {seen!r})"
        )

    def _server_log(self) -> Path:
        assert self.folder is not None, "the server is not started"
        return self.folder / "server.log"

    def slow_queries(self) -> list[SlowQuery]:
        if self.dialect == "postgresql":
            with self._server_log().open("rb") as f:
                f.seek(getattr(self, "_log_offset", 0))
                text = f.read().decode("utf-8", "replace")
            out: list[SlowQuery] = []
            for line in text.splitlines():
                if line.startswith(("\t", " ")) and out:  # a statement's next line
                    out[-1] = SlowQuery(out[-1].text + "\n" + line.strip(), out[-1].seconds)
                    continue
                m = _PG_DURATION.search(line)
                if m:
                    out.append(SlowQuery(m.group(2), float(m.group(1)) / 1000))
            return out
        conn = self.connect(in_namespace=False)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT HOUR(query_time) * 3600 + MINUTE(query_time) * 60 + SECOND(query_time) "
                    "+ MICROSECOND(query_time) / 1e6, CONVERT(sql_text USING utf8mb4) "
                    "FROM mysql.slow_log WHERE start_time >= %s ORDER BY start_time",
                    (self._slow_since,),
                )
                return [SlowQuery(str(t), float(s)) for s, t in cur.fetchall()]
        finally:
            conn.close()

    # -- health status ---------------------------------------------------------------------------
    def _health_conn(self) -> Any:
        conn = getattr(self, "_held", None)
        if conn is None:
            conn = self._held = self.connect(in_namespace=False)
        return conn

    def health(self) -> Health:
        problems: list[str] = []
        try:
            with self._health_conn().cursor() as cur:
                if self.dialect == "postgresql":
                    problems += _pg_problems(cur)
                else:
                    problems += _mysql_problems(cur)
        except Exception as exc:  # the status itself could not be read: that is a problem it reports
            self._held = None
            problems.append(f"the health status could not be read: {exc}")
        return Health(not problems, tuple(problems))

    def diagnosis_stop(self) -> None:
        held, self._held = getattr(self, "_held", None), None
        if held is not None:
            with contextlib.suppress(Exception):
                held.close()
        with contextlib.suppress(Exception):
            conn = self.connect(in_namespace=False)
            try:
                with conn.cursor() as cur:
                    if self.dialect == "postgresql":
                        cur.execute("ALTER SYSTEM RESET log_min_duration_statement")
                        cur.execute("SELECT pg_reload_conf()")
                    elif getattr(self, "_mysql_before", None):
                        on, long_s, output = self._mysql_before
                        cur.execute(
                            "SET GLOBAL slow_query_log = %s, long_query_time = %s, log_output = %s",
                            (int(on), float(long_s), str(output)),
                        )
            finally:
                conn.close()


def _pg_problems(cur: Any) -> list[str]:
    out = []
    cur.execute(
        "SELECT pid, pg_blocking_pids(pid), EXTRACT(EPOCH FROM clock_timestamp() - state_change), wait_event, "
        "left(query, 120) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND clock_timestamp() - state_change >= make_interval(secs => %s) ORDER BY pid",
        (LOCK_WAIT_PROBLEM_S,),
    )
    for pid, blockers, waited, event, query in cur.fetchall():
        out.append(
            f"lock wait: session {pid} has waited {float(waited):.1f} s for a {event} lock held by session(s) "
            f"{', '.join(map(str, blockers)) or '?'}: {query}"
        )
    cur.execute(
        "SELECT count(*), current_setting('max_connections')::int, "
        "current_setting('superuser_reserved_connections')::int FROM pg_stat_activity "
        "WHERE backend_type = 'client backend'"
    )
    used, most, reserved = cur.fetchone()
    if used >= most - reserved:
        out.append(
            f"connections exhausted: {used} client sessions of max_connections {most} "
            f"({reserved} reserved for superusers): new sessions are refused"
        )
    return out


def _mysql_problems(cur: Any) -> list[str]:
    out = []
    cur.execute(
        "SELECT r.trx_mysql_thread_id, b.trx_mysql_thread_id, TIMESTAMPDIFF(SECOND, r.trx_wait_started, NOW()), "
        "LEFT(r.trx_query, 120) FROM information_schema.INNODB_LOCK_WAITS w "
        "JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id "
        "JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id "
        "WHERE r.trx_wait_started <= NOW() - INTERVAL %s SECOND ORDER BY 1",
        (LOCK_WAIT_PROBLEM_S,),
    )
    for waiting, blocker, waited, query in cur.fetchall():
        out.append(
            f"lock wait: session {waiting} has waited {waited} s for a row lock held by session {blocker}: {query}"
        )
    cur.execute("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'THREADS_CONNECTED'")
    used = int(cur.fetchone()[0])
    cur.execute("SELECT @@global.max_connections")
    most = int(cur.fetchone()[0])
    if used >= most:
        out.append(f"connections exhausted: {used} connected of max_connections {most}: new sessions are refused")
    return out
