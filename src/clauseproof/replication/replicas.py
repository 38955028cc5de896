"""SX-RDS-2's replicas: each node proven a distinct server, a replica of the primary, current (see
:mod:`clauseproof.replication.checks` for the whole clause); the probe tables and the served-by expression."""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from clauseproof.core.digest import Dialect
from clauseproof.core.i18n import Text, joined, msg
from clauseproof.targets.base import Endpoint
from clauseproof.targets.clusters.topology import Topology

#: The served-by expression, evaluated by the node that runs the statement.  On PostgreSQL it
#: must be a stable function: pgpool-II sends a SELECT calling a volatile one (pg_is_in_recovery,
#: pg_sleep) to the primary.
IDENTITY = {
    "postgresql": "host(inet_server_addr()) || ':' || inet_server_port()",
    "mysql": "CONCAT(@@server_id, '@', @@hostname, ':', @@port)",
}
READ_TABLE = "cp_read_probe"
WRITE_TABLE = "cp_write_probe"
MARKER_TABLE = "cp_marker"


@contextlib.contextmanager
def _connection(topology: Topology, ep: Endpoint) -> Iterator[Any]:
    conn = topology.open(ep)
    try:
        yield conn
    finally:
        conn.close()


def _one(conn: Any, sql: str, args: tuple[Any, ...] | None = None) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
    return row[0] if row else None


def identity_of(conn: Any, dialect: Dialect) -> str:
    return str(_one(conn, f"SELECT {IDENTITY[dialect]}"))


# -- replicas ---------------------------------------------------------------------------------
@dataclass
class ReplicaState:
    name: str
    endpoint: str
    identity: str = ""
    reachable: bool = False
    read_only: bool = False
    replicating: bool = False
    current: bool = False
    #: Seconds from the marker's commit on the primary until this replica had replayed its position.
    catch_up_s: float | None = None
    #: Position lag when the marker committed: WAL bytes (PostgreSQL) or GTID positions (MySQL family).
    position_lag: str = ""
    #: The server's own timestamp-based lag (pg_stat_replication.replay_lag, Seconds_Behind_Master).
    reported_lag: str = ""
    #: Replicates from this topology's primary (same system identifier and listed by the primary as a
    #: streaming standby / Master_Server_Id is the primary's and the primary lists it among its replicas).
    from_primary: bool = False
    #: Reached through another endpoint already: the node of that endpoint (one server counts once).
    same_server_as: str = ""
    problem: Text | str = ""

    @property
    def counted(self) -> bool:
        return (
            self.reachable
            and self.read_only
            and self.replicating
            and self.from_primary
            and not self.same_server_as
            and self.current
        )

    def add_problem(self, text: Text) -> None:
        self.problem = joined([self.problem, text])


def prepare(topology: Topology) -> None:
    """Create the probe tables on the primary (inside the namespace; outside any timed window)."""
    ns = topology.namespace
    with _connection(topology, topology.primary.endpoint) as conn, conn.cursor() as cur:
        for table in (READ_TABLE, WRITE_TABLE, MARKER_TABLE):
            cur.execute(f"DROP TABLE IF EXISTS {ns}.{table}")
        cur.execute(f"CREATE TABLE {ns}.{READ_TABLE} (id integer PRIMARY KEY, v varchar(40) NOT NULL)")
        cur.execute(f"CREATE TABLE {ns}.{WRITE_TABLE} (token varchar(40) PRIMARY KEY, served_by varchar(200) NOT NULL)")
        cur.execute(f"CREATE TABLE {ns}.{MARKER_TABLE} (token varchar(40) PRIMARY KEY)")
        values = ", ".join(f"({i}, 'row {i}')" for i in range(1, 101))
        cur.execute(f"INSERT INTO {ns}.{READ_TABLE} (id, v) VALUES {values}")


def _primary_position(topology: Topology, token: str) -> str:
    """Commit a marker on the primary and return the position that holds it."""
    ns = topology.namespace
    with _connection(topology, topology.primary.endpoint) as conn:
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {ns}.{MARKER_TABLE} (token) VALUES (%s)", (token,))
        if topology.dialect == "postgresql":
            return str(_one(conn, "SELECT pg_current_wal_lsn()::text"))
        return str(_one(conn, "SELECT @@gtid_binlog_pos"))


