"""The embedded sync stand-in: PostgreSQL servers joined by PostgreSQL's built-in logical replication.

A *task* is a publication on the source node (a table list, each with an optional row filter and column
list, or every table of a schema: "by user") and a subscription on the target node that reaches the
source through a :class:`~clauseproof.targets.faults.relay.Relay` the harness owns, so that the task's network
can be cut alone.  The source keeps what the target has not confirmed in the subscription's replication
slot (its WAL): that is where changes wait out an outage.

Faults on a task's target node: ``network`` (the relay is a black hole), ``host`` (every process of the
target server SIGKILLed, as a machine dying, and its network cut with it), ``database`` (the target
server stopped cleanly; it refuses connections).  Each is lifted by starting what was stopped.

Settings beyond the stock ones (recorded in the evidence): ``wal_level = logical`` and room for slots and
workers; a replication connection that hears nothing for 10 s gives up (``wal_receiver_timeout``,
``wal_sender_timeout``), and a failed apply worker is retried after 1 s — the stock 60 s and 5 s only
slow the recovery from a cut, they change nothing the checks look at.
"""

from __future__ import annotations

import contextlib
import glob
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text, msg
from clauseproof.targets.faults.relay import Relay, open_relay
from clauseproof.targets.single.postgres import EmbeddedPostgres
from clauseproof.targets.sync.lab import SyncLab

SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
    "max_logical_replication_workers": "12",
    "max_worker_processes": "24",
    "wal_receiver_timeout": "10s",
    "wal_sender_timeout": "10s",
    "wal_retrieve_retry_interval": "1s",
}
PGLOGICAL = "pglogical"


