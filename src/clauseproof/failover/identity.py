"""Prove identity before counting: which server answers at a node's address, read through SQL.

A failover verdict counts nodes (a write on every node, a new leader, a node added) and faults (a node killed).
The cheapest cheats count addresses instead: a "cluster" whose nodes are addresses of one server, a "scale out"
that adds an address for a node that exists, a "kill" that moves the victim's address to another node's server
while the old leader never stops.  So each node is identified by what only its server knows:

- PostgreSQL: the cluster's system identifier (``pg_control_system()``) and the postmaster's start time to the
  microsecond (``pg_postmaster_start_time()``): replicas share the first, never the second; a restart renews it;
- MySQL family: ``@@server_uuid`` where the server has one (MySQL), Galera's ``wsrep_gcomm_uuid`` (new at every
  start), ``@@server_id``, ``@@hostname``, ``@@datadir``, ``@@port``, and the start time (``UNIX_TIMESTAMP()`` minus
  ``Uptime``, to the second).

:class:`Watch` follows a victim while a fault is applied: the fault is *seen* when its address stops answering as
its server (no answer, or another server's identity); the instant is the first such observation, whatever the
fault's command returned; a victim that goes on answering as itself was never faulted, and one that comes back
with its old start time never stopped.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Generic

from clauseproof.core.errors import first_line
from clauseproof.core.i18n import Text, msg
from clauseproof.targets.roles import N, NodeAddresses

POLL_S = 0.05
#: a node is taken to have stopped once it answered nothing for this long (a single slow connect on a busy
#: machine is not a fault, and must not hide an address that moved)
CONFIRM_S = 1.0
#: how long a node brought back may take to answer as itself
COME_BACK_S = 60.0
#: the MySQL family reads its start time to the second: two reads of one server may differ by one
MYSQL_START_SLACK_S = 1.5


@dataclass(frozen=True)
class Identity:
    """Which server answered: its own identifiers, its process's start time (epoch seconds), where it keeps its
    data (as it reports it)."""

    server: str
    started: float
    where: str
    exact_start: bool  # PostgreSQL's microsecond start time, not the MySQL family's second

    def same_server(self, other: Identity) -> bool:
        slack = 1e-6 if self.exact_start and other.exact_start else MYSQL_START_SLACK_S
        return self.server == other.server and self.where == other.where and abs(self.started - other.started) < slack

    def restarted_since(self, before: Identity) -> bool:
        """The same node's server, started again after ``before`` was read."""
        slack = 1e-6 if self.exact_start else MYSQL_START_SLACK_S
        return self.where == before.where and self.started > before.started + slack

    def text(self) -> str:
        return str(self.text_i18n())

    def text_i18n(self) -> Text:
        """The identity in the report's language (identifiers, paths and times as they are)."""
        started = time.strftime("%H:%M:%S", time.gmtime(self.started)) + "Z"
        return msg("ident_text", server=self.server, started=started, where=self.where)


def identify(conn: Any, dialect: str) -> Identity:
    """The identity of the server ``conn`` is connected to."""
    with conn.cursor() as cur:
        if dialect == "postgresql":
            cur.execute(
                "SELECT (SELECT system_identifier FROM pg_control_system())::text, "
                "extract(epoch FROM pg_postmaster_start_time())::float8, "
                "coalesce(host(inet_server_addr()), 'socket') || ':' || coalesce(inet_server_port(), 0)::text"
            )
            system_id, started, addr = cur.fetchone()
            try:
                cur.execute("SELECT current_setting('data_directory')")
                where = str(cur.fetchone()[0])
            except Exception:  # no privilege to read it: the address the server says it answered on
                _rollback(conn)
                where = f"inet_server_addr {addr}"
            return Identity(f"system_identifier {system_id}", float(started), where, True)
        cur.execute(
            "SELECT @@server_id, @@hostname, @@datadir, @@port, UNIX_TIMESTAMP() - "
            "(SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME')"
        )
        server_id, hostname, datadir, port, started = cur.fetchone()
        ids = [f"server_id {server_id}"]
        for query in ("SELECT @@server_uuid", "SHOW STATUS LIKE 'wsrep_gcomm_uuid'"):
            try:
                cur.execute(query)
                row = cur.fetchone()
            except Exception:  # MariaDB has no server_uuid
                continue
            value = row[-1] if row else None
            if value:
                ids.append(f"{'server_uuid' if 'server_uuid' in query else 'wsrep_gcomm_uuid'} {value}")
        return Identity(", ".join(ids), float(started), f"{hostname}:{datadir} :{port}", False)


def _rollback(conn: Any) -> None:
    if not getattr(conn, "autocommit", True):
        conn.rollback()