def replica_states(topology: Topology, current_within_s: float = 5.0) -> list[ReplicaState]:
    """Verify every replica directly: reachable, read-only, replicating from this primary, a server of
    its own (not one reached before through another endpoint), and current.

    "Current" means the replica replays a marker committed on the primary within
    ``current_within_s`` seconds, judged by positions (LSN / GTID), and the marker row is
    visible there.  The servers' own timestamp-based lag is reported beside it.  A replica that
    cannot be queried is judged (not counted, with the reason), never an error of the case.
    """
    token = "m" + secrets.token_hex(8)
    states = [ReplicaState(n.name, f"{n.endpoint.host}:{n.endpoint.port}") for n in topology.replicas]
    conns: dict[str, Any] = {}
    try:
        primary_facts = _primary_facts(topology)
        for node, st in zip(topology.replicas, states, strict=True):
            try:
                conns[node.name] = topology.open(node.endpoint)
            except Exception as exc:
                st.add_problem(msg("replica_cannot_connect", error=_first_line(exc)))
                continue
            st.reachable = True
            try:
                _replica_facts(topology, conns[node.name], st, primary_facts)
            except Exception as exc:
                st.add_problem(msg("replica_cannot_query", error=_first_line(exc)))
                st.replicating = False
        for st, same in zip(states, same_servers(topology, conns), strict=True):
            if same:
                st.same_server_as = same
                st.add_problem(msg("replica_same_server", same=same))
        position = _primary_position(topology, token)
        committed = time.perf_counter()
        if topology.dialect == "postgresql":
            _pg_reported_lag(topology, states)
        for node, st in zip(topology.replicas, states, strict=True):
            conn = conns.get(node.name)
            if conn is None or not st.replicating:
                continue
            try:
                _wait_current(topology, conn, st, position, token, committed, current_within_s)
            except Exception as exc:
                st.add_problem(msg("replica_cannot_query", error=_first_line(exc)))
    finally:
        for c in conns.values():
            with contextlib.suppress(Exception):
                c.close()
    return states


@dataclass
class _PrimaryFacts:
    identity: str
    #: PostgreSQL: system identifier; MySQL family: @@server_id.
    system_id: str
    #: application_name of each streaming standby (PostgreSQL) / server ids the primary lists (MySQL family).
    replicas: Counter[str]
    listed: bool