def _has_setting(bindir: Path | None, name: str) -> bool:
    """Whether the server binary knows the setting ``name`` (some builds add their own)."""
    postgres = (bindir / "postgres") if bindir else Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))[-1])
    try:
        out = subprocess.run([str(postgres), "--describe-config"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(line.split("\t", 1)[0] == name for line in out.splitlines())


def pglogical_available(bindir: Path | None = None) -> bool:
    """Whether the pglogical extension (Debian ``postgresql-<major>-pglogical``) is installed for the server."""
    libs = [bindir.parent / "lib"] if bindir else [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/lib"))]
    return any((lib / "pglogical.so").exists() for lib in libs[-1:])


@dataclass
class Task:
    """One sync task: source node → target node, through its relay."""

    name: str
    source: str
    target: str
    tables: list[str]
    schema_wide: bool
    relay: Relay
    publish: str
    options: dict[str, Any] = field(default_factory=dict)
    method: str = "builtin"  # builtin (publication/subscription) or pglogical

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "target": self.target,
            "tables": self.tables,
            "by": "schema (every table of the user's schema)" if self.schema_wide else "table",
            "publish": self.publish,
            "method": self.method,
            "relay_port": self.relay.port,
            **self.options,
        }


class LogicalSyncLab(SyncLab):
    """``nodes`` embedded PostgreSQL servers (named a, b, c, …) and the sync tasks between them; as a target, it
    is node a."""

    dialect = "postgresql"

    def __init__(self, label: str, namespace: str, bindir: Path | None, nodes: int = 3) -> None:
        super().__init__(label, namespace)  # nodes, tasks, faults: SyncLab
        names = [chr(ord("a") + i) for i in range(nodes)]
        #: pglogical (loop prevention for bidirectional tasks) where it is installed
        self.pglogical = pglogical_available(bindir)
        #: the sync cases this stand-in can run (the heterogeneous one runs fewer)
        self.scenarios = frozenset(
            {"capture", "topologies", "conversion", "outage"} | ({"bidirectional"} if self.pglogical else set())
        )
        self.settings = dict(SETTINGS)
        if self.pglogical:
            self.settings["shared_preload_libraries"] = "pglogical"
            if _has_setting(bindir, "output_plugin_libraries"):  # a Debian build's list of trusted output plugins
                self.settings["output_plugin_libraries"] = "pgoutput, test_decoding, pglogical_output"
        self.nodes: dict[str, EmbeddedPostgres] = {
            n: EmbeddedPostgres(f"{label}-{n}", namespace, bindir, settings=dict(self.settings)) for n in names
        }
        self.tasks: dict[str, Task] = {}

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "method": "PostgreSQL built-in logical replication (publication → subscription), one per task",
            "settings": self.settings,
            "bidirectional": "pglogical 2 (forward_origins = '{}': a change is not sent back where it came from)"
            if self.pglogical
            else "not available (install postgresql-15-pglogical)",
            "nodes": {n: t.describe() for n, t in self.nodes.items()},
            "tasks": [t.describe() for t in self.tasks.values()],
        }

    # -- tasks -----------------------------------------------------------------------------------
    def why_not(self, scenario: str) -> Text | str:
        if scenario == "bidirectional":
            return msg("no_bidirectional_pg15")
        return super().why_not(scenario)

    def create_task(
        self,
        name: str,
        source: str,
        target: str,
        tables: list[str] | None = None,
        *,
        columns: dict[str, list[str]] | None = None,
        where: dict[str, str] | None = None,
        publish: str = "insert, update, delete",
        copy_data: bool = True,
        method: str = "builtin",
        insert_only: list[str] | None = None,
        forward_origins: bool = False,
    ) -> Task:
        """Publish ``tables`` (every table of the namespace when None: by user) of ``source`` and subscribe
        ``target`` to them; the target's tables must exist.  Returns once the subscription is created (the
        initial copy then runs in the background)."""
        if name in self.tasks:
            raise ClauseproofError(f"sync task {name} exists already")
        if method == PGLOGICAL:
            return self._create_pglogical(
                name, source, target, tables or [], insert_only or [], copy_data, forward_origins
            )
        src, dst = self.nodes[source], self.nodes[target]
        ns = self.namespace
        if tables is None:
            what = f"TABLES IN SCHEMA {ns}"
        else:
            items = []
            for t in tables:
                cols = (columns or {}).get(t)
                cond = (where or {}).get(t)
                items.append(
                    f"TABLE {ns}.{t}" + (f" ({', '.join(cols)})" if cols else "") + (f" WHERE ({cond})" if cond else "")
                )
            what = ", ".join(items)
        with contextlib.closing(src.connect()) as conn:
            conn.execute(f"CREATE PUBLICATION {name} FOR {what} WITH (publish = '{publish}')")
        ep = src._ep()
        relay = open_relay(ep.host, ep.port, f"{self.label}-{name}")
        conninfo = (
            f"host=127.0.0.1 port={relay.port} user={ep.user} password={src.password} dbname={ep.database} "
            "connect_timeout=5"
        )
        try:
            with contextlib.closing(dst.connect()) as conn:
                conn.execute(
                    f"CREATE SUBSCRIPTION {name} CONNECTION '{conninfo}' PUBLICATION {name} "
                    f"WITH (copy_data = {str(copy_data).lower()})"
                )
        except BaseException:
            relay.close()
            with contextlib.suppress(Exception), contextlib.closing(src.connect()) as conn:
                conn.execute(f"DROP PUBLICATION IF EXISTS {name}")
            raise
        task = Task(
            name=name,
            source=source,
            target=target,
            tables=list(tables or []),
            schema_wide=tables is None,
            relay=relay,
            publish=publish,
            options={"columns": columns or {}, "row_filters": where or {}, "copy_data": copy_data},
        )
        self.tasks[name] = task
        return task

    def _dsn(self, node: EmbeddedPostgres, port: int | None = None) -> str:
        ep = node._ep()
        return (
            f"host=127.0.0.1 port={port or ep.port} user={ep.user} password={node.password} dbname={ep.database} "
            "connect_timeout=5"
        )

    def _pglogical_node(self, name: str) -> None:
        node = self.nodes[name]
        with contextlib.closing(node.connect()) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pglogical")
            if conn.execute("SELECT 1 FROM pglogical.local_node").fetchone() is None:
                conn.execute("SELECT pglogical.create_node(node_name := %s, dsn := %s)", (name, self._dsn(node)))

    def _create_pglogical(
        self,
        name: str,
        source: str,
        target: str,
        tables: list[str],
        insert_only: list[str],
        copy_data: bool,
        forward_origins: bool,
    ) -> Task:
        """A pglogical task: replication sets on the source (one for full changes, one insert-only for tables
        without a key), a subscription on the target that forwards no change that came from elsewhere."""
        if not self.pglogical:
            raise ClauseproofError(
                "pglogical is not installed for the embedded PostgreSQL",
                fix="apt-get install postgresql-15-pglogical (./run does it)",
            )
        for n in (source, target):
            self._pglogical_node(n)
        src, dst = self.nodes[source], self.nodes[target]
        ns = self.namespace
        with contextlib.closing(src.connect()) as conn:
            conn.execute("SELECT pglogical.create_replication_set(%s)", (f"{name}_full",))
            conn.execute("SELECT pglogical.create_replication_set(%s, true, false, false, false)", (f"{name}_ins",))
            for t in tables:
                rs = f"{name}_ins" if t in insert_only else f"{name}_full"
                conn.execute(
                    "SELECT pglogical.replication_set_add_table(%s, %s::regclass, %s)", (rs, f"{ns}.{t}", copy_data)
                )
        relay = open_relay(src._ep().host, src._ep().port, f"{self.label}-{name}")
        try:
            with contextlib.closing(dst.connect()) as conn:
                conn.execute(
                    "SELECT pglogical.create_subscription(subscription_name := %s, provider_dsn := %s, "
                    "replication_sets := %s, synchronize_structure := false, synchronize_data := %s, "
                    "forward_origins := %s)",
                    (name, self._dsn(src, relay.port), [f"{name}_full", f"{name}_ins"], copy_data,
                     ["all"] if forward_origins else []),
                )  # fmt: skip
                deadline = time.monotonic() + 60
                status = ""
                while time.monotonic() < deadline:
                    row = conn.execute("SELECT status FROM pglogical.show_subscription_status(%s)", (name,)).fetchone()
                    status = row[0] if row else ""
                    if status == "replicating":
                        break
                    time.sleep(0.2)
                else:
                    raise ClauseproofError(
                        f"the pglogical subscription {name} is {status!r} after 60 s, not replicating"
                    )
        except BaseException:
            relay.close()
            raise
        task = Task(
            name=name,
            source=source,
            target=target,
            tables=list(tables),
            schema_wide=False,
            relay=relay,
            publish="insert, update, delete" + (f" (insert only: {', '.join(insert_only)})" if insert_only else ""),
            options={"copy_data": copy_data, "forward_origins": "all" if forward_origins else "none"},
            method=PGLOGICAL,
        )
        self.tasks[name] = task
        return task

    def _drop_pglogical(self, task: Task) -> None:
        if task.target not in self.down:
            with contextlib.closing(self.nodes[task.target].connect()) as conn:
                conn.execute("SELECT pglogical.drop_subscription(%s, true)", (task.name,))
        if task.source not in self.down:
            with contextlib.closing(self.nodes[task.source].connect()) as conn:
                for rs in (f"{task.name}_full", f"{task.name}_ins"):
                    conn.execute("SELECT pglogical.drop_replication_set(%s, true)", (rs,))

    def drop_task(self, name: str) -> None:
        """Drop the subscription (without reaching the source), its slot on the source and the publication."""
        task = self.tasks.pop(name)
        if task.method == PGLOGICAL:
            try:
                self._drop_pglogical(task)
            finally:
                task.relay.close()
            return
        try:
            if task.target not in self.down:
                with contextlib.closing(self.nodes[task.target].connect()) as conn:
                    conn.execute(f"ALTER SUBSCRIPTION {name} DISABLE")
                    conn.execute(f"ALTER SUBSCRIPTION {name} SET (slot_name = NONE)")
                    conn.execute(f"DROP SUBSCRIPTION {name}")
            if task.source not in self.down:
                with contextlib.closing(self.nodes[task.source].connect()) as conn:
                    deadline = time.monotonic() + 15
                    while time.monotonic() < deadline:
                        row = conn.execute(
                            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (name,)
                        ).fetchone()
                        if row is None:
                            break
                        if row[0] is None:
                            conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
                            break
                        conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                        time.sleep(0.2)
                    conn.execute(f"DROP PUBLICATION IF EXISTS {name}")
        finally:
            task.relay.close()

    def slot(self, name: str) -> dict[str, Any]:
        """The task's replication slot on its source: WAL status and how much WAL it keeps (bytes)."""
        task = self.tasks[name]
        with contextlib.closing(self.nodes[task.source].connect()) as conn:
            row = conn.execute(
                "SELECT wal_status, active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
                "FROM pg_replication_slots WHERE slot_name = %s",
                (name,),
            ).fetchone()
        if row is None:
            return {"slot": name, "exists": False}
        return {
            "slot": name,
            "exists": True,
            "wal_status": row[0],
            "kept_as": msg("kept_wal_slot", name=name, status=row[0]),
            "active": row[1],
            "retained_bytes": row[2],
            "unconfirmed_bytes": row[3],
        }
