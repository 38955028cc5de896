"""The heterogeneous sync stand-in: an embedded MariaDB (node a, the source) and an embedded PostgreSQL (node b,
the target), joined by ``clauseproof.workloads.binlog_sync`` — a small change-data-capture process that snapshots the
source without stopping it, then streams its binary log's row events into PostgreSQL, one source transaction
per target transaction together with its position (exactly once).

The process (the "sync server") reaches the target through a relay the harness owns, so that the network
between them can be cut alone; while the target cannot be reached, changes wait in the process and the
source keeps its binary log.  Faults on the target: ``network``, ``host`` (the PostgreSQL server SIGKILLed and
its network cut), ``database`` (PostgreSQL stopped cleanly).

Source settings beyond the stock ones (recorded): the binary log on, row format with full row images and
column names (``binlog_row_metadata = FULL``), a server id.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clauseproof.core import masking, reaper, shipped
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text, msg
from clauseproof.targets.faults.relay import Relay, open_relay
from clauseproof.targets.host import processes
from clauseproof.targets.host.processes import _tail, own_code_user
from clauseproof.targets.single.mariadb import EmbeddedMariaDB
from clauseproof.targets.single.postgres import EmbeddedPostgres
from clauseproof.targets.sync.lab import SyncLab

SOURCE_SETTINGS = {
    "log_bin": "binlog",
    "binlog_format": "ROW",
    "binlog_row_image": "FULL",
    "binlog_row_metadata": "FULL",
    "server_id": "1",
}


@dataclass
class CdcTask:
    name: str
    source: str
    target: str
    tables: list[str]
    relay: Relay
    proc: subprocess.Popen[bytes]
    log: Path

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "target": self.target, "tables": self.tables}


class BinlogSyncLab(SyncLab):
    """MariaDB (a) → PostgreSQL (b) through the binlog sync process; as a target, it is node a."""

    dialect = "mysql"
    #: one-to-one whole-table tasks only: no topologies, no conversion
    scenarios = frozenset({"capture", "outage"})

    def why_not(self, scenario: str) -> Text | str:
        return msg("binlog_one_to_one", target=self.label, scenario=scenario)

    def __init__(
        self, label: str, namespace: str, pg_bindir: Path | None = None, mariadb_bindir: Path | None = None
    ) -> None:
        super().__init__(label, namespace)  # nodes, tasks, faults: SyncLab
        self.nodes: dict[str, EmbeddedMariaDB | EmbeddedPostgres] = {
            "a": EmbeddedMariaDB(f"{label}-a", namespace, mariadb_bindir, settings=dict(SOURCE_SETTINGS)),
            "b": EmbeddedPostgres(f"{label}-b", namespace, pg_bindir),
        }
        self.tasks: dict[str, CdcTask] = {}

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "method": "MariaDB binary log (row events) → PostgreSQL by clauseproof.workloads.binlog_sync "
            "(mysql-replication)",
            "source_settings": SOURCE_SETTINGS,
            "nodes": {n: t.describe() for n, t in self.nodes.items()},
            "tasks": [t.describe() for t in self.tasks.values()],
        }

    def create_task(self, name: str, source: str, target: str, tables: list[str] | None = None, **kw: Any) -> CdcTask:
        """Start the sync process for ``tables`` (every table must exist on both sides, with a primary key on the
        source); it snapshots, then streams.  Options of the PostgreSQL stand-in are refused, not ignored."""
        unsupported = {k: v for k, v in kw.items() if v not in (None, False, [], {}, "insert, update, delete", True)}
        if unsupported or not tables or (source, target) != ("a", "b"):
            raise ClauseproofError(
                f"the binlog sync stand-in cannot make task {name} as asked ({unsupported or 'a → b, tables'})",
                checked="it copies whole tables from a (MariaDB) to b (PostgreSQL)",
            )
        src, dst = self.nodes[source], self.nodes[target]
        s_ep, d_ep = src._ep(), dst._ep()
        relay = open_relay(d_ep.host, d_ep.port, f"{self.label}-{name}")
        assert src.folder is not None
        log = src.folder / f"binlog-sync-{name}.log"
        args = [
            sys.executable,
            "-m",
            shipped.workload_module("binlog_sync"),
            "--task", name,
            "--tables", ",".join(tables),
            "--source-port", str(s_ep.port),
            "--source-user", s_ep.user,
            "--source-db", self.namespace,
            "--target-port", str(relay.port),
            "--target-user", d_ep.user,
            "--target-db", d_ep.database,
            "--target-schema", self.namespace,
            "--server-id", str(4000 + len(self.tasks) + 1),
        ]  # fmt: skip
        env = {
            **masking.child_env(),
            "CP_SYNC_SOURCE_PASSWORD": src.password,
            "CP_SYNC_TARGET_PASSWORD": dst.password,
            reaper.PARENT_ENV: str(os.getpid()),
        }
        with open(log, "ab") as out:
            proc = subprocess.Popen(  # the harness's own code: not as root (from /: the folder is the server's)
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                cwd="/",
                **own_code_user().popen(),
            )
        reaper.register(f"binlog-sync-{name}", proc.pid, src.folder)
        task = CdcTask(name, source, target, list(tables), relay, proc, log)
        self.tasks[name] = task
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the snapshot is taken before the task counts as created
            if proc.poll() is not None:
                self.tasks.pop(name)
                relay.close()
                raise ClauseproofError(f"the binlog sync process of {name} exited: " + _tail(log, 6))
            if "streaming from" in log.read_text(errors="replace"):
                return task
            time.sleep(0.1)
        self.drop_task(name)
        raise ClauseproofError(f"the binlog sync process of {name} took no snapshot within 60 s: " + _tail(log, 6))

    def drop_task(self, name: str) -> None:
        task = self.tasks.pop(name)
        try:
            processes.stop_all([task.proc], timeout=10)
        finally:
            task.relay.close()
        if task.target not in self.down:
            with contextlib.suppress(Exception), contextlib.closing(self.nodes[task.target].connect()) as conn:
                conn.execute("DELETE FROM cp_sync_state WHERE task = %s", (name,))

    def slot(self, name: str) -> dict[str, Any]:
        """What the source keeps for the task: its binary log from the task's applied position on (bytes)."""
        task = self.tasks[name]
        src = self.nodes[task.source]
        with contextlib.closing(src.connect()) as conn:
            cur = conn.cursor()
            cur.execute("SHOW BINARY LOGS")
            logs = [(str(r[0]), int(r[1])) for r in cur.fetchall()]
        applied: tuple[str, int] | None = None
        if task.target not in self.down:
            with contextlib.suppress(Exception), contextlib.closing(self.nodes[task.target].connect()) as conn:
                row = conn.execute("SELECT log_file, log_pos FROM cp_sync_state WHERE task = %s", (name,)).fetchone()
                applied = (str(row[0]), int(row[1])) if row else None
        if applied is None:
            return {"slot": f"binlog of {name}", "exists": True, "kept_as": msg("kept_binlog_unknown")}
        behind = sum(size for f, size in logs if f > applied[0]) + sum(
            size - applied[1] for f, size in logs if f == applied[0]
        )
        return {"slot": f"binlog of {name}", "exists": True, "kept_as": msg("kept_binlog"), "retained_bytes": behind}