def read(cluster: NodeAddresses[N], node: N, timeout: float = 5.0) -> tuple[Identity | None, Text | str]:
    """``node``'s identity, or None with why it could not be read (no answer: the node is down or unreachable)."""
    try:
        conn = cluster.connect_node(node, timeout=timeout)
    except Exception as exc:
        return None, first_line(exc)
    try:
        return identify(conn, cluster.dialect), ""
    except Exception as exc:
        return None, msg("ident_unreadable", error=first_line(exc))
    finally:
        conn.close()


def survey(cluster: NodeAddresses[N]) -> tuple[dict[str, Identity], list[Text | str], list[Text | str]]:
    """Every node's identity; the nodes that are one server (problems) and the nodes that could not be read."""
    ids: dict[str, Identity] = {}
    unread: list[Text | str] = []
    for node in cluster.nodes:
        ident, why = read(cluster, node)
        if ident is None:
            unread.append(msg("ident_node", node=node.name, ident=why))
        else:
            ids[node.name] = ident
    return ids, same_servers(ids), unread


def same_servers(ids: dict[str, Identity]) -> list[Text | str]:
    names = list(ids)
    return [
        msg("ident_one_server", a=a, b=b, ident=ids[a].text_i18n())
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if ids[a].same_server(ids[b])
    ]


class Watch(Generic[N]):
    """Follows ``node`` from before a fault until it is seen: see the module's docstring."""

    def __init__(
        self, cluster: NodeAddresses[N], node: N, others: dict[str, Identity], timeout_s: float = 30.0
    ) -> None:
        self.cluster, self.node, self.others, self.timeout_s = cluster, node, others, timeout_s
        self.before, why = read(cluster, node)
        self.unread: Text | str = "" if self.before is not None else msg("ident_before_fault", node=node.name, why=why)
        self.seen_at: float | None = None
        self.seen = ""
        #: when the fault's command was started (:meth:`arm`): a silence that began before it is a slow answer on a
        #: busy machine, never the fault (it would put the fault's instant before the fault)
        self.armed_at: float | None = None
        self.problem: Text | str = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="clauseproof-identity-watch", daemon=True)

    def start(self) -> None:
        if self.before is not None:
            self._thread.start()

    def arm(self) -> float:
        """Say the fault's command starts now; the instant."""
        self.armed_at = time.monotonic()
        return self.armed_at

    def _follow(self) -> None:
        assert self.before is not None
        deadline = time.monotonic() + self.timeout_s
        first_silent: float | None = None
        while not self._stop.is_set() and time.monotonic() < deadline:
            asked = time.monotonic()
            now, why = read(self.cluster, self.node, timeout=1.0)
            if now is None:
                if self.armed_at is None or asked < self.armed_at:
                    self._stop.wait(POLL_S)  # before the fault: a slow answer, not a fault
                    continue
                first_silent = first_silent or asked
                if time.monotonic() - first_silent >= CONFIRM_S:
                    self.seen_at, self.seen = first_silent, f"{self.node.name} stopped answering ({why})"
                    return
                self._stop.wait(POLL_S)
                continue
            if now.same_server(self.before):
                first_silent = None  # a slow answer, not a fault
            else:
                other = next((n for n, i in self.others.items() if n != self.node.name and i.same_server(now)), "")
                self.seen_at = first_silent or asked
                self.problem = (
                    msg("ident_moved_address", node=self.node.name, other=other, ident=now.text_i18n()) if other else ""
                )
                self.seen = f"{self.node.name}'s address answers as another server ({now.text()})"
                return
            self._stop.wait(POLL_S)
        if first_silent is not None:  # silent up to the end of the watch
            self.seen_at, self.seen = first_silent, f"{self.node.name} stopped answering"
            return
        self.problem = msg("ident_not_seen", node=self.node.name, ident=self.before.text_i18n(),
                           timeout=f"{self.timeout_s:g}")  # fmt: skip

    def wait(self) -> None:
        """Until the fault was seen, or the watch gave up (``timeout_s``)."""
        if self._thread.is_alive():
            self._thread.join(self.timeout_s + 5)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def came_back(self) -> Text | str:
        """After the node was brought back: "" when it answers as its server started anew, else the problem."""
        if self.before is None:
            return ""
        deadline = time.monotonic() + COME_BACK_S  # a node reported back may still restart once (pg_rewind)
        now, why = read(self.cluster, self.node)
        while now is None and time.monotonic() < deadline:
            time.sleep(0.5)
            now, why = read(self.cluster, self.node)
        if now is None:
            return msg("ident_no_answer_back", node=self.node.name, timeout=f"{COME_BACK_S:g}", why=why)
        if self.problem or not self.seen_at:
            return ""
        if not now.restarted_since(self.before):
            return msg("ident_never_stopped", node=self.node.name, ident=self.before.text_i18n())
        return ""