def _primary_facts(topology: Topology) -> _PrimaryFacts:
    with _connection(topology, topology.primary.endpoint) as conn:
        identity = identity_of(conn, topology.dialect)
        if topology.dialect == "postgresql":
            system_id = str(_one(conn, "SELECT system_identifier FROM pg_control_system()"))
            with conn.cursor() as cur:
                cur.execute("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
                return _PrimaryFacts(identity, system_id, Counter(str(r[0]) for r in cur.fetchall()), True)
        system_id = str(_one(conn, "SELECT @@server_id"))
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW SLAVE HOSTS")
                cols = [d[0] for d in cur.description or []]
                ids = Counter(str(dict(zip(cols, r, strict=True)).get("Server_id")) for r in cur.fetchall())
            return _PrimaryFacts(identity, system_id, ids, True)
        except Exception:  # the privilege may be missing: Master_Server_Id alone then
            return _PrimaryFacts(identity, system_id, Counter(), False)


def _replica_facts(topology: Topology, conn: Any, st: ReplicaState, primary: _PrimaryFacts) -> None:
    st.identity = identity_of(conn, topology.dialect)
    if topology.dialect == "postgresql":
        in_recovery = bool(_one(conn, "SELECT pg_is_in_recovery()"))
        st.read_only = in_recovery and _one(conn, "SHOW transaction_read_only") == "on"
        with conn.cursor() as cur:
            cur.execute("SELECT status, conninfo FROM pg_stat_wal_receiver")
            row = cur.fetchone()
        status, conninfo = (row[0], str(row[1] or "")) if row else (None, "")
        st.replicating = status == "streaming"
        if not st.replicating:
            st.add_problem(msg("replica_wal_receiver", status=status or msg("not_streaming_standby")))
        system_id = str(_one(conn, "SELECT system_identifier FROM pg_control_system()"))
        m = re.search(r"application_name=(\S+)", conninfo)
        name = m.group(1) if m else "walreceiver"
        if system_id != primary.system_id:
            st.add_problem(msg("replica_other_cluster", id=system_id, primary=primary.system_id))
        else:
            _claim(st, primary, name, msg("replica_unlisted_pg", name=repr(name)))
    else:
        st.read_only = bool(int(_one(conn, "SELECT @@read_only")))
        with conn.cursor() as cur:
            cur.execute("SHOW SLAVE STATUS")
            row = cur.fetchone()
            cols = [d[0] for d in cur.description] if cur.description else []
        status = dict(zip(cols, row, strict=True)) if row else {}
        io, sql = status.get("Slave_IO_Running"), status.get("Slave_SQL_Running")
        st.replicating = io == "Yes" and sql == "Yes"
        if not st.replicating:
            st.add_problem(msg("replica_threads", io=io or "none", sql=sql or "none"))
        st.reported_lag = f"Seconds_Behind_Master = {status.get('Seconds_Behind_Master')}"
        master = str(status.get("Master_Server_Id", ""))
        server_id = str(_one(conn, "SELECT @@server_id"))
        if master != primary.system_id:
            st.add_problem(msg("replica_other_master", master=master or "none", primary=primary.system_id))
        else:
            _claim(st, primary, server_id, msg("replica_unlisted_mysql", id=server_id))
    if not st.read_only:
        st.add_problem(msg("replica_accepts_writes"))


def _claim(st: ReplicaState, primary: _PrimaryFacts, key: str, unlisted: Text) -> None:
    """A replicating replica is from this primary when the primary lists it (each listing claimed once)."""
    if st.replicating and primary.listed and primary.replicas[key] <= 0:
        st.add_problem(unlisted)
        return
    st.from_primary = st.replicating
    if st.replicating and primary.listed:
        primary.replicas[key] -= 1


def same_servers(topology: Topology, conns: dict[str, Any]) -> list[str]:
    """For each replica, the node reached before it that is the same server (or ''): every open session
    marks itself where the server lists its sessions, and every other session looks for those marks.

    PostgreSQL: a random ``application_name`` in ``pg_stat_activity``; MySQL family: the session's
    ``(ID, HOST)`` in ``information_schema.PROCESSLIST`` (HOST holds the client's port)."""
    order = [topology.primary.name, *(n.name for n in topology.replicas)]
    opened: dict[str, Any] = {}
    extra: list[Any] = []
    try:
        for node in topology.nodes:
            if node.name in conns:
                opened[node.name] = conns[node.name]
            else:
                with contextlib.suppress(Exception):
                    opened[node.name] = topology.open(node.endpoint)
                    extra.append(opened[node.name])
        marks: dict[str, tuple[Any, ...]] = {}
        for name, conn in opened.items():
            with contextlib.suppress(Exception):
                if topology.dialect == "postgresql":
                    mark = f"cp-ident-{secrets.token_hex(6)}"
                    with conn.cursor() as cur:
                        cur.execute("SELECT set_config('application_name', %s, false)", (mark,))
                    marks[name] = (mark,)
                else:
                    with conn.cursor() as cur:
                        cur.execute("SELECT ID, HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()")
                        marks[name] = tuple(cur.fetchone())
        first: dict[str, str] = {}
        for i, name in enumerate(order):
            conn = opened.get(name)
            if conn is None:
                continue
            for earlier in order[:i]:
                if earlier in first or earlier not in marks:
                    continue
                with contextlib.suppress(Exception):
                    if topology.dialect == "postgresql":
                        sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                    else:
                        sql = "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = %s AND HOST = %s"
                    if int(_one(conn, sql, marks[earlier]) or 0):
                        first[name] = earlier
                        break
    finally:
        for c in extra:
            with contextlib.suppress(Exception):
                c.close()
    return [first.get(n.name, "") for n in topology.replicas]


def _wait_current(
    topology: Topology, conn: Any, st: ReplicaState, position: str, token: str, committed: float, limit: float
) -> None:
    ns = topology.namespace
    deadline = committed + limit
    if topology.dialect == "postgresql":
        first = _one(conn, "SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())::bigint", (position,))
        st.position_lag = f"{max(int(first or 0), 0)} WAL bytes behind the marker's LSN {position} at first look"
        while True:
            if _one(conn, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (position,)):
                st.catch_up_s = round(time.perf_counter() - committed, 4)
                break
            if time.perf_counter() > deadline:
                break
            time.sleep(0.002)
    else:
        replica_pos = _one(conn, "SELECT @@gtid_slave_pos")
        st.position_lag = f"replica at GTID {replica_pos or '(none)'}, marker at {position}"
        left = max(deadline - time.perf_counter(), 0.001)
        if _one(conn, "SELECT MASTER_GTID_WAIT(%s, %s)", (position, left)) == 0:
            st.catch_up_s = round(time.perf_counter() - committed, 4)
    if st.catch_up_s is None:
        st.add_problem(msg("replica_stale", limit=f"{limit:g}"))
        return
    seen = _one(conn, f"SELECT count(*) FROM {ns}.{MARKER_TABLE} WHERE token = %s", (token,))
    st.current = int(seen or 0) == 1
    if not st.current:
        st.add_problem(msg("replica_marker_invisible"))


def _pg_reported_lag(topology: Topology, states: list[ReplicaState]) -> None:
    """pg_stat_replication's timestamp-based replay_lag, matched to replicas by application_name."""
    with _connection(topology, topology.primary.endpoint) as conn, conn.cursor() as cur:
        cur.execute("SELECT application_name, state, replay_lag::text FROM pg_stat_replication")
        rows = {r[0]: (r[1], r[2]) for r in cur.fetchall()}
    for st in states:
        if st.name in rows:
            state, lag = rows[st.name]
            st.reported_lag = f"pg_stat_replication: {state}, replay_lag {lag or 'null (idle)'}"


# -- writes -------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
