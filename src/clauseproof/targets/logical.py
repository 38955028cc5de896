"""The embedded sync stand-in: PostgreSQL servers joined by PostgreSQL's built-in logical replication.

A *task* is a publication on the source node (a table list, each with an optional row filter and column
list, or every table of a schema: "by user") and a subscription on the target node that reaches the
source through a :class:`~clauseproof.targets.relay.Relay` the harness owns, so that the task's network
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clauseproof.core.errors import ClauseproofError
from clauseproof.targets import nodeprocs
from clauseproof.targets.base import Target
from clauseproof.targets.embedded import EmbeddedPostgres
from clauseproof.targets.relay import Relay, open_relay

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
FAULTS = ("network", "host", "database")


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

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "target": self.target,
            "tables": self.tables,
            "by": "schema (every table of the user's schema)" if self.schema_wide else "table",
            "publish": self.publish,
            "relay_port": self.relay.port,
            **self.options,
        }


class LogicalSyncLab(Target):
    """``nodes`` embedded PostgreSQL servers (named a, b, c, …) and the sync tasks between them; as a target, it
    is node a."""

    kind = "embedded"
    dialect = "postgresql"

    def __init__(self, label: str, namespace: str, bindir: Path | None, nodes: int = 3) -> None:
        super().__init__(label, namespace)
        names = [chr(ord("a") + i) for i in range(nodes)]
        self.nodes: dict[str, EmbeddedPostgres] = {
            n: EmbeddedPostgres(f"{label}-{n}", namespace, bindir, settings=dict(SETTINGS)) for n in names
        }
        self.tasks: dict[str, Task] = {}
        self.down: dict[str, str] = {}  # node → fault kind while it is down

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        errors: list[BaseException] = []

        def one(node: EmbeddedPostgres) -> None:
            try:
                node.start()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(n,)) for n in self.nodes.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.stop()
            raise errors[0]
        self.endpoint = self.nodes["a"].endpoint

    def stop(self) -> None:
        """Drop every task, stop every node. Never raises."""
        for name in list(self.tasks):
            with contextlib.suppress(Exception):
                self.drop_task(name)
        for task in self.tasks.values():
            task.relay.close()
        self.tasks.clear()
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node.stop()
        self.endpoint = None

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "method": "PostgreSQL built-in logical replication (publication → subscription), one per task",
            "settings": SETTINGS,
            "nodes": {n: t.describe() for n, t in self.nodes.items()},
            "tasks": [t.describe() for t in self.tasks.values()],
        }

    def node_connect(self, node: str) -> Any:
        return self.nodes[node].connect()

    # -- tasks -----------------------------------------------------------------------------------
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
    ) -> Task:
        """Publish ``tables`` (every table of the namespace when None: by user) of ``source`` and subscribe
        ``target`` to them; the target's tables must exist.  Returns once the subscription is created (the
        initial copy then runs in the background)."""
        if name in self.tasks:
            raise ClauseproofError(f"sync task {name} exists already")
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

    def drop_task(self, name: str) -> None:
        """Drop the subscription (without reaching the source), its slot on the source and the publication."""
        task = self.tasks.pop(name)
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
            "active": row[1],
            "retained_bytes": row[2],
            "unconfirmed_bytes": row[3],
        }

    # -- faults on a task's target -------------------------------------------------------------
    def fault(self, kind: str, task_name: str) -> None:
        task = self.tasks[task_name]
        node = self.nodes[task.target]
        if kind == "network":
            task.relay.cut()
            return
        if kind not in FAULTS:
            raise ClauseproofError(f"unknown sync fault {kind!r}", fix="use one of " + ", ".join(FAULTS))
        self.down[task.target] = kind
        if kind == "host":
            for t in self.tasks.values():  # the machine's network goes with it
                if task.target in (t.source, t.target):
                    t.relay.cut()
            assert node.folder is not None
            pid_file = node.data_dir / "postmaster.pid"
            pids = {int(pid_file.read_text().split()[0])} if pid_file.exists() else set()
            nodeprocs.kill(pids, node.folder)
            pid_file.unlink(missing_ok=True)
        else:
            node.stop_server()

    def heal(self, kind: str, task_name: str) -> None:
        task = self.tasks[task_name]
        node = self.nodes[task.target]
        if kind == "network":
            task.relay.heal()
            return
        node.start_again()
        self.down.pop(task.target, None)
        if kind == "host":
            for t in self.tasks.values():
                if task.target in (t.source, t.target):
                    t.relay.heal()
